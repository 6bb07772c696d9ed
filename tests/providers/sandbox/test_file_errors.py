"""File RPCs on bad names get the status that says whose fault it is (issue 18, finding 14).

A caller's path the kernel could not use (a name over 255 bytes, a path over 4096 bytes, one that is not
UTF-8) and a read of what is not a regular file (a socket, a fifo) are the caller's to fix:
INVALID_ARGUMENT with a sentence. A name the instance cannot send (not UTF-8 on its disk) is refused the
same way; a name a hostile instance sends back anyway (a lone surrogate in its listing) breaks the
protocol: ABORTED, and that instance is stopped. The daemon keeps serving others throughout.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.support import run
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

# Code that makes the instance's agent answer every listing with a name holding a lone surrogate, as a
# hostile program in the sandbox can (it runs in the agent's own interpreter).
FORGED_LISTING = """
import __main__ as agent
def forged(msg, fd):
    return {"path": "", "truncated": False, "entries": [
        {"name": "\\udcff", "path": "\\udcff", "size": 0, "mode": 0, "kind": "file", "mtime_ns": 0}]}
agent._list_files.__code__ = forged.__code__
"ok"
"""


@pytest.fixture(params=["morph", "modal"])
def gen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with ProviderDaemon(request.param, state_dir=tmp_path_factory.mktemp(request.param),
                        options={"pool_size": "1"}) as daemon:
        yield daemon.stub
        log = daemon.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture()
def inst(gen: Any) -> Iterator[str]:
    iid = gen.Start(pb.StartRequest()).instance_id
    yield iid
    try:
        gen.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass


def _failure(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code(), info.value.details() or ""


def _read(stub: Any, iid: str, path: str) -> bytes:
    return b"".join(c.data for c in stub.ReadFile(pb.ReadFileRequest(instance_id=iid, path=path)))


def _write(stub: Any, iid: str, path: str) -> pb.WriteFilesReply:
    return stub.WriteFiles(pb.WriteFilesRequest(instance_id=iid, files=[pb.FileEntry(path=path, data=b"x")]))


def test_reading_a_socket_or_a_fifo_is_invalid_argument(gen: Any, inst: str) -> None:
    made = run(gen, inst, "import os, socket\ns = socket.socket(socket.AF_UNIX)\ns.bind('/workspace/sock')\n"
                          "os.mkfifo('/workspace/fifo')\n'made'")
    assert made.value_json == '"made"', made.error
    for name, kind in (("sock", "a socket"), ("fifo", "a fifo")):
        code, details = _failure(lambda name=name: _read(gen, inst, name))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, details)
        assert f"{name} is not a regular file ({kind})" in details
        code, details = _failure(lambda name=name: gen.ReadFileChunk(pb.ReadFileRequest(instance_id=inst, path=name)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a regular file" in details
    assert run(gen, inst, "1").value_json == "1"  # the instance goes on


def test_names_and_paths_past_the_kernels_limits_are_invalid_argument(gen: Any, inst: str) -> None:
    long_name = "a" * 300
    for call in (lambda: _read(gen, inst, long_name), lambda: _write(gen, inst, long_name),
                 lambda: gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path=long_name)),
                 lambda: _read(gen, inst, f"dir/{long_name}/x")):
        code, details = _failure(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "is 300 bytes long, above the 255 bytes a file name may have" in details
    # 255 bytes of UTF-8 is the limit, not 255 characters: 128 two-byte characters are 256 bytes.
    code, details = _failure(lambda: _write(gen, inst, "é" * 128))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "256 bytes long" in details
    assert _write(gen, inst, "é" * 127).files == 1
    deep = "d/" * 2100 + "f"
    code, details = _failure(lambda: _read(gen, inst, deep))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "above the 4096 bytes a path may have" in details
    assert run(gen, inst, "1").value_json == "1"


def test_a_name_on_the_disk_that_is_not_utf8_is_refused_with_its_bytes(gen: Any, inst: str) -> None:
    made = run(gen, inst, "import os\nos.mkdir('d')\nopen(b'd/caf\\xe9', 'w').close()\nos.symlink(b'caf\\xe9', "
                          "b'd/link')\n'made'")
    assert made.value_json == '"made"', made.error
    code, details = _failure(lambda: gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path="d")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "a name in d: b'caf\\xe9' is not valid UTF-8" in details
    # A link to it reads as that name, which cannot travel either.
    code, details = _failure(lambda: _read(gen, inst, "d/link"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not valid UTF-8" in details, details
    # The instance was not stopped: it renames the file and the folder lists.
    assert run(gen, inst, "import os\nos.rename(b'd/caf\\xe9', b'd/cafe')\nos.unlink('d/link')\n1").value_json == "1"
    names = [e.name for e in gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path="d")).entries]
    assert names == ["cafe"]


def test_a_lone_surrogate_sent_back_by_the_instance_is_aborted_and_stops_it(gen: Any, inst: str) -> None:
    assert run(gen, inst, FORGED_LISTING).value_json == '"ok"'
    code, details = _failure(lambda: gen.ListFiles(pb.ListFilesRequest(instance_id=inst, path="")))
    assert code == grpc.StatusCode.ABORTED, (code, details)
    assert "not valid UTF-8" in details and "the instance is stopped" in details
    code, details = _failure(lambda: run(gen, inst, "1"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "broke the sandbox protocol" in details
    other = gen.Start(pb.StartRequest()).instance_id  # the daemon serves others on
    try:
        assert run(gen, other, "2").value_json == "2"
    finally:
        gen.Stop(pb.InstanceRef(instance_id=other))
