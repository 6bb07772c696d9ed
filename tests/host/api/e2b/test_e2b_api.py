"""The official e2b (2.63) and e2b-code-interpreter (2.11.5) SDKs, unchanged, against `worldrt api serve e2b`
through a real host: the SDK finds the server by E2B_API_URL and E2B_SANDBOX_URL, every call goes over the
API's generator link to a real morph daemon and is recorded."""

from __future__ import annotations

import asyncio
import base64
import io
import time

import httpx
import pytest

pytest.importorskip("e2b")
pytest.importorskip("e2b_code_interpreter")

from e2b import AsyncSandbox, CommandExitException, FilesystemEventType, Sandbox
from e2b.exceptions import AuthenticationException, NotFoundException, SandboxException, TimeoutException
from e2b_code_interpreter import AsyncSandbox as AsyncInterpreter
from e2b_code_interpreter import Sandbox as Interpreter

from tests.support import HostProcess, wait_for
from tests.support.e2b_api import E2bApiServer
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons





def recorded(host: HostProcess) -> list[str]:
    """The operation of every morph row the host recorded, oldest first."""
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=5000)).invocations
    return [r.operation for r in reversed(rows) if r.provider_id == "morph"]


def test_the_snippet_runs_unchanged_and_is_recorded(server: E2bApiServer, host: HostProcess) -> None:
    before = len(recorded(host))
    sbx = Sandbox.create()
    r = sbx.commands.run("echo hi")
    assert (r.stdout, r.stderr, r.exit_code) == ("hi\n", "", 0)
    sbx.files.write("/home/user/a.txt", "x")
    assert sbx.files.read("/home/user/a.txt") == "x"
    assert sbx.is_running()
    sbx.kill()
    with pytest.raises(NotFoundException):
        Sandbox.connect(sbx.sandbox_id)
    ops = recorded(host)[before:]
    for op in ("start", "start-process", "read-process-output", "write-files", "read-file", "stop"):
        assert op in ops, (op, ops)


def test_commands_env_cwd_exit_codes_and_sandbox_envs(server: E2bApiServer) -> None:
    sbx = Sandbox.create(envs={"WHO": "sandbox", "BOTH": "sandbox"})
    try:
        r = sbx.commands.run("echo $WHO $BOTH $MINE", envs={"MINE": "cmd", "BOTH": "cmd"})
        assert r.stdout == "sandbox cmd cmd\n"
        sbx.files.make_dir("/home/user/sub")
        assert sbx.commands.run("pwd", cwd="/home/user/sub").stdout.strip().endswith("/sub")
        with pytest.raises(CommandExitException) as failed:
            sbx.commands.run("echo oops >&2; exit 3")
        assert failed.value.exit_code == 3 and failed.value.stderr == "oops\n"
        seen: list[str] = []
        done = sbx.commands.run("for k in 1 2 3; do echo $k; done", on_stdout=seen.append)
        assert done.stdout == "1\n2\n3\n" and "".join(seen) == "1\n2\n3\n"
    finally:
        sbx.kill()


def test_background_commands_stdin_list_connect_and_kill(sbx: Sandbox) -> None:
    cat = sbx.commands.run("cat", background=True, stdin=True)
    sbx.commands.send_stdin(cat.pid, "hello\n")
    sbx.commands.close_stdin(cat.pid)
    assert cat.wait().stdout == "hello\n"

    sleeper = sbx.commands.run("sleep 600", background=True)
    assert sleeper.pid in {p.pid for p in sbx.commands.list()}
    late = sbx.commands.run("sleep 1; echo late", background=True)
    assert sbx.commands.connect(late.pid).wait().stdout == "late\n"
    assert sbx.commands.kill(sleeper.pid)
    with pytest.raises(CommandExitException):
        sleeper.wait()
    wait_for(lambda: sleeper.pid not in {p.pid for p in sbx.commands.list()}, 30, "the killed process leaves the list")


def test_a_command_ends_at_its_timeout_in_the_sdk_and_in_the_sandbox(sbx: Sandbox) -> None:
    # The SDK sends its `timeout` as the Start stream's Connect-Timeout-Ms and gives up on the stream then;
    # the server, as envd does, makes it the process's own deadline, so the process does not outlive it.
    with pytest.raises(TimeoutException):
        sbx.commands.run("sleep 300", timeout=2)
    wait_for(lambda: not sbx.commands.list(), 30, "the timed-out command is killed in the sandbox")
    background = sbx.commands.run("sleep 300", background=True, timeout=2)
    assert background.pid in {p.pid for p in sbx.commands.list()}
    wait_for(lambda: background.pid not in {p.pid for p in sbx.commands.list()}, 30,
             "a background command is killed at its timeout too")
    assert sbx.commands.run("sleep 3; echo done", timeout=0).stdout == "done\n"  # 0: no timeout


def test_files_through_envd(sbx: Sandbox) -> None:
    sbx.files.write("/home/user/d/b.bin", b"\x00\x01\xff")
    sbx.files.write("/home/user/d/stream.txt", io.BytesIO(b"streamed"))
    assert sbx.files.read("/home/user/d/stream.txt") == "streamed"
    sbx.files.remove("/home/user/d/stream.txt")
    assert sbx.files.read("/home/user/d/b.bin", format="bytes") == b"\x00\x01\xff"
    assert sbx.files.exists("/home/user/d/b.bin") and not sbx.files.exists("/home/user/none")
    info = sbx.files.get_info("/home/user/d/b.bin")
    assert (info.name, info.size, info.path) == ("b.bin", 3, "/home/user/d/b.bin")
    assert sbx.files.make_dir("/home/user/d/e") and not sbx.files.make_dir("/home/user/d/e")
    sbx.files.rename("/home/user/d/b.bin", "/home/user/d/c.bin")
    assert {e.name for e in sbx.files.list("/home/user/d")} == {"c.bin", "e"}
    assert sbx.commands.run("cat d/c.bin | od -An -tx1").stdout.split() == ["00", "01", "ff"]
    sbx.files.remove("/home/user/d")
    assert not sbx.files.exists("/home/user/d")
    with pytest.raises(SandboxException, match="outside /home/user"):
        sbx.files.read("/etc/passwd")


def test_watch_dir_reports_writes(sbx: Sandbox) -> None:
    sbx.files.make_dir("/home/user/w")
    handle = sbx.files.watch_dir("/home/user/w")
    try:
        sbx.files.write("/home/user/w/new.txt", "1")
        found = wait_for(lambda: [e for e in handle.get_new_events() if e.name == "new.txt"], 30, "a watch event")
        assert found
    finally:
        handle.stop()


def test_the_async_watch_dir_streams_events(server: E2bApiServer) -> None:
    async def flow() -> None:
        sbx = await AsyncSandbox.create()
        try:
            await sbx.files.make_dir("/home/user/aw")
            seen: list[tuple[str, FilesystemEventType]] = []
            arrived = asyncio.Event()

            def on_event(event: object) -> None:
                seen.append((event.name, event.type))  # type: ignore[attr-defined]
                if event.name == "streamed.txt":  # type: ignore[attr-defined]
                    arrived.set()

            handle = await sbx.files.watch_dir("/home/user/aw", on_event=on_event)
            await sbx.files.write("/home/user/aw/streamed.txt", "1")
            await asyncio.wait_for(arrived.wait(), 30)
            await handle.stop()
            # A write creates the file, writes it and sets its mode (the daemon's write does all three):
            # whether the later two arrive before the watch stops is timing, what arrives is these only.
            kinds = {kind for name, kind in seen if name == "streamed.txt"}
            assert FilesystemEventType.CREATE in kinds, seen
            assert kinds <= {FilesystemEventType.CREATE, FilesystemEventType.WRITE, FilesystemEventType.CHMOD}, seen
        finally:
            await sbx.kill()

    asyncio.run(flow())


def test_code_interpreter_keeps_state_streams_and_reports_errors(server: E2bApiServer) -> None:
    sbx = Interpreter.create()
    try:
        assert sbx.run_code("x = 41").error is None
        out: list[str] = []
        run = sbx.run_code("import sys\nprint('to out'); print('to err', file=sys.stderr)\nx + 1",
                           on_stdout=lambda m: out.append(m.line))
        assert run.text == "42" and run.logs.stdout == ["to out\n"] and run.logs.stderr == ["to err\n"]
        assert out == ["to out\n"]
        failed = sbx.run_code("raise ValueError('nope')")
        assert failed.error is not None and (failed.error.name, failed.error.value) == ("ValueError", "nope")
        assert "ValueError" in failed.error.traceback
        ctx = sbx.create_code_context()
        assert sbx.run_code("x = 'other'", context=ctx).error is None
        assert sbx.run_code("x", context=ctx).text == "'other'" and sbx.run_code("x").text == "41"
        assert ctx.id in {c.id for c in sbx.list_code_contexts()}
        sbx.restart_code_context(ctx)
        assert sbx.run_code("x", context=ctx).error.name == "NameError"
        sbx.remove_code_context(ctx)
        assert ctx.id not in {c.id for c in sbx.list_code_contexts()}
        with pytest.raises(SandboxException):
            sbx.run_code("1", language="r")
    finally:
        sbx.kill()


# A PNG of one black pixel, made with the standard library only (the default image has no PIL or matplotlib).
_PNG_CELL = """import struct, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
class Pixel:
    def _repr_png_(self):
        return (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 0, 0, 0, 0))
                + chunk(b'IDAT', zlib.compress(b'\\x00\\x00')) + chunk(b'IEND', b''))
    def _repr_html_(self):
        return '<b>pixel</b>'
Pixel()"""


def test_rich_results_come_back_and_missing_chart_libraries_say_so(server: E2bApiServer) -> None:
    sbx = Interpreter.create()
    try:
        run = sbx.run_code(_PNG_CELL)
        assert run.error is None and len(run.results) == 1
        shown = run.results[0]
        assert shown.is_main_result and shown.html == "<b>pixel</b>" and shown.text.startswith("<__main__.Pixel object")
        assert base64.b64decode(shown.png).startswith(b"\x89PNG\r\n\x1a\n") and {"png", "html"} <= set(shown.formats())
        failed = sbx.run_code("import matplotlib.pyplot as plt")
        assert failed.error is not None and failed.error.name == "ModuleNotFoundError"
        assert "default image has Python's standard library and numpy only" in failed.error.value
        assert sbx.run_code("import numpy\nint(numpy.arange(4).sum())").text == "6"
    finally:
        sbx.kill()


def test_fork_keeps_memory_and_forks_diverge(server: E2bApiServer, host: HostProcess) -> None:
    parent = Interpreter.create()
    try:
        parent.run_code("x = 1")
        parent.files.write("/home/user/f.txt", "parent")
        forks = parent.fork(count=3)
        assert len({f.sandbox_id for f in forks}) == 3
        for n, child in enumerate(forks):
            assert child.run_code("x").text == "1" and child.files.read("/home/user/f.txt") == "parent"
            child.run_code(f"x = {10 + n}")
        assert [c.run_code("x").text for c in forks] == ["10", "11", "12"]
        assert parent.run_code("x").text == "1"
        with pytest.raises(SandboxException):
            parent.fork(count=21)
    finally:
        for child in locals().get("forks", []):
            child.kill()
        parent.kill()
    assert "branch" in recorded(host)


def test_pause_and_connect_keep_files_and_memory(server: E2bApiServer) -> None:
    sbx = Interpreter.create()
    try:
        sbx.run_code("kept = [1, 2, 3]")
        sbx.files.write("/home/user/p.txt", "before pause")
        sbx.pause()
        assert Sandbox.get_info(sbx.sandbox_id).state.value == "paused"
        resumed = Interpreter.connect(sbx.sandbox_id)
        assert resumed.files.read("/home/user/p.txt") == "before pause"
        assert resumed.run_code("kept").text == "[1, 2, 3]"
        assert Sandbox.get_info(sbx.sandbox_id).state.value == "running"
    finally:
        sbx.kill()


def test_auto_pause_at_the_timeout_keeps_files_and_memory(server: E2bApiServer) -> None:
    sbx = Interpreter.create(lifecycle={"on_timeout": "pause"})
    try:
        assert sbx.get_info().lifecycle == {"on_timeout": "pause", "auto_resume": False}
        sbx.run_code("kept = 7")
        sbx.files.write("/home/user/auto.txt", "paused by its timeout")
        sbx.set_timeout(1)
        wait_for(lambda: Sandbox.get_info(sbx.sandbox_id).state.value == "paused", 30,
                 "the sandbox pauses at its timeout")
        # Paused, it is kept (not ended at its old timeout) until it is resumed or killed.
        assert Sandbox.get_info(sbx.sandbox_id).end_at.timestamp() > time.time() + 3600
        resumed = Interpreter.connect(sbx.sandbox_id, timeout=300)
        assert resumed.run_code("kept").text == "7"
        assert resumed.files.read("/home/user/auto.txt") == "paused by its timeout"
        assert Sandbox.get_info(sbx.sandbox_id).end_at.timestamp() < time.time() + 301
    finally:
        sbx.kill()
    with pytest.raises(SandboxException, match="auto_resume=True is not supported"):
        Sandbox.create(lifecycle={"on_timeout": "pause", "auto_resume": True})
    plain = Sandbox.create()
    try:
        assert plain.get_info().lifecycle == {"on_timeout": "kill", "auto_resume": False}
    finally:
        plain.kill()


def test_list_snapshots_filters_by_sandbox_and_name(server: E2bApiServer) -> None:
    a, b = Sandbox.create(), Sandbox.create()
    taken = []
    try:
        taken = [a.create_snapshot(), b.create_snapshot(name="of-b")]
        of_a = {s.snapshot_id for s in a.list_snapshots().next_items()}  # on an instance: its own only
        assert of_a == {taken[0].snapshot_id}
        of_b = {s.snapshot_id for s in Sandbox.list_snapshots(sandbox_id=b.sandbox_id).next_items()}
        assert of_b == {taken[1].snapshot_id}
        assert [s.snapshot_id for s in Sandbox.list_snapshots(name="of-b").next_items()] == [taken[1].snapshot_id]
        assert {t.snapshot_id for t in taken} <= {s.snapshot_id for s in Sandbox.list_snapshots().next_items()}
        assert not Sandbox.list_snapshots(sandbox_id="no-such-sandbox").next_items()
    finally:
        for snap in taken:
            Sandbox.delete_snapshot(snap.snapshot_id)
        a.kill()
        b.kill()


def test_snapshots_are_templates(sbx: Sandbox) -> None:
    sbx.files.write("/home/user/s.txt", "snap")
    snap = sbx.create_snapshot()
    try:
        child = Sandbox.create(template=snap.snapshot_id)
        assert child.files.read("/home/user/s.txt") == "snap"
        child.kill()
        assert snap.snapshot_id in {s.snapshot_id for s in Sandbox.list_snapshots().next_items()}
    finally:
        Sandbox.delete_snapshot(snap.snapshot_id)
    with pytest.raises(SandboxException, match="not found"):
        Sandbox.create(template="no-such-template")


def test_two_sandboxes_share_nothing_and_info_list_timeout(server: E2bApiServer) -> None:
    a = Sandbox.create(metadata={"who": "a"})
    b = Sandbox.create(metadata={"who": "b"})
    try:
        a.files.write("/home/user/only-a.txt", "a")
        assert not b.files.exists("/home/user/only-a.txt")
        info = a.get_info()
        assert info.sandbox_id == a.sandbox_id and info.metadata == {"who": "a"}
        listed = {s.sandbox_id for s in Sandbox.list().next_items()}
        assert {a.sandbox_id, b.sandbox_id} <= listed
        b.set_timeout(1)
        wait_for(lambda: not b.is_running(), 30, "the sandbox ends at its timeout")
        with pytest.raises(SandboxException, match="was not found"):
            b.commands.run("true")
        with pytest.raises(NotFoundException):
            b.get_info()
    finally:
        a.kill()


def test_wrong_key_and_foreign_token_are_refused(server: E2bApiServer, sbx: Sandbox) -> None:
    with server.environment(key="wrong"), pytest.raises(AuthenticationException):
        Sandbox.create()
    other = Sandbox.create()
    try:
        answer = httpx.post(f"{server.url}/process.Process/List", json={},
                            headers={"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": other._envd_access_token or "",
                                     "Content-Type": "application/json", "Connect-Protocol-Version": "1"})
        assert answer.status_code == 401
        killed = httpx.delete(f"{server.url}/sandboxes/{other.sandbox_id}",
                              headers={"E2b-Sandbox-Id": sbx.sandbox_id, "X-Access-Token": sbx._envd_access_token or ""})
        assert killed.status_code == 403 and other.is_running()
    finally:
        other.kill()


def test_what_cannot_work_here_says_why(sbx: Sandbox, server: E2bApiServer) -> None:
    with pytest.raises(SandboxException, match="no network"):
        Sandbox.create(allow_internet_access=True)
    with pytest.raises(SandboxException, match="PTY"):
        sbx.pty.create(size=__import__("e2b").PtySize(rows=24, cols=80))
    with pytest.raises(SandboxException, match="metrics"):
        sbx.get_metrics()


def test_the_async_sdk_runs_the_same_flow(server: E2bApiServer) -> None:
    async def flow() -> None:
        sbx = await AsyncSandbox.create()
        try:
            r = await sbx.commands.run("echo hi")
            assert r.stdout == "hi\n"
            await sbx.files.write("/home/user/a.txt", "x")
            assert await sbx.files.read("/home/user/a.txt") == "x"
        finally:
            await sbx.kill()
        ci = await AsyncInterpreter.create()
        try:
            await ci.run_code("x = 1")
            assert (await ci.run_code("x + 1")).text == "2"
            forks = await ci.fork(count=2)
            assert [(await f.run_code("x")).text for f in forks] == ["1", "1"]
            for f in forks:
                await f.kill()
        finally:
            await ci.kill()

    asyncio.run(flow())


def test_stopping_the_server_releases_every_sandbox(host: HostProcess) -> None:
    api = E2bApiServer(host.home, host=host.address)
    with api.environment():
        made = Interpreter.create()
        made.run_code("x = 1")
        paused = Sandbox.create()
        paused.pause()
    before = live_instances(host)
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log()
    assert before - live_instances(host), "the running sandbox's instance was stopped"
    assert "(2 sandboxes and snapshots released)" in api.log()  # the running one, and the paused one's snapshot


def live_instances(host: HostProcess) -> set[str]:
    return {i.instance_id for i in host.stub.ListInstances(host_pb.HostListInstancesRequest()).instances}
