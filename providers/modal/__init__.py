"""modal (+1, generator): a pool of pre-warmed sandboxes for one-shot and longer-lived runs."""

from ._engine import DiskSnapshot, SandboxPool
from ._provider import ModalProvider

PROVIDER = ModalProvider

__all__ = ["ModalProvider", "SandboxPool", "DiskSnapshot", "PROVIDER"]
