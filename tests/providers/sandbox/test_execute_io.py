"""Execute and ExecuteStream with a working folder, stdin bytes and bytes output (issue 20), on morph and
modal against the real daemon; old callers still get text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons
MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["morph", "modal"])
def gen(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with ProviderDaemon(request.param, state_dir=tmp_path_factory.mktemp(request.param),
                        options={"pool_size": "1", "max_stdin_mb": "1"}) as daemon:
        yield daemon.stub
        log = Path(daemon.log_path).read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


@pytest.fixture()
def inst(gen: Any) -> Iterator[str]:
    iid = gen.Start(pb.StartRequest()).instance_id
    gen.MakeDirectory(pb.MakeDirectoryRequest(instance_id=iid, path="sub/dir", parents=True))
    yield iid
    try:
        gen.Stop(pb.InstanceRef(instance_id=iid))
    except grpc.RpcError:
        pass


def test_a_command_runs_in_its_cwd_reads_its_stdin_and_answers_bytes(gen: Any, inst: str) -> None:
    result = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["sh", "-c", "pwd; cat; printf '\\377\\376'; "
                                                                               "printf 'e\\200' >&2"],
                                           cwd="sub/dir", stdin=b"in\xffput\n", output_bytes=True))
    assert result.exit_code == 0, result.error
    assert result.stdout_bytes == b"/workspace/sub/dir\nin\xffput\n\xff\xfe"
    assert result.stderr_bytes == b"e\x80"
    assert (result.stdout, result.stderr) == ("", "")
    # The next run is back in the workspace, with nothing on its stdin.
    again = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["sh", "-c", "pwd; cat"]))
    assert again.stdout == "/workspace\n"


def test_old_callers_get_the_same_output_as_text(gen: Any, inst: str) -> None:
    result = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["sh", "-c", "printf 'ok \\377\\n'"]))
    assert result.stdout == "ok \ufffd\n" and result.stdout_bytes == b""
    events = list(gen.ExecuteStream(pb.ExecuteRequest(instance_id=inst, code="print('text')")))
    assert [e.stdout for e in events if e.WhichOneof("event") == "stdout"] == ["text\n"]


def test_python_code_gets_cwd_stdin_and_writes_raw_bytes(gen: Any, inst: str) -> None:
    code = ("import os, sys, subprocess\nprint(os.getcwd(), repr(sys.stdin.read()))\n"
            "sys.stdout.flush()\nsys.stdout.buffer.write(b'\\xff\\x00')\nos.getcwd()")
    result = gen.Execute(pb.ExecuteRequest(instance_id=inst, code=code, cwd="/workspace/sub", stdin=b"py-in",
                                           output_bytes=True))
    assert result.value_json == '"/workspace/sub"', result.error
    assert result.stdout_bytes == b"/workspace/sub 'py-in'\n\xff\x00"
    after = gen.Execute(pb.ExecuteRequest(instance_id=inst, code="import os, sys\n[os.getcwd(), sys.stdin is None "
                                                                 "or not sys.stdin.closed]"))
    assert after.value_json == '["/workspace", true]', after.error


def test_the_stream_carries_bytes_in_order(gen: Any, inst: str) -> None:
    events = list(gen.ExecuteStream(pb.ExecuteRequest(
        instance_id=inst, argv=["sh", "-c", "printf '\\377'; sleep 0.05; printf '\\376' >&2; cat"],
        stdin=b"\x00\x01", output_bytes=True)))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and "stdout" not in kinds and "stderr" not in kinds
    out = b"".join(e.stdout_bytes for e in events if e.WhichOneof("event") == "stdout_bytes")
    err = b"".join(e.stderr_bytes for e in events if e.WhichOneof("event") == "stderr_bytes")
    assert (out, err) == (b"\xff\x00\x01", b"\xfe")


def test_cwd_is_refused_out_of_the_workspace_and_when_missing(gen: Any, inst: str) -> None:
    gen.Execute(pb.ExecuteRequest(instance_id=inst, code="import os\nos.symlink('/etc', 'out')\n"
                                                         "open('file', 'w').close()"))
    for cwd, code in (("../x", grpc.StatusCode.INVALID_ARGUMENT), ("/etc", grpc.StatusCode.INVALID_ARGUMENT),
                      ("out", grpc.StatusCode.INVALID_ARGUMENT), ("file", grpc.StatusCode.INVALID_ARGUMENT),
                      ("nope", grpc.StatusCode.NOT_FOUND)):
        for call in (gen.Execute, lambda r: list(gen.ExecuteStream(r))):
            with pytest.raises(grpc.RpcError) as info:
                call(pb.ExecuteRequest(instance_id=inst, argv=["pwd"], cwd=cwd))
            assert info.value.code() == code, (cwd, info.value.details())
            assert "cwd" in info.value.details()
    assert gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["pwd"], cwd="sub")).stdout == "/workspace/sub\n"


def test_stdin_is_capped_and_a_run_that_never_reads_it_still_ends(gen: Any, inst: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["cat"], stdin=b"x" * (MIB + 1)))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "stdin" in info.value.details()
    # A full 1 MiB that nobody reads: more than the pipe holds, and the run ends anyway.
    ignored = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["true"], stdin=b"y" * MIB))
    assert ignored.exit_code == 0
    whole = gen.Execute(pb.ExecuteRequest(instance_id=inst, argv=["sh", "-c", "wc -c"], stdin=b"z" * MIB))
    assert whole.stdout.strip() == str(MIB)
    assert gen.Execute(pb.ExecuteRequest(instance_id=inst, code="1 + 1")).value_json == "2"


def test_a_one_shot_run_takes_stdin_and_bytes_too(gen: Any, request: pytest.FixtureRequest) -> None:
    if "modal" not in request.node.name:
        pytest.skip("one-shot runs (Execute without an instance) are modal's")
    result = gen.Execute(pb.ExecuteRequest(argv=["cat"], stdin=b"\xffone-shot", output_bytes=True))
    assert result.stdout_bytes == b"\xffone-shot"
