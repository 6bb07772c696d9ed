"""Bubblewrap sandboxes with a forking zygote: the isolation shared by morph and modal, and the
sandboxed function workers of primeintellect, gensyn and ritual."""

from worldrt.providers.sandbox._archive import ArchiveStore, ArchiveTooLarge
from worldrt.providers.sandbox._branches import (
    MAX_DEPTH,
    Branch,
    Lineage,
    ReadyBranches,
    ReadyBudget,
)
from worldrt.providers.sandbox._cgroup import Cgroups
from worldrt.providers.sandbox._images import DEFAULT as DEFAULT_IMAGE
from worldrt.providers.sandbox._images import LAYER_ROOT, ImageInfo, ImageStore
from worldrt.providers.sandbox._instances import (
    Done,
    InstanceEngine,
    LiveInstance,
    Member,
    Output,
    RunInput,
    new_id,
)
from worldrt.providers.sandbox._process import (
    ChannelClosed,
    ProtocolError,
    SandboxError,
    SandboxFault,
    SandboxProcess,
)
from worldrt.providers.sandbox._provider import (
    SandboxedProvider,
    available_languages,
    limits_from,
    timestamp,
)
from worldrt.providers.sandbox._sandbox import Limits, NsSet, Sandbox
from worldrt.providers.sandbox._uids import ALLOCATOR, UidAllocator
from worldrt.providers.sandbox._workers import (
    CallError,
    CallTimeout,
    ProgramError,
    WorkerError,
    WorkerFault,
    WorkerLease,
    WorkerLost,
    WorkerPool,
)

__all__ = [
    # the gRPC side of providers whose instances live in sandboxes
    "SandboxedProvider", "timestamp", "limits_from", "available_languages",
    # sandboxes and their members
    "Sandbox", "SandboxProcess", "Limits", "Cgroups", "NsSet", "ALLOCATOR", "UidAllocator",
    # instances, snapshots and branches
    "InstanceEngine", "Member", "LiveInstance", "Output", "Done", "RunInput", "new_id",
    "ImageStore", "ImageInfo", "DEFAULT_IMAGE", "LAYER_ROOT",
    "Lineage", "Branch", "ReadyBranches", "ReadyBudget", "MAX_DEPTH", "ArchiveStore", "ArchiveTooLarge",
    # errors
    "SandboxFault", "SandboxError", "ProtocolError", "ChannelClosed",
    # workers
    "WorkerPool", "WorkerLease", "WorkerFault", "WorkerError", "ProgramError", "CallError", "CallTimeout", "WorkerLost",
]
