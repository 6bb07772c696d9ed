"""modal (+1, generator): a pool of pre-warmed sandboxes for one-shot and longer-lived runs."""

from worldrt.providers.modal._engine import DiskSnapshot, SandboxPool
from worldrt.providers.modal._provider import ModalProvider

PROVIDER = ModalProvider

__all__ = ["ModalProvider", "SandboxPool", "DiskSnapshot", "PROVIDER"]
