"""The seed's Modal snippet exactly as written, and the common Sandbox features of the SDK, against
`worldrt api serve modal` through a real host: each feature's real effect checked (output, exit codes,
stdin, files a process sees, isolation, a snapshot image carrying its files), and the rows recorded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Iterator

import modal
import modal.client
import pytest
from modal.exception import (
    NotFoundError,
    SandboxFilesystemError,
    SandboxFilesystemNotFoundError,
    UnimplementedError,
)
from modal.types import FileWatchEvent, FileWatchEventType

from tests.support import HostProcess, ModalApiServer, wait_for
from worldrt.v1 import host_pb, pb

pytestmark = pytest.mark.daemons

SNIPPET = '''import modal
app = modal.App.lookup("verse-runner", create_if_missing=True)
sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim().pip_install("numpy"))
result = sb.exec("python", "-c", "print('verse executed')")
print(result.stdout.read())
sb.terminate()
'''


def modal_operations(host: HostProcess) -> list[str]:
    """The operations the host recorded on the modal provider, oldest first."""
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=1000)).invocations
    return [r.operation for r in reversed(rows) if r.provider_id == "modal"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    running = HostProcess(tmp_path_factory.mktemp("modal-sandboxes-host"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def server(host: HostProcess) -> Iterator[ModalApiServer]:
    api = ModalApiServer(host.home, host=host.address)
    yield api
    assert api.stop() in (0, 130)
    assert "Traceback" not in api.log(), api.log()[-4000:]


@pytest.fixture(scope="module")
def app(server: ModalApiServer) -> Iterator[modal.App]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.client_env().items():
            patch.setenv(name, value)
        modal.client._Client._client_from_env = None
        yield modal.App.lookup("worldrt-features", create_if_missing=True)
        modal.client._Client._client_from_env = None


@pytest.fixture()
def sb(app: modal.App) -> Iterator[modal.Sandbox]:
    sandbox = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    yield sandbox
    sandbox.terminate()


def test_the_seeds_snippet_runs_unchanged_and_is_recorded(server: ModalApiServer, host: HostProcess) -> None:
    first = server.run_script(SNIPPET)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout == "verse executed\n\n"
    assert modal_operations(host) == ["inspect-image", "build-image", "start", "start-process",
                                      "read-process-output", "stop"]
    # The image is built once: a second run finds it by its recipe and starts at once, no build.
    again = server.run_script(SNIPPET)
    assert again.returncode == 0 and again.stdout == "verse executed\n\n", again.stderr[-3000:]
    assert modal_operations(host)[6:] == ["start", "start-process", "read-process-output", "stop"]


def test_an_entrypoint_has_stdin_stdout_stderr_and_a_return_code(app: modal.App) -> None:
    sb = modal.Sandbox.create("sh", "-c", "read x; echo got $x; echo oops >&2; exit 3", app=app,
                              image=modal.Image.debian_slim())
    sb.stdin.write(b"hello\n")
    sb.stdin.write_eof()
    sb.stdin.drain()
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 3
    assert sb.stdout.read() == "got hello\n"
    assert sb.stderr.read() == "oops\n"
    assert modal.Sandbox.from_id(sb.object_id).returncode == 3


def test_exec_with_stdin_env_workdir_and_secrets(app: modal.App) -> None:
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(),
                              secrets=[modal.Secret.from_dict({"FROM_SECRET": "s1"})])
    try:
        p = sb.exec("sh", "-c", "cat; echo $FROM_SECRET $FROM_ENV; pwd", env={"FROM_ENV": "e2"}, workdir="/tmp")
        p.stdin.write(b"piped in\n")
        p.stdin.write_eof()
        p.stdin.drain()
        assert p.stdout.read() == "piped in\ns1 e2\n/tmp\n"
        assert p.wait() == 0
        failing = sb.exec("sh", "-c", "echo bad >&2; exit 7")
        assert failing.wait() == 7 and failing.poll() == 7 and failing.stderr.read() == "bad\n"
    finally:
        sb.terminate()


def test_a_named_secret(app: modal.App) -> None:
    modal.Secret.objects.create("worldrt-named", {"NAMED": "yes"})
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), secrets=[modal.Secret.from_name("worldrt-named")])
    try:
        assert sb.exec("sh", "-c", "echo $NAMED").stdout.read() == "yes\n"
    finally:
        sb.terminate()
    with pytest.raises(NotFoundError):
        modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), secrets=[modal.Secret.from_name("missing")])


def test_output_streams_before_the_process_ends(sb: modal.Sandbox) -> None:
    p = sb.exec("sh", "-c", "echo first; read wait_for_it; echo second")
    lines = iter(p.stdout)
    assert next(lines) == "first\n"  # it is still waiting for its stdin: the line came before its end
    assert p.poll() is None
    p.stdin.write(b"go\n")
    p.stdin.drain()
    assert next(lines) == "second\n"
    assert p.wait() == 0


def test_an_exec_is_killed_at_its_timeout(sb: modal.Sandbox, host: HostProcess) -> None:
    p = sb.exec("sh", "-c", "echo started; sleep 60; echo never", timeout=1)
    p.wait()  # the SDK's own deadline ends its wait
    instance = next(i for i in host.stub.ListInstances(host_pb.HostListInstancesRequest(provider="modal")).instances
                    if i.metadata.get("modal_sandbox") == sb.object_id)

    def state() -> int:
        listed = host.stub.CallProvider(host_pb.ProviderCallRequest(
            source="modal-api", list_processes=pb.ListProcessesRequest(instance_id=instance.instance_id)))
        return next(q.state for q in listed.processes.processes if q.argv[:2] == ["sh", "-c"] and "never" in q.argv[2])

    # The server killed it at its timeout, not at its end 60 s later.
    wait_for(lambda: state() == pb.PROCESS_TIMED_OUT, 20, "the exec was killed at its timeout")
    assert sb.exec("sh", "-c", "echo alive").stdout.read() == "alive\n"


def test_the_filesystem_on_any_path_a_process_may_write(sb: modal.Sandbox) -> None:
    fs = sb.filesystem
    fs.write_text("in tmp", "/tmp/deep/a.txt")
    fs.write_bytes(b"\x00\xffbytes", "/workspace/b.bin")
    assert fs.read_text("/tmp/deep/a.txt") == "in tmp"
    assert fs.read_bytes("/workspace/b.bin") == b"\x00\xffbytes"
    assert sb.exec("cat", "/tmp/deep/a.txt").stdout.read() == "in tmp"  # a process sees the file
    assert [f.name for f in fs.list_files("/tmp/deep")] == ["a.txt"]
    info = fs.stat("/workspace/b.bin")
    assert info.size == 7 and info.is_file()
    fs.make_directory("/workspace/x/y")
    assert fs.stat("/workspace/x/y").is_dir()
    fs.remove("/workspace/x", recursive=True)
    with pytest.raises(SandboxFilesystemNotFoundError):
        fs.stat("/workspace/x")
    with pytest.raises(SandboxFilesystemNotFoundError):
        fs.read_text("/tmp/missing")


def test_two_sandboxes_do_not_see_each_other(app: modal.App) -> None:
    one = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    two = modal.Sandbox.create(app=app, image=modal.Image.debian_slim())
    try:
        one.filesystem.write_text("mine", "/tmp/secret.txt")
        assert two.exec("sh", "-c", "cat /tmp/secret.txt || echo absent").stdout.read() == "absent\n"
    finally:
        one.terminate()
        two.terminate()


def test_a_filesystem_snapshot_is_an_image_new_sandboxes_start_from(app: modal.App, sb: modal.Sandbox) -> None:
    sb.filesystem.write_text("carried", "/workspace/kept.txt")
    sb.filesystem.write_text("in tmp too", "/tmp/kept.txt")
    image = sb.snapshot_filesystem()
    child = modal.Sandbox.create(app=app, image=image)
    again = modal.Sandbox.create(app=app, image=modal.Image.from_id(image.object_id))
    try:
        assert child.exec("cat", "/workspace/kept.txt", "/tmp/kept.txt").stdout.read() == "carriedin tmp too"
        assert again.exec("cat", "/workspace/kept.txt").stdout.read() == "carried"
    finally:
        child.terminate()
        again.terminate()


def test_a_memory_snapshot_is_refused_with_the_reason(sb: modal.Sandbox) -> None:
    with pytest.raises(UnimplementedError, match="snapshots a sandbox's files only"):
        sb._experimental_snapshot()


def test_the_async_interface_execs(app: modal.App) -> None:
    async def flow() -> tuple[str, int]:
        sb = await modal.Sandbox.create.aio(app=app, image=modal.Image.debian_slim())
        try:
            p = await sb.exec.aio("sh", "-c", "echo async; exit 4")
            out = await p.stdout.read.aio()
            return out, await p.wait.aio()
        finally:
            await sb.terminate.aio()

    assert asyncio.run(flow()) == ("async\n", 4)


def test_an_idle_sandbox_ends_at_its_idle_timeout(app: modal.App) -> None:
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(), idle_timeout=2)
    started = time.monotonic()
    sb.wait(raise_on_termination=False)  # nothing touches it: it ends by itself, long before its 300 s timeout
    assert time.monotonic() - started < 60
    assert sb.poll() is not None
    with pytest.raises(Exception, match="finished|already"):
        sb.exec("true").wait()


WRITER = "mkdir -p /workspace/w; i=0; while [ $i -lt 300 ]; do echo $i >> /workspace/w/{name}; i=$((i+1)); sleep 0.2; done"


def _events(watch: Iterator[FileWatchEvent], until: Callable[[FileWatchEvent], bool], limit: int = 200,
            ) -> list[FileWatchEvent]:
    """The events of ``watch`` up to the first ``until`` accepts (leaving the loop then), at most ``limit``."""
    seen = []
    for event in watch:
        seen.append(event)
        if until(event) or len(seen) >= limit:
            break
    return seen


def test_watch_reports_changes_in_the_workspace(sb: modal.Sandbox) -> None:
    sb.filesystem.make_directory("/workspace/w")
    sb.exec("sh", "-c", WRITER.format(name="a.txt"))
    seen = _events(sb.filesystem.watch("/workspace/w", timeout=60), lambda e: e.type == FileWatchEventType.Modify)
    assert seen[-1].type == FileWatchEventType.Modify and seen[-1].paths == ["/workspace/w/a.txt"], seen
    # A file is watched on its own, and a filter keeps only its kinds; leaving the loop ends each watch, so
    # more watches than a sandbox may hold at once run one after another.
    sb.exec("sh", "-c", WRITER.format(name="other.txt"))
    for _ in range(6):
        seen = _events(sb.filesystem.watch("/workspace/w/a.txt", filter=[FileWatchEventType.Modify], timeout=60),
                       lambda e: True, limit=3)
        assert [e.paths for e in seen] == [["/workspace/w/a.txt"]] and seen[0].type == FileWatchEventType.Modify


def test_watch_ends_at_its_timeout_and_refuses_what_it_cannot_watch(sb: modal.Sandbox) -> None:
    sb.filesystem.make_directory("/workspace/quiet")
    assert list(sb.filesystem.watch("/workspace/quiet", timeout=2)) == []
    with pytest.raises(SandboxFilesystemNotFoundError):
        list(sb.filesystem.watch("/workspace/missing", timeout=5))
    with pytest.raises(SandboxFilesystemNotFoundError):
        list(sb.filesystem.watch("/tmp/missing", timeout=5))  # served by the helper in the sandbox
    # The server serves on, and the sandbox too.
    assert sb.exec("sh", "-c", "echo alive").stdout.read() == "alive\n"


TMP_WRITER = "mkdir -p /tmp/w; i=0; while [ $i -lt 300 ]; do echo $i >> /tmp/w/{name}; i=$((i+1)); sleep 0.2; done"


def test_watch_outside_the_workspace_reports_each_kind(sb: modal.Sandbox) -> None:
    sb.filesystem.make_directory("/tmp/w")
    sb.exec("sh", "-c", TMP_WRITER.format(name="a.txt"))
    seen = _events(sb.filesystem.watch("/tmp/w", timeout=60), lambda e: e.type == FileWatchEventType.Modify)
    assert seen[-1].paths == ["/tmp/w/a.txt"], seen
    assert [e.paths for e in seen if e.type == FileWatchEventType.Create] in ([], [["/tmp/w/a.txt"]])
    # A file made, renamed (the SDK reports a rename as Modify, old path then new) and removed, recursively.
    sb.filesystem.make_directory("/tmp/w/sub")
    script = "sleep 1; echo x > /tmp/w/sub/n.txt; sleep 1; mv /tmp/w/sub/n.txt /tmp/w/sub/m.txt; sleep 1; rm /tmp/w/sub/m.txt"
    sb.exec("sh", "-c", script)
    seen = _events(sb.filesystem.watch("/tmp/w/sub", recursive=True, timeout=60),
                   lambda e: e.type == FileWatchEventType.Remove)
    assert [(e.type, e.paths) for e in seen] == [
        (FileWatchEventType.Create, ["/tmp/w/sub/n.txt"]),
        (FileWatchEventType.Modify, ["/tmp/w/sub/n.txt", "/tmp/w/sub/m.txt"]),
        (FileWatchEventType.Remove, ["/tmp/w/sub/m.txt"])], seen
    # A filter keeps its kinds; leaving the loop ends the helper, so more watches than a sandbox may hold
    # at once run one after another.
    for _ in range(6):
        seen = _events(sb.filesystem.watch("/tmp/w/a.txt", filter=[FileWatchEventType.Modify], timeout=60),
                       lambda e: True, limit=1)
        assert [(e.type, e.paths) for e in seen] == [(FileWatchEventType.Modify, ["/tmp/w/a.txt"])]
    assert list(sb.filesystem.watch("/tmp", timeout=2)) == []  # nothing changed in /tmp itself: ends at its timeout

    def helpers() -> list[str]:
        out = sb.exec("sh", "-c", "ps -eo args 2>/dev/null || cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        return [line for line in out.stdout.read().splitlines() if "MAX_ENTRIES" in line]

    wait_for(lambda: not helpers(), 30, "every watch helper ended with its watch")


def test_watch_outside_the_workspace_async(app: modal.App) -> None:
    async def flow() -> list[FileWatchEvent]:
        sb = await modal.Sandbox.create.aio(app=app, image=modal.Image.debian_slim())
        try:
            await sb.filesystem.make_directory.aio("/tmp/aw")
            await sb.exec.aio("sh", "-c", "sleep 1; echo hi > /tmp/aw/f.txt")
            seen = []
            async for event in sb.filesystem.watch.aio("/tmp/aw", timeout=60):
                seen.append(event)
                break
            return seen
        finally:
            await sb.terminate.aio()

    seen = asyncio.run(flow())
    assert [(e.type, e.paths) for e in seen] == [(FileWatchEventType.Create, ["/tmp/aw/f.txt"])]


BAD_PYTHONS = {
    "an event of an unknown kind": "echo '{\"event_type\": \"Explode\", \"paths\": [\"/tmp\"]}'; sleep 30",
    "a line longer": "head -c 100000 /dev/zero | tr '\\0' a; sleep 30",
    "did not describe": "echo garbage >&2; exit 3",
}


@pytest.mark.parametrize("reason", list(BAD_PYTHONS))
def test_a_watch_helper_the_sandbox_subverted_ends_its_watch_with_the_reason(app: modal.App, reason: str) -> None:
    # The sandbox's own code decides what `python3` is there: the server reads what comes back as untrusted.
    sb = modal.Sandbox.create(app=app, image=modal.Image.debian_slim(),
                              secrets=[modal.Secret.from_dict({"PATH": "/tmp/evil:/usr/local/bin:/usr/bin:/bin"})])
    try:
        sb.filesystem.write_text("#!/bin/sh\n" + BAD_PYTHONS[reason] + "\n", "/tmp/evil/python3")
        sb.exec("chmod", "+x", "/tmp/evil/python3").wait()
        with pytest.raises(SandboxFilesystemError, match=reason):
            list(sb.filesystem.watch("/tmp", timeout=30))
        assert sb.exec("sh", "-c", "echo alive").stdout.read() == "alive\n"  # the server serves on
    finally:
        sb.terminate()


def test_a_16_mib_file_goes_in_and_out_byte_exact_sync_and_async(app: modal.App, sb: modal.Sandbox) -> None:
    data = os.urandom(16 * 1024 * 1024)
    sb.filesystem.write_bytes(data, "/tmp/big.bin")
    assert sb.filesystem.read_bytes("/tmp/big.bin") == data
    digest = sb.exec("sha256sum", "/tmp/big.bin").stdout.read().split()[0]
    assert digest == hashlib.sha256(data).hexdigest()  # a process sees the same bytes

    async def flow() -> bytes:
        await sb.filesystem.write_bytes.aio(data[::-1], "/workspace/big.bin")
        return await sb.filesystem.read_bytes.aio("/workspace/big.bin")

    assert asyncio.run(flow()) == data[::-1]


BLOBS = """
import asyncio, os, sys
from modal.client import _Client
from modal._utils.blob_utils import blob_download, blob_upload
from modal_proto import api_pb2

async def main():
    client = await _Client.from_env()
    data = os.urandom(16 * 1024 * 1024)
    blob_id = await blob_upload(data, client.stub)
    assert await blob_download(blob_id, client.stub) == data, "bytes differ"
    try:
        await blob_download(blob_id, client.stub)  # downloaded once: used, and gone
        print("second download worked")
    except Exception as exc:
        print("second:", type(exc).__name__, exc)
    try:
        await client.stub.BlobCreate(api_pb2.BlobCreateRequest(content_length=300 * 1024 * 1024))
        print("over the cap accepted")
    except Exception as exc:
        print("over:", type(exc).__name__, exc)
    print("round trip ok")

asyncio.run(main())
"""


def test_blobs_round_trip_16_mib_through_the_sdk_and_refuse_past_the_cap(server: ModalApiServer) -> None:
    done = server.run_script(BLOBS)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "round trip ok" in done.stdout, done.stdout
    assert "second: NotFoundError" in done.stdout, done.stdout
    assert "over: ResourceExhaustedError" in done.stdout and "file size cap" in done.stdout, done.stdout
