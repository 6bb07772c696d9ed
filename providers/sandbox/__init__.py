"""Bubblewrap sandboxes with a forking zygote: the isolation shared by morph and modal."""

from ._cgroup import PidsCgroups
from ._process import ChannelClosed, SandboxError, SandboxProcess
from ._sandbox import Limits, Sandbox
from ._workers import CallError, CallTimeout, ProgramError, WorkerError, WorkerLease, WorkerLost, WorkerPool

__all__ = ["Sandbox", "SandboxProcess", "Limits", "PidsCgroups", "SandboxError", "ChannelClosed",
           "WorkerPool", "WorkerLease", "WorkerError", "ProgramError", "CallError", "CallTimeout", "WorkerLost"]
