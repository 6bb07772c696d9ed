"""Processes through the client (issue 20), against a running host and an embedded one, sync and async:
spawn, output by offset, stdin by offset with retries, wait, signal, kill, list; each call recorded by
the host; unknown processes are NotFound and offsets no longer kept OutOfRange."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import no_process_left
from tests.support import HostProcess, wait_for
from worldrt.client import AsyncClient, AsyncProcess, Client, Process, ProcessChunk
from worldrt.errors import InvalidArgument, NotFound, OutOfRange

pytestmark = pytest.mark.daemons

CAT_AND_EXIT = ["sh", "-c", "echo out; echo err >&2; cat; exit 3"]
# More than the daemon keeps of one stream (16 MiB by default): its first offsets are dropped.
FLOOD = ["sh", "-c", "head -c 18000000 /dev/zero"]


def joined(chunks: list[ProcessChunk], stream: str) -> bytes:
    """One stream's bytes, checking each chunk starts where the one before it ended."""
    mine = [c for c in chunks if c.stream == stream]
    for before, after in itertools.pairwise(mine):
        assert after.offset == before.offset + len(before.data)
    return b"".join(c.data for c in mine)


def test_a_process_is_spawned_fed_read_waited_for_listed_and_recorded(rt: Client) -> None:
    with rt.start("morph") as inst:
        proc = inst.spawn(CAT_AND_EXIT, stdin=True, tag="t1", env={"X": "1"})
        assert isinstance(proc, Process) and proc.last_status is not None and proc.last_status.running
        assert proc.write("ab") == 2
        assert proc.write(b"ab", 0) == 2  # a retry of what was accepted is not applied twice
        assert proc.write(b"bcd\n", 1) == 5  # only the new tail is
        # Another handle of the same process learns where stdin stands before it writes.
        assert inst.process(proc.id).write(b"ef\n") == 8
        proc.close_stdin()
        chunks = list(proc.output())
        assert joined(chunks, "stdout") == b"out\nabcd\nef\n" and joined(chunks, "stderr") == b"err\n"
        done = proc.wait()
        assert (done.state, done.exit_code, done.signal, done.ok) == ("exited", 3, 0, False)
        assert done.stdout_size == 12 and done.output_ended and not done.stdin_open
        # Output is read again, by offset, one stream at a time.
        assert proc.stdout(4) == b"abcd\nef\n" and proc.stderr() == b"err\n"
        assert [c.offset for c in proc.output("stdout", 9)] == [9]
        listed = {p.id: p.last_status for p in inst.processes()}
        assert proc.id in listed and listed[proc.id] is not None and listed[proc.id].tag == "t1"
    operations = [row.operation for row in rt.invocations(limit=40)]
    for operation in ("start-process", "write-process-stdin", "read-process-output", "wait-process",
                      "list-processes"):
        assert operation in operations, operations


def test_output_follows_a_live_process_to_its_end(rt: Client) -> None:
    with rt.start("morph") as inst:
        proc = inst.spawn(["sh", "-c", "echo first; sleep 1; echo second >&2; sleep 1; echo third"])
        chunks = list(proc.output())
        assert joined(chunks, "stdout") == b"first\nthird\n" and joined(chunks, "stderr") == b"second\n"
        assert proc.wait(20).state == "exited"


def test_wait_signal_kill_and_timeout_are_distinct(rt: Client) -> None:
    with rt.start("morph") as inst:
        sleeper = inst.spawn(["sleep", "60"])
        assert sleeper.wait(0.5).state == "running"
        termed = inst.spawn(["sleep", "60"])
        termed.signal("TERM")
        assert (termed.wait(20).state, termed.wait().signal) == ("killed", 15)
        sleeper.kill()
        assert (sleeper.wait(20).state, sleeper.last_status.signal if sleeper.last_status else 0) == ("killed", 9)
        timed = inst.spawn(["sleep", "60"], timeout_s=0.5)
        assert timed.wait(20).state == "timed_out"
        quick = inst.spawn(["true"])
        assert quick.wait(20).ok


def test_unknown_processes_are_not_found_and_dropped_offsets_out_of_range(rt: Client) -> None:
    with rt.start("morph") as inst:
        ghost = inst.process("p-000000000000")
        for call in (ghost.poll, lambda: ghost.write(b"x"), lambda: list(ghost.output()), ghost.kill):
            with pytest.raises(NotFound, match="no process 'p-000000000000'"):
                call()
        flood = inst.spawn(FLOOD)
        assert flood.wait(60).ok
        status = wait_for(lambda: (now := flood.poll()).output_ended and now, 30, "its output did not end")
        assert status.stdout_size == 18_000_000 and status.stdout_first_offset > 0
        with pytest.raises(OutOfRange, match=r"offset 0 is no longer kept: the first kept offset is [1-9]"):
            list(flood.output("stdout", 0))
        tail = flood.stdout(status.stdout_size - 10)
        assert tail == b"\0" * 10
        with pytest.raises(InvalidArgument, match="stream must be"):
            list(flood.output("stdin"))  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="unknown signal"):
            flood.signal("NOPE")


def test_a_follow_longer_than_the_hosts_slice_goes_on_where_it_stopped(embedded: Client) -> None:
    host: Any = embedded._api
    host.follow_slice_s = 1.0
    try:
        with embedded.start("morph") as inst:
            proc = inst.spawn(["sh", "-c", "for i in 1 2 3 4; do echo $i; sleep 0.8; done"])
            chunks = list(proc.output("stdout"))
            assert joined(chunks, "stdout") == b"1\n2\n3\n4\n"
    finally:
        host.follow_slice_s = type(host).follow_slice_s
    # It took more than one read: each slice's row is there.
    reads = [r for r in embedded.invocations(limit=20) if r.operation == "read-process-output"]
    assert len(reads) >= 2, reads


@pytest.fixture(params=["remote", "embedded"])
def within(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Callable[[AsyncClient], Any]], Any]:
    def run(body: Callable[[AsyncClient], Any]) -> Any:
        async def main() -> Any:
            if request.param == "remote":
                served: HostProcess = request.getfixturevalue("served")
                client = await AsyncClient.connect(served.address, home=served.home, embed=False)
            else:
                client = await AsyncClient.connect(home=tmp_path, db=tmp_path / "world.duckdb")
            async with client:
                return await body(client)

        outcome = asyncio.run(main())
        if request.param == "embedded":
            no_process_left(tmp_path)
        return outcome

    return run


def test_the_async_client_mirrors_every_process_call(within: Callable[[Callable[[AsyncClient], Any]], Any]) -> None:
    async def body(rt: AsyncClient) -> None:
        async with await rt.start("morph") as inst:
            proc = await inst.spawn(CAT_AND_EXIT, stdin=True, tag="a1")
            assert isinstance(proc, AsyncProcess)
            assert await proc.write("ab") == 2 and await proc.write(b"abc\n", 0) == 4
            assert await inst.process(proc.id).write(b"d\n") == 6
            await proc.close_stdin()
            chunks = [c async for c in proc.output()]
            assert joined(chunks, "stdout") == b"out\nabc\nd\n" and joined(chunks, "stderr") == b"err\n"
            done = await proc.wait()
            assert (done.state, done.exit_code) == ("exited", 3)
            assert await proc.stdout(4) == b"abc\nd\n" and await proc.stderr(follow=False) == b"err\n"
            assert [p.id for p in await inst.processes()] == [proc.id]
            # Leaving a following loop early ends the read; the process runs on.
            talker = await inst.spawn(["sh", "-c", "echo one; sleep 60"])
            async for chunk in talker.output():
                assert chunk.data == b"one\n"
                break
            assert (await talker.poll()).running and (await talker.wait(0.2)).state == "running"
            await talker.signal("TERM")
            assert (await talker.wait(20)).signal == 15
            sleeper = await inst.spawn(["sleep", "60"], timeout_s=0.5)
            assert (await sleeper.wait()).state == "timed_out"
            await (await inst.spawn(["sleep", "60"])).kill()
            with pytest.raises(NotFound):
                await inst.process("p-000000000000").wait(1)
            flood = await inst.spawn(FLOOD)
            assert (await flood.wait(60)).stdout_first_offset > 0
            with pytest.raises(OutOfRange):
                [c async for c in flood.output("stdout")]

    within(body)
