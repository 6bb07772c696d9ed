"""Errors whose type is their code: every error class of the installed package is the kind its status
code names and no other, families are not kinds, each kind has its own exit status (shown by
``worldrt --help``), and a reason travels beside a status and back."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from collections.abc import Iterator

import grpc
import pytest

from tests.support import ROOT
from worldrt import errors
from worldrt.errors import (
    EXIT_CODES,
    KINDS,
    REASON_TRAILER,
    ErrorFamily,
    Reason,
    WorldError,
    exit_code_of,
    from_rpc_error,
    from_status,
    kind_of,
)
from worldrt.providers.sandbox._bwrap import AGENT_FILES

pytestmark = pytest.mark.pure

# Run inside sandboxes as scripts, not importable as part of the package.
SCRIPTS = {f"worldrt.providers.sandbox.{name.removesuffix('.py')}" for name in AGENT_FILES}


def _import_everything() -> list[str]:
    """Import every module the wheel ships (pyproject.toml's packages: an editable install cannot be walked)."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        packages = tomllib.load(f)["tool"]["setuptools"]["packages"]
    names = []
    for package in packages:
        face = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.iter_modules(face.__path__, f"{package}."):
            if info.ispkg or info.name in SCRIPTS or info.name.endswith("__main__") or "_pb2" in info.name:
                continue
            importlib.import_module(info.name)
            names.append(info.name)
    return names


MODULES = _import_everything()


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


ERRORS = sorted({c for c in _subclasses(WorldError) if c.__module__.startswith("worldrt.")},
                key=lambda c: f"{c.__module__}.{c.__qualname__}")
FAMILIES = sorted({c for c in _subclasses(ErrorFamily) if c.__module__.startswith("worldrt.")
                   and not issubclass(c, WorldError)}, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_the_walk_found_the_error_classes_of_every_layer() -> None:
    # A guard on the walk itself: classes from the providers, the runtime, the host and the CLI are seen.
    found = {f"{c.__module__}.{c.__name__}" for c in ERRORS}
    assert {"worldrt.providers.sandbox._workers.CallTimeout", "worldrt.providers.sandbox._process.ProtocolError",
            "worldrt.host.runtime._errors.ComponentTimeout", "worldrt.host.cli._common.CliError"} <= found
    assert len(MODULES) > 100


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_error_class_is_the_kind_its_code_names_and_no_other(cls: type[WorldError]) -> None:
    kind = kind_of(cls.code)
    assert issubclass(cls, kind), f"{cls.__name__} carries {cls.code.name} but is not a {kind.__name__}"
    others = [k.__name__ for k in KINDS if k is not kind and issubclass(cls, k)]
    assert others == [], f"{cls.__name__} is a {kind.__name__} and also {others}"
    assert cls.__doc__, f"{cls.__name__} has no docstring"


@pytest.mark.parametrize("family", FAMILIES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_a_family_is_no_kind_and_is_never_raised(family: type[ErrorFamily]) -> None:
    assert "code" not in vars(family) and not issubclass(family, WorldError)
    members = [c for c in ERRORS if issubclass(c, family)]
    assert members, f"{family.__name__} has no members"
    with pytest.raises(TypeError, match="family of errors"):
        family("a family is not an error")


def test_the_known_families_catch_their_members_of_different_kinds() -> None:
    from worldrt.host.runtime import ComponentError, ComponentFault, ComponentTimeout, GuestError, InvocationError
    from worldrt.providers.sandbox import (
        ArchiveTooLarge,
        CallTimeout,
        ChannelClosed,
        ProgramError,
        ProtocolError,
        SandboxFault,
        WorkerFault,
        WorkerLost,
    )

    assert all(issubclass(c, SandboxFault) for c in (ChannelClosed, ProtocolError, ArchiveTooLarge))
    assert all(issubclass(c, WorkerFault) for c in (ProgramError, CallTimeout, WorkerLost))
    assert all(issubclass(c, InvocationError) for c in (GuestError, ComponentTimeout))
    assert issubclass(ComponentError, ComponentFault) and not issubclass(ComponentError, InvocationError)
    # The five the issue named, by the kind a caller catches them as.
    assert issubclass(ComponentTimeout, errors.DeadlineExceeded) and issubclass(CallTimeout, errors.DeadlineExceeded)
    assert issubclass(InvocationError, ComponentFault) and issubclass(GuestError, errors.Aborted)
    assert issubclass(ProtocolError, errors.Aborted) and issubclass(ProgramError, errors.InvalidArgument)
    try:
        raise CallTimeout("f() ran past 1 s")
    except errors.DeadlineExceeded as exc:
        assert exc.code is grpc.StatusCode.DEADLINE_EXCEEDED and exc.exit_code == 124


def test_each_kind_has_its_own_exit_status_and_every_error_has_its_kinds() -> None:
    assert set(EXIT_CODES) == set(KINDS)
    numbers = list(EXIT_CODES.values())
    assert len(set(numbers)) == len(numbers), "two kinds share an exit status"
    assert not {0, 1} & set(numbers), "0 is success and 1 a command whose answer is no"
    assert all(0 < n < 256 for n in numbers)
    assert (EXIT_CODES[errors.InvalidArgument], EXIT_CODES[errors.Cancelled]) == (2, 130)  # argparse's; 128+SIGINT
    for cls in ERRORS:
        assert exit_code_of(cls) == EXIT_CODES[kind_of(cls.code)], cls


def test_worldrt_help_shows_the_exit_status_table() -> None:
    from worldrt.host.cli import parser

    text = parser().format_help()
    for kind, number in EXIT_CODES.items():
        assert any(line.split()[:2] == [str(number), kind.__name__] for line in text.splitlines()), kind


def test_the_readme_shows_the_same_exit_status_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for kind, number in EXIT_CODES.items():
        assert f"| {number} | `{kind.__name__}` |" in readme, kind


def test_a_reason_travels_as_a_trailer_and_comes_back_from_a_status() -> None:
    gone = errors.FailedPrecondition("instance i-1 is stopped: merged", reason=Reason.INSTANCE_GONE)
    gone.trailers = (("x-worldrt-partial-result-bin", b"\x00"),)
    assert gone.trailers == ((REASON_TRAILER, "instance-gone"), ("x-worldrt-partial-result-bin", b"\x00"))
    assert errors.NotFound("no such thing").trailers == ()
    back = from_status(grpc.StatusCode.FAILED_PRECONDITION, "anything at all", "morph execute",
                       reason="instance-gone")
    assert type(back) is errors.FailedPrecondition and back.reason == Reason.INSTANCE_GONE
    assert back.message == "morph execute: anything at all"
    # A reason this version does not know is kept as it came; no reason is "".
    assert from_status(grpc.StatusCode.NOT_FOUND, "x", reason="from-the-future").reason == "from-the-future"
    assert from_status(grpc.StatusCode.NOT_FOUND, "x").reason == ""


@pytest.fixture
def failing_server() -> Iterator[str]:
    """A real gRPC server whose one method fails as a provider's servicer does: status, message, trailers."""
    from concurrent.futures import ThreadPoolExecutor

    def fail(_request: bytes, context: grpc.ServicerContext) -> bytes:
        error = errors.FailedPrecondition("instance i-9 is stopped: merged away", reason=Reason.INSTANCE_GONE)
        context.set_trailing_metadata(error.trailers)
        context.abort(error.code, error.message)
        raise AssertionError("unreachable")

    server = grpc.server(ThreadPoolExecutor(max_workers=1))
    handler = grpc.method_handlers_generic_handler("t.T", {"Fail": grpc.unary_unary_rpc_method_handler(fail)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()


def test_from_rpc_error_reads_the_reason_from_the_trailers(failing_server: str) -> None:
    with grpc.insecure_channel(failing_server) as channel:
        call = channel.unary_unary("/t.T/Fail")
        with pytest.raises(grpc.RpcError) as info:
            call(b"", timeout=10)
    error = from_rpc_error(info.value, "morph execute")  # type: ignore[arg-type]
    assert type(error) is errors.FailedPrecondition and error.reason == Reason.INSTANCE_GONE
    assert error.message == "morph execute: instance i-9 is stopped: merged away"
