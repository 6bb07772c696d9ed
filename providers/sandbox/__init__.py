"""Bubblewrap sandboxes with a forking zygote: the isolation shared by morph and modal, and the
sandboxed function workers of primeintellect, gensyn and ritual."""

from ._archive import ArchiveStore, ArchiveTooLarge
from ._branches import MAX_DEPTH, Branch, Lineage, ReadyBranches, ReadyBudget
from ._cgroup import Cgroups
from ._instances import Done, InstanceEngine, LiveInstance, Member, Output, new_id
from ._process import ChannelClosed, ProtocolError, SandboxError, SandboxProcess
from ._sandbox import Limits, NsSet, Sandbox
from ._uids import ALLOCATOR, UidAllocator
from ._workers import CallError, CallTimeout, ProgramError, WorkerError, WorkerLease, WorkerLost, WorkerPool

__all__ = [
    # sandboxes and their members
    "Sandbox", "SandboxProcess", "Limits", "Cgroups", "NsSet", "ALLOCATOR", "UidAllocator",
    # instances, snapshots and branches
    "InstanceEngine", "Member", "LiveInstance", "Output", "Done", "new_id",
    "Lineage", "Branch", "ReadyBranches", "ReadyBudget", "MAX_DEPTH", "ArchiveStore", "ArchiveTooLarge",
    # errors
    "SandboxError", "ProtocolError", "ChannelClosed",
    # workers
    "WorkerPool", "WorkerLease", "WorkerError", "ProgramError", "CallError", "CallTimeout", "WorkerLost",
]
