"""The shared pieces under the validators: canonical JSON and digests, sandboxed function workers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import settle_sandboxes
from worldrt.providers import canonical_json, digest, is_digest
from worldrt.providers.sandbox import (
    CallError,
    CallTimeout,
    ProgramError,
    Sandbox,
    WorkerLost,
    WorkerPool,
)

pytestmark = pytest.mark.daemons


def test_canonical_json_and_digest_are_the_normative_ones() -> None:
    obj = {"b": [1, 2.5, None], "a": {"ü": "é", "z": True}}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(obj) == text == '{"a":{"z":true,"ü":"é"},"b":[1,2.5,null]}'
    assert digest(obj) == hashlib.sha256(text.encode("utf-8")).hexdigest()
    assert is_digest(digest(obj)) and not is_digest(digest(obj).upper()) and not is_digest("ab")


PROGRAM = """
import os
calls = 0

def count():
    global calls
    calls += 1
    return calls

def add(a, b):
    return a + b

def boom():
    raise KeyError("missing")

def spin():
    while True:
        pass

def leave():
    os._exit(7)

def not_json():
    return object()
"""


def test_worker_pool_runs_calls_in_fresh_namespaces_and_survives_failures(tmp_path: Path) -> None:
    async def scenario() -> None:
        pool = WorkerPool(tmp_path, name="t")
        await pool.open()
        try:
            async with pool.lease(2, PROGRAM) as lease:
                assert await asyncio.gather(*(lease.call("add", [i, 1], 5) for i in range(20))) == list(range(1, 21))
                assert [await lease.call("count", [], 5) for _ in range(3)] == [1, 1, 1]
                with pytest.raises(CallError, match="KeyError"):
                    await lease.call("boom", [], 5)
                with pytest.raises(CallError, match="not JSON"):
                    await lease.call("not_json", [], 5)
                with pytest.raises(CallError, match="does not define"):
                    await lease.call("nothing", [], 5)
                with pytest.raises(CallTimeout):
                    await lease.call("spin", [], 0.2)
                with pytest.raises(WorkerLost):
                    await lease.call("leave", [], 5)
                assert await lease.call("add", ["a", "b"], 5) == "ab"  # replaced workers serve on
                def leased() -> set[str]:
                    return set(pool._sandbox.members) - {w.proc.key for w in pool._ready.ready}  # type: ignore

                # The frozen template and two workers (besides those kept ready), once the replacements are in.
                for _ in range(200):
                    if len(leased()) == 3:
                        break
                    await asyncio.sleep(0.05)
                assert len(leased()) == 3, leased()
            await pool.settle()
            ready = {w.proc.key for w in pool._ready.ready}  # type: ignore[union-attr]
            assert set(pool._sandbox.members) - ready == {pool._template.key}  # type: ignore[union-attr]
            with pytest.raises(ProgramError, match="SyntaxError"):
                async with pool.lease(1, "def f(:"):
                    pass
        finally:
            await pool.close()
        assert settle_sandboxes(tmp_path, 0) == 0

    asyncio.run(scenario())


CACHING = """
SOURCE = "runs = 0\\ndef bump():\\n    global runs\\n    runs += 1\\n    return runs\\n"

def compile_and_run():
    code = __worldrt_compile__(SOURCE, "<source>", "exec")
    namespace = {}
    exec(code, namespace)
    return [namespace["bump"](), __worldrt_compile__.cache_info().hits]
"""


def test_a_worker_compiles_a_repeated_source_once_and_still_runs_it_fresh(tmp_path: Path) -> None:
    """The compile cache a worker offers (``__worldrt_compile__``, used for an objective per rollout)
    keeps code objects, never state: every run of the cached code starts from its top level."""

    async def scenario() -> None:
        pool = WorkerPool(tmp_path, name="c", ready_workers=0, preload=())
        await pool.open()
        try:
            async with pool.lease(1, CACHING) as lease:
                assert [await lease.call("compile_and_run", [], 5) for _ in range(3)] == [[1, 0], [1, 1], [1, 2]]
        finally:
            await pool.close()
        assert settle_sandboxes(tmp_path, 0) == 0

    asyncio.run(scenario())


def test_a_wedged_or_dead_template_is_replaced_and_reported(tmp_path: Path) -> None:
    """A template that stops answering (SIGSTOP) or dies costs one request's wait, never the pool."""

    async def scenario() -> None:
        pool = WorkerPool(tmp_path, name="w", ready_workers=0, fork_timeout_s=2.0, preload=())
        await pool.open()
        try:
            assert pool._template is not None
            os.kill(pool._template.pid, signal.SIGSTOP)
            async with pool.lease(1, PROGRAM) as lease:
                assert await lease.call("add", [2, 3], 5) == 5
            assert pool.template_restarts == 1 and "did not fork" in pool.last_template_failure
            assert pool.isolation["template_restarts"] == 1
            os.kill(pool._template.pid, signal.SIGKILL)
            async with pool.lease(1, PROGRAM) as lease:
                assert await lease.call("add", [1, 1], 5) == 2
            assert pool.template_restarts == 2
        finally:
            await pool.close()
        assert settle_sandboxes(tmp_path, 0) == 0

    asyncio.run(scenario())


def test_a_batch_of_children_takes_the_namespaces_made_ahead_instead_of_asking_behind_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The zygote makes one batch of namespace sets at a time. Children forked while a batch made ahead is still
    on its way take that batch: they never send a second request that would wait behind it (each request here
    is held 0.2 s, so every refill starts while the batch made ahead is on its way)."""
    prepare = Sandbox.prepare
    outstanding, most, asked = [0], [0], []

    async def held(self: Sandbox, owner_uid: int, uids: list[int], *args: Any, **kwargs: Any) -> Any:
        outstanding[0] += 1
        most[0] = max(most[0], outstanding[0])
        asked.append(len(uids))
        try:
            await asyncio.sleep(0.2)
            return await prepare(self, owner_uid, uids, *args, **kwargs)
        finally:
            outstanding[0] -= 1

    monkeypatch.setattr(Sandbox, "prepare", held)

    async def scenario() -> None:
        pool = WorkerPool(tmp_path, name="n", ready_workers=0, preload=())
        await pool.open()
        try:
            for round_ in range(4):
                async with pool.lease(3, PROGRAM) as lease:
                    assert await asyncio.gather(*(lease.call("add", [round_, i], 5) for i in range(3))) == \
                        [round_ + i for i in range(3)]
        finally:
            await pool.close()
        assert settle_sandboxes(tmp_path, 0) == 0

    asyncio.run(scenario())
    assert len(asked) >= 3, asked  # the first batch, and batches made ahead while the refills ran
    assert most[0] == 1, f"a request for namespace sets was sent while another was on its way ({asked})"


PRELUDE = '''"""The prelude."""
from __future__ import annotations
import sys
value = 1

def prelude_function():
    return value
'''
# What a program can see of how it was compiled: its top level's code names the prelude's function only when
# it was compiled whole.
SPLIT = '''
def split():
    return "prelude_function" not in _TOP.co_names

def line():
    return sys._getframe().f_lineno

def doc():
    return __doc__

_TOP = sys._getframe().f_code
'''
BLOCK = "def f():\n    x = 1\n"
BRANCH = "if True:\n    a = 1\n"


def test_a_program_that_begins_with_a_prelude_compiles_only_its_rest_and_means_the_same(tmp_path: Path) -> None:
    """A prelude is compiled once in the template; a program beginning with it compiles only the rest, under
    the prelude's future flags and at its own line numbers. A rest that would mean anything else alone (it
    continues the prelude's last block, declares a global, imports from __future__, has a docstring) is
    compiled whole, as before, and so keeps its meaning or its SyntaxError."""
    whole = PRELUDE + "\ndef uses(x: Undefined = 0) -> int:\n    return prelude_function() + 1\n" + SPLIT
    line_of = whole.splitlines().index("    return sys._getframe().f_lineno") + 1

    async def run(pool: WorkerPool, program: str, *calls: str) -> list[Any]:
        async with pool.lease(1, program) as lease:
            return [await lease.call(name, [], 5) for name in calls]

    async def scenario() -> None:
        pool = WorkerPool(tmp_path, name="p", ready_workers=0, preload=(), preludes=(PRELUDE, BLOCK, BRANCH))
        await pool.open()
        try:
            # Split: the annotation is never evaluated (the prelude's future flag holds in the rest).
            assert await run(pool, whole, "split", "line", "doc") == [True, line_of, "The prelude."]
            async with pool.lease(1, whole) as lease:
                assert await lease.call("uses", [], 5) == 2
            # A string first in the rest is no docstring of the whole program: compiled whole.
            assert await run(pool, PRELUDE + '"""Not a docstring."""\n' + SPLIT, "split", "doc") == [False, "The prelude."]
            # Continuing the prelude's last block: compiled whole, where it means what it always did.
            assert await run(pool, BLOCK + "    return x\n", "f") == [1]
            assert await run(pool, BRANCH + "else:\n    a = 2\ndef g():\n    return a\n", "g") == [1]
            # Errors only a whole program has.
            for rest, words in (("from __future__ import division\n", "beginning of the file"),
                                ("global value\n", "before global declaration")):
                with pytest.raises(ProgramError, match=words):
                    async with pool.lease(1, PRELUDE + rest):
                        pass
        finally:
            await pool.close()
        assert settle_sandboxes(tmp_path, 0) == 0

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="newline"):
        WorkerPool(tmp_path, preludes=("x = 1",))
