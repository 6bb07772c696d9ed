"""An instance's filesystem beyond write, read and list, through the host (issue 20): stat, mkdir, move,
remove and watch, from the client (sync against a running host and an embedded one, async) and the CLI;
missing paths are NotFound, existing ones AlreadyExists, paths out of the workspace InvalidArgument."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from tests.support import HostProcess, cli, wait_for
from worldrt.client import AsyncClient, Client, FileEvent
from worldrt.errors import AlreadyExists, InvalidArgument, NotFound

pytestmark = pytest.mark.daemons


def test_stat_mkdir_move_remove_and_watch(rt: Client) -> None:
    with rt.start("morph") as inst:
        files = inst.files
        assert files.mkdir("a/b/c", parents=True) and not files.mkdir("a/b/c", parents=True)
        with pytest.raises(AlreadyExists):
            files.mkdir("a")
        files.write("a/b/c/f.txt", "hello")
        info = files.stat("a/b/c/f.txt")
        assert (info.kind, info.size, info.path) == ("file", 5, "a/b/c/f.txt")
        moved = files.move("a/b/c/f.txt", "a/g.txt")
        assert moved.path == "a/g.txt" and files.read_text("a/g.txt") == "hello"
        with pytest.raises(NotFound):
            files.stat("a/b/c/f.txt")
        with pytest.raises(InvalidArgument):
            files.stat("../etc/passwd")
        events: list[FileEvent] = []
        ready = threading.Event()

        def watch() -> None:
            for event in files.watch("a", timeout_s=20):
                events.append(event)
                if event.kind == "ready":
                    ready.set()
                if event.kind == "remove":
                    return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert ready.wait(30), "the watch did not start"
        files.write("a/new.txt", "x")
        files.remove("a/new.txt")
        watcher.join(30)
        kinds = [(e.kind, e.path) for e in events]
        assert ("create", "a/new.txt") in kinds and ("remove", "a/new.txt") in kinds, kinds
        assert files.remove("a", recursive=True) == 4  # a itself, b, c and g.txt
        with pytest.raises(NotFound):
            files.remove("a")


def test_the_async_client_and_the_cli_mirror_them(served: HostProcess) -> None:
    async def body() -> str:
        async with await AsyncClient.connect(served.address, home=served.home, embed=False) as rt:
            inst = await rt.start("morph")
            assert await inst.files.mkdir("d/e", parents=True)
            await inst.files.write("d/e/x", b"123")
            assert (await inst.files.stat("d/e/x")).size == 3
            assert (await inst.files.move("d/e/x", "d/y")).path == "d/y"
            seen: list[Any] = []
            async for event in inst.files.watch("d", timeout_s=1):
                seen.append(event.kind)
            assert seen[0] == "ready"
            assert await inst.files.remove("d", recursive=True) == 3
            return inst.id

    iid = asyncio.run(body())
    home = served.home

    def ok(*args: str) -> str:
        done = cli(home, "files", *args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert json.loads(ok("mkdir", iid, "p/q", "-p", "--json")) == {"path": "p/q", "created": True}
    assert json.loads(ok("stat", iid, "p/q", "--json"))["kind"] == "dir"
    ok("mv", iid, "p/q", "p/r")
    assert ok("stat", iid, "p/r").startswith("dir ")
    watched = cli(home, "files", "watch", iid, "p", "--timeout", "1", "--json")
    assert watched.returncode == 0 and json.loads(watched.stdout.splitlines()[0])["kind"] == "ready"
    assert ok("rm", iid, "p", "-r").strip() == "removed 2"
    missing = cli(home, "files", "stat", iid, "p")
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1, missing.stderr
    wait_for(lambda: cli(home, "instance", "stop", iid).returncode == 0, 30, "the instance did not stop")
