"""`worldrt api serve e2b` with the official e2b SDKs (sync and async): a stream the client drops (a
background command's `disconnect()`, `commands.connect`, `watch_dir(...).stop()`) is noticed at once and
gives back what it held; and the code interpreter's rich results (`display(...)` and a last value's
`_repr_*_` formats) arrive as the SDK's `Result` objects."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("e2b")
pytest.importorskip("e2b_code_interpreter")

from e2b import AsyncSandbox, Sandbox
from e2b.exceptions import SandboxException
from e2b_code_interpreter import AsyncSandbox as AsyncInterpreter
from e2b_code_interpreter import Sandbox as Interpreter

from tests.support import HostProcess, wait_for
from tests.support.e2b_api import E2bApiServer
from worldrt.v1 import host_pb

pytestmark = pytest.mark.daemons
PROVIDER_WATCHES = 4  # the sandbox provider's watches per instance (WatchLimits.per_instance, its default)
FOLLOWING = ("read-process-output", "wait-process")  # what a Start or Connect stream polls while it lasts





def following_calls(host: HostProcess) -> set[str]:
    """The ids of the recent rows of the calls a process stream makes while someone follows it."""
    rows = host.stub.RecentInvocations(host_pb.RecentInvocationsRequest(limit=2000)).invocations
    return {r.invocation_id for r in rows if r.provider_id == "morph" and r.operation in FOLLOWING}


def quiet(host: HostProcess, window_s: float = 1.5) -> bool:
    """Whether no stream followed any process during a window (a followed one polls every 0.25 s)."""
    before = following_calls(host)
    time.sleep(window_s)
    return following_calls(host) == before


def test_a_dropped_command_stream_stops_following_at_once(sbx: Sandbox, host: HostProcess) -> None:
    handle = sbx.commands.run("sleep 600", background=True)
    wait_for(lambda: not quiet(host), 30, "the background command's stream follows it")
    handle.disconnect()
    # Before, the server went on following until its next write (a keepalive 30 s on, which uvicorn drops
    # silently for a client that has gone), so it never stopped while the process lived.
    wait_for(lambda: quiet(host), 10, "the dropped stream stops following the process")
    assert handle.pid in {p.pid for p in sbx.commands.list()}, "the process itself runs on"
    again = sbx.commands.connect(handle.pid)
    wait_for(lambda: not quiet(host), 30, "a new connect follows it again")
    again.disconnect()
    wait_for(lambda: quiet(host), 10, "the dropped connect stream stops following too")
    assert sbx.commands.kill(handle.pid)


def test_dropped_watches_free_the_providers_watchers(sbx: Sandbox) -> None:
    sbx.files.make_dir("/home/user/w")
    # More watches than the provider keeps per instance, each stopped by the client (the SDK closes its
    # stream): each must give its provider watcher back, or the next watch_dir is refused.
    for n in range(PROVIDER_WATCHES * 2):
        handle = wait_for(lambda: _try_watch(sbx), 10, f"watch {n} starts once the earlier ones are released")
        handle.stop()
    handle = wait_for(lambda: _try_watch(sbx), 10, "a watch after all of them starts")
    try:
        sbx.files.write("/home/user/w/seen.txt", "1")
        events = wait_for(handle.get_new_events, 30, "the live watch reports the write")
        assert {e.name for e in events} == {"seen.txt"}, [(e.name, e.type) for e in events]  # no wake markers
    finally:
        handle.stop()
    wait_for(lambda: [e.name for e in sbx.files.list("/home/user/w")] == ["seen.txt"], 10,
             "the wake markers are removed as soon as they are made")


def _try_watch(sbx: Sandbox) -> Any:
    try:
        return sbx.files.watch_dir("/home/user/w")
    except SandboxException as exc:
        if "watch" not in str(exc).lower():
            raise
        return None  # refused: the provider's watches per instance are all held


def test_the_async_sdk_drops_streams_too(server: E2bApiServer, host: HostProcess) -> None:
    async def flow() -> None:
        sbx = await AsyncSandbox.create()
        try:
            handle = await sbx.commands.run("sleep 600", background=True)
            await asyncio.to_thread(wait_for, lambda: not quiet(host), 30, "the stream follows the command")
            await handle.disconnect()
            await asyncio.to_thread(wait_for, lambda: quiet(host), 10, "the dropped stream stops following")
            await sbx.files.make_dir("/home/user/aw")
            for n in range(PROVIDER_WATCHES * 2):
                deadline = time.monotonic() + 10
                while True:  # the provider refuses a watch while its watches per instance are all held
                    try:
                        watch = await sbx.files.watch_dir("/home/user/aw", on_event=lambda _event: None)
                        break
                    except SandboxException:
                        if time.monotonic() > deadline:
                            raise AssertionError(f"watch {n}: the dropped watches were not released") from None
                        await asyncio.sleep(0.2)
                await watch.stop()
            assert handle.pid in {p.pid for p in await sbx.commands.list()}
        finally:
            await sbx.kill()

    asyncio.run(flow())


# A cell whose values offer every format IPython knows, shown with display() and as the last value.
_RICH_CELL = r"""import struct, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
PNG = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1, 1, 8, 0, 0, 0, 0))
       + chunk(b'IDAT', zlib.compress(b'\x00\x00')) + chunk(b'IEND', b''))
class Html:
    def _repr_html_(self): return '<b>bold</b>'
class Markdown:
    def _repr_markdown_(self): return '# title'
class Svg:
    def _repr_svg_(self): return '<svg xmlns="http://www.w3.org/2000/svg"/>'
class Png:
    def _repr_png_(self): return PNG
class Latex:
    def _repr_latex_(self): return r'$\alpha$'
class Json:
    def _repr_json_(self): return {'a': [1, 2]}
class Js:
    def _repr_javascript_(self): return 'console.log(1)'
class Broken:
    def _repr_html_(self): raise RuntimeError('no html today')
    def __repr__(self): return 'Broken()'
print('before')
display(Html(), Markdown())
display(Svg())
display(Broken())
class Everything(Png, Latex, Json, Js):
    def __repr__(self): return 'Everything()'
Everything()"""


def _check_rich(run: object) -> None:
    results = run.results  # type: ignore[attr-defined]
    assert run.error is None and run.logs.stdout == ["before\n"], run.error  # type: ignore[attr-defined]
    assert [r.is_main_result for r in results] == [False, False, False, False, True]
    html, markdown, svg, broken, main = results
    assert html.html == "<b>bold</b>" and html.text.startswith("<__main__.Html object")
    assert markdown.markdown == "# title" and svg.svg.startswith("<svg")
    assert broken.text == "Broken()" and broken.html is None and list(broken.formats()) == ["text"]
    assert main.text == "Everything()" and main.latex == r"$\alpha$" and main.json == {"a": [1, 2]}
    assert main.javascript == "console.log(1)" and base64.b64decode(main.png).startswith(b"\x89PNG\r\n\x1a\n")
    assert set(main.formats()) == {"text", "png", "latex", "json", "javascript"}
    assert run.text == "Everything()"  # type: ignore[attr-defined]


def test_rich_results_reach_the_sdk_as_results(server: E2bApiServer) -> None:
    sbx = Interpreter.create()
    try:
        _check_rich(sbx.run_code(_RICH_CELL))
        # display() is a name of every context, and a cell that only displays has no main result.
        ctx = sbx.create_code_context()
        only = sbx.run_code("display(Html())", context=ctx)
        assert only.error is not None and only.error.name == "NameError"  # Html is the default context's
        only = sbx.run_code("display(Html())")
        assert [(r.html, r.is_main_result) for r in only.results] == [("<b>bold</b>", False)] and only.text is None
    finally:
        sbx.kill()


def test_the_async_interpreter_gets_the_same_results(server: E2bApiServer) -> None:
    async def flow() -> None:
        sbx = await AsyncInterpreter.create()
        try:
            _check_rich(await sbx.run_code(_RICH_CELL))
        finally:
            await sbx.kill()

    asyncio.run(flow())


# Issue 22's remaining items: the command's refusals, the old create path, template builds, on_stderr.
def test_the_command_needs_a_key_and_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "E2B_API_KEY"} | {"WORLDRT_STATE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "worldrt.host.cli", "api", "serve", "e2b"]
    keyless = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert keyless.returncode != 0 and "set E2B_API_KEY in the server's environment" in keyless.stderr
    exposed = subprocess.run([*command, "--listen", "0.0.0.0:8791"], env={**env, "E2B_API_KEY": "k"},
                             capture_output=True, text=True, timeout=60)
    assert exposed.returncode != 0 and "refusing to serve the E2B API on 0.0.0.0:8791" in exposed.stderr


def test_the_old_create_path_and_template_builds(server: E2bApiServer) -> None:
    keyed = {"X-API-KEY": server.key}
    made = httpx.post(f"{server.url}/sandboxes", json={"templateID": "base"}, headers=keyed, timeout=60)
    assert made.status_code == 201, made.text
    sandbox_id = made.json()["sandboxID"]
    assert sandbox_id in {s.sandbox_id for s in Sandbox.list().next_items()}
    assert httpx.delete(f"{server.url}/sandboxes/{sandbox_id}", headers=keyed, timeout=60).status_code == 204
    built = httpx.post(f"{server.url}/v3/templates", json={"name": "mine"}, headers=keyed, timeout=60)
    assert built.status_code == 501 and "custom template builds need Docker" in built.json()["message"]
    assert httpx.post(f"{server.url}/sandboxes", json={}, timeout=60).status_code == 401


def test_on_stderr_gets_the_cells_stderr(server: E2bApiServer) -> None:
    sbx = Interpreter.create()
    try:
        err: list[str] = []
        run = sbx.run_code("import sys\nprint('oops', file=sys.stderr)", on_stderr=lambda m: err.append(m.line))
        assert err == ["oops\n"] and run.logs.stderr == ["oops\n"]
    finally:
        sbx.kill()
