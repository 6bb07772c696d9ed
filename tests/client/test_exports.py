"""What users import is pinned (as temporalio's tests/test_client_exports.py pins its client's): the names of
worldrt, worldrt.client and worldrt.testing, that each is documented and typed, that dir() shows the
methods, and that `import worldrt` stays cheap."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from typing import Any

import pytest

import worldrt
import worldrt.client
import worldrt.testing

TOP = ["__version__", "Client", "AsyncClient"]
CLIENT = [
    "Client", "AsyncClient",
    "Instance", "Snapshot", "Files", "AsyncInstance", "AsyncSnapshot", "AsyncFiles", "Process", "AsyncProcess",
    "Images", "Links", "Components", "Verse", "Providers",
    "AsyncImages", "AsyncLinks", "AsyncComponents", "AsyncVerse", "AsyncProviders",
    "Limits", "Oracle", "ExecResult", "Output", "InstanceInfo", "SnapshotInfo", "FileInfo", "Image", "BuildProgress",
    "Link", "ProviderState", "Invocation", "ProcessStatus", "ProcessChunk", "FileEvent",
    "ComponentOutcome", "ComponentInspection", "BuiltComponent", "Event", "ProviderCall", "LogLine",
    "ComponentOutput", "PipelineRun", "SoloRun", "Orchestration", "Selection", "Strategy",
]
TESTING = ["Runtime", "AsyncRuntime"]
# What a user looks for first, by class: dir() must show it.
SURFACE = {
    "Client": {"connect", "start", "instance", "instances", "snapshot", "merge", "invocations", "close",
               "images", "links", "components", "verse", "providers", "remote", "address", "home"},
    "Instance": {"exec", "exec_stream", "files", "snapshot", "branch", "stop", "id", "provider", "image", "stopped",
                 "spawn", "process", "processes"},
    "Process": {"id", "output", "stdout", "stderr", "write", "close_stdin", "wait", "poll", "kill", "signal",
                "instance"},
    "ProcessStatus": {"id", "state", "exit_code", "signal", "running", "ok", "stdout_size", "stderr_size"},
    "Snapshot": {"branch", "start", "delete", "id", "provider"},
    "Files": {"write", "write_many", "read", "read_text", "list", "stat", "mkdir", "move", "remove", "watch"},
    "Images": {"build", "list", "inspect", "remove"},
    "Links": {"put", "delete", "list"},
    "Components": {"build", "inspect", "run"},
    "Verse": {"pipeline", "run", "orchestrate", "select"},
    "Providers": {"list", "status"},
    "ExecResult": {"stdout", "stderr", "exit_code", "value", "duration_ms", "ok", "error"},
    "PipelineRun": {"wev", "winner", "candidates", "baseline", "balanced"},
    "Orchestration": {"wev", "winner", "invariant_held", "branch_values"},
}


@pytest.mark.pure
def test_the_names_users_import_are_pinned() -> None:
    assert worldrt.__all__ == TOP
    assert worldrt.client.__all__ == CLIENT
    assert worldrt.testing.__all__ == TESTING
    assert worldrt.Client is worldrt.client.Client and worldrt.AsyncClient is worldrt.client.AsyncClient


@pytest.mark.pure
@pytest.mark.parametrize("name", sorted(SURFACE))
def test_dir_shows_the_methods(name: str) -> None:
    for cls in (getattr(worldrt.client, name), getattr(worldrt.client, f"Async{name}", None)):
        if cls is None:
            continue
        shown = set(dir(cls)) | ({f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set())
        # Namespaces and files are attributes of each client and instance (test_instances checks dir() there).
        assert SURFACE[name] - {"images", "links", "components", "verse", "providers", "files"} <= shown


def _public_members(cls: type) -> list[tuple[str, Any]]:
    return [(name, member) for name, member in vars(cls).items()
            if not name.startswith("_") and (callable(member) or isinstance(member, (property, classmethod)))]


@pytest.mark.pure
@pytest.mark.parametrize("name", CLIENT + [f"testing.{n}" for n in TESTING])
def test_every_public_name_is_documented_and_typed(name: str) -> None:
    face, _, attr = name.rpartition(".")
    value = getattr(worldrt.testing if face else worldrt.client, attr)
    if not inspect.isclass(value):  # a type alias (Event)
        return
    assert value.__doc__ and value.__doc__.strip(), f"{name} has no docstring"
    for member_name, member in _public_members(value):
        fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
        assert fn.__doc__ and fn.__doc__.strip(), f"{name}.{member_name} has no docstring"
        signature = inspect.signature(fn)
        assert signature.return_annotation is not inspect.Signature.empty, f"{name}.{member_name} returns no type"
        untyped = [p for p in list(signature.parameters.values())[1:] if p.annotation is inspect.Parameter.empty]
        assert not untyped, f"{name}.{member_name} has untyped parameters {untyped}"


@pytest.mark.daemons  # a fresh interpreter is a process of its own
def test_importing_worldrt_loads_neither_the_client_nor_grpc() -> None:
    code = ("import sys, worldrt; loaded = [m for m in ('worldrt.client', 'grpc', 'worldrt.host') if m in sys.modules]; "
            "print(loaded); worldrt.Client; print('worldrt.client' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "True"]
