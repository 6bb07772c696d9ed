"""worldrt.AsyncClient against a running host (grpc.aio) and an embedded one (threads): gathered calls run
at the same time, as timestamps taken inside the sandboxes show; the rest mirrors the blocking client."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import no_process_left
from tests.support import EXAMPLES, HostProcess
from worldrt.client import AsyncClient, AsyncInstance, Client, ExecResult, Output
from worldrt.errors import FailedPrecondition, NotFound, Unavailable

pytestmark = pytest.mark.daemons

Body = Callable[[AsyncClient], Awaitable[Any]]


@pytest.fixture(params=["remote", "embedded"])
def within(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Body], Any]:
    """Runs an async test body with an AsyncClient of a running host, then of an embedded one."""

    def run(body: Body) -> Any:
        async def main() -> Any:
            if request.param == "remote":
                served: HostProcess = request.getfixturevalue("served")
                client = await AsyncClient.connect(served.address, home=served.home, embed=False)
                assert client.remote
            else:
                client = await AsyncClient.connect(home=tmp_path, db=tmp_path / "world.duckdb")
                assert not client.remote
            async with client:
                return await body(client)

        outcome = asyncio.run(main())
        if request.param == "embedded":
            no_process_left(tmp_path)
        return outcome

    return run


def test_gathered_branches_run_at_the_same_time(within: Callable[[Body], Any]) -> None:
    async def body(rt: AsyncClient) -> list[ExecResult]:
        async with await rt.start("morph") as inst:
            await inst.exec("import time")
            branches = await inst.branch(3)
            results = await asyncio.gather(*(b.exec("t0 = time.time(); time.sleep(1.5); (t0, time.time())")
                                             for b in branches))
            await asyncio.gather(*(b.stop() for b in branches))
            return list(results)

    spans = [tuple(r.value) for r in within(body)]
    # Each branch slept 1.5 s; every one started before any ended, so all three ran at once (run one after
    # another, the first would end before the last began).
    assert len(spans) == 3 and max(start for start, _ in spans) < min(end for _, end in spans)


def test_the_async_client_mirrors_the_blocking_one(within: Callable[[Body], Any]) -> None:
    async def body(rt: AsyncClient) -> None:
        async with await rt.start() as inst:
            assert isinstance(inst, AsyncInstance)
            assert (await inst.exec("x = 6\nx * 7")).value == 42
            items = [item async for item in inst.exec_stream("print('a'); print('b'); x")]
            assert "".join(i.text for i in items if isinstance(i, Output)) == "a\nb\n"
            assert isinstance(items[-1], ExecResult) and items[-1].value == 6
            assert await inst.files.write("f.txt", "text") == 4
            assert await inst.files.read_text("f.txt") == "text"
            assert [f.name for f in await inst.files.list()] == ["f.txt"]
            snapshot = await inst.snapshot()
            pair = await snapshot.branch(2)
            assert [(await b.exec("x")).value for b in pair] == [6, 6]
            assert inst.id in {i.id for i in await rt.instances()}
            survivor = await rt.merge(pair, pair[0])
            assert survivor is pair[0] and pair[1].stopped
            with pytest.raises(FailedPrecondition):
                await pair[1].exec("x")
            await survivor.stop()
            await snapshot.delete()
        assert inst.stopped
        with pytest.raises(NotFound):
            await rt.instance("i-000000000000").exec("1")
        assert "default" in {n for i in await rt.images.list() for n in i.names}
        assert "client-morph/generator/default" in {x.link_id for x in await rt.links.list()}
        assert (await rt.providers.status("morph")).status == "available"
        assert {"start", "execute"} <= {c.operation for c in await rt.invocations(limit=100)}
        assert (await rt.components.inspect(EXAMPLES / "tiny.wat")).problem is None
        outcome = await rt.components.run(EXAMPLES / "tiny.wat", verse=1, args="hi")
        assert outcome.ok and outcome.text == "hi"
        assert (await rt.verse.select("branch")).providers == ("morph", "gensyn")

    within(body)


def test_a_client_that_must_not_embed_says_no_host_answers(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="no host answers"):
        asyncio.run(AsyncClient.connect(home=tmp_path, embed=False))
    with pytest.raises(Unavailable, match="worldrt host serve"):
        Client.connect(home=tmp_path, embed=False)
    assert not (tmp_path / "world.duckdb").exists()


def test_every_public_method_of_the_blocking_client_has_an_awaited_twin() -> None:
    import worldrt.client as face

    for name in face.__all__:
        twin = getattr(face, f"Async{name}", None)
        if twin is None or not inspect.isclass(twin):
            continue
        blocking = getattr(face, name)
        for method, found in vars(blocking).items():
            fn = found.__func__ if isinstance(found, classmethod) else found
            if method.startswith("_") or not callable(fn):
                continue
            other = inspect.getattr_static(twin, method, None)
            assert other is not None, f"Async{name} lacks {method}"
            other = other.__func__ if isinstance(other, classmethod) else other
            awaited = inspect.iscoroutinefunction(other) or inspect.isasyncgenfunction(other)
            # Handles by id ask nothing, so they are not awaited.
            assert awaited or method in ("instance", "snapshot", "process"), f"Async{name}.{method} is not awaited"
            ours, theirs = inspect.signature(fn).parameters, inspect.signature(other).parameters
            assert list(ours) == list(theirs), f"Async{name}.{method} takes other parameters"


def test_a_closed_client_says_so(tmp_path: Path) -> None:
    with Client.connect(home=tmp_path / "sync") as closed:
        pass
    with pytest.raises(FailedPrecondition, match="closed"):
        closed.start()

    async def main() -> None:
        rt = await AsyncClient.connect(home=tmp_path / "async")
        await rt.close()
        with pytest.raises(FailedPrecondition, match="closed"):
            await rt.start()

    asyncio.run(main())
    no_process_left(tmp_path)
