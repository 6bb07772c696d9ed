"""The five providers of the design: trit, role, and which of them serves each operation."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderInfo:
    provider_id: str
    name: str
    trit: int
    role: str
    module: str
    operations: tuple[str, ...]


_LIFECYCLE = ("init", "shutdown", "receive_link_config", "delete_link", "capabilities")
# What providers whose instances live in sandboxes serve besides their instances' lifecycle (and listing them).
_FILES_AND_IMAGES = ("list_instances", "write_files", "read_file", "read_file_chunk", "list_files",
                     "stat_file", "make_directory", "move_file", "remove_file", "watch_files",
                     "build_image", "list_images", "inspect_image", "delete_image")
_PROCESSES = ("start_process", "read_process_output", "write_process_stdin", "wait_process", "signal_process",
              "list_processes")

CATALOG: dict[str, ProviderInfo] = {
    p.provider_id: p
    for p in (
        ProviderInfo("morph", "Morph Labs Infinibranch (local engine)", 1, "generator", "worldrt.providers.morph",
                     _LIFECYCLE + ("start", "stop", "snapshot", "branch", "execute", "execute_stream", "merge")
                     + _FILES_AND_IMAGES + _PROCESSES),
        ProviderInfo("modal", "Modal Sandboxes (local engine)", 1, "generator", "worldrt.providers.modal",
                     _LIFECYCLE + ("start", "stop", "snapshot", "execute", "execute_stream") + _FILES_AND_IMAGES
                     + _PROCESSES),
        ProviderInfo("primeintellect", "PrimeIntellect Distributed RL (local engine)", 0, "coordinator",
                     "worldrt.providers.primeintellect", _LIFECYCLE + ("optimize",)),
        ProviderInfo("gensyn", "Gensyn Decentralized ML (local engine)", -1, "validator",
                     "worldrt.providers.gensyn", _LIFECYCLE + ("verify",)),
        ProviderInfo("ritual", "Ritual Infernet (local engine)", -1, "validator", "worldrt.providers.ritual",
                     _LIFECYCLE + ("execute", "verify")),
    )
}


def providers_for(operation: str) -> list[str]:
    """Names of the providers in the design that serve ``operation``, in catalog order."""
    return [p.provider_id for p in CATALOG.values() if operation in p.operations]
