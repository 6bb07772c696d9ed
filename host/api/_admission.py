"""Admission of the calls that wait on the host: each holds a thread of its own pool (never the server's
shared one) while it waits, and no caller waits behind another instance's calls.

The host is called through ``HostAPI``, a blocking interface (an embedded host runs in this process), so a
call that waits on it needs a thread; an exec may wait minutes. Rather than let such calls queue for a
shared pool (where 40 long execs on one instance once froze every other caller), each is admitted or
refused at once:

- per key (an instance id): at most ``calls_per_instance`` run, at most ``queued_per_instance`` more wait
  for their turn, costing no thread (the provider runs an instance's execs one at a time anyway); one more
  is refused with ``Busy`` (429) — a flood on one instance slows only that instance;
- in all: at most ``max_host_calls`` run; one more is refused with ``Saturated`` (503), never queued.

Both carry ``retry_after_s``. Calls without a key (start, list images, stop) count only in all, so an
instance's own flood of execs never keeps it from being stopped. The state lives on the event loop's
thread; a release from another thread goes through ``release_from_thread``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import anyio.to_thread

from worldrt.errors import ResourceExhausted, Unavailable
from worldrt.host.api._limits import HttpLimits

T = TypeVar("T")


class Busy(ResourceExhausted):
    """Too many calls on one instance already: retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Saturated(Unavailable):
    """Too many calls waiting on the host in all: retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class _Key:
    turns: asyncio.Semaphore
    holders: int = 0  # running and waiting
    name: str = field(default="")


class Admission:
    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.running = 0
        self._keys: dict[str, _Key] = {}
        self._threads = anyio.CapacityLimiter(limits.max_host_calls)

    async def run(self, key: str | None, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` on a thread of this pool once admitted; Busy or Saturated when refused."""
        release = await self.acquire(key)
        try:
            return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self._threads)
        finally:
            release()

    async def acquire(self, key: str | None) -> Callable[[], None]:
        """A place for one call about ``key`` (None: about no instance); the function that gives it back."""
        self._check_total()
        if key is None:
            self.running += 1
            return functools.partial(self._release, None)
        slot = self._keys.get(key)
        if slot is None:
            slot = self._keys[key] = _Key(asyncio.Semaphore(self.limits.calls_per_instance), name=key)
        if slot.holders >= self.limits.calls_per_instance + self.limits.queued_per_instance:
            raise Busy(f"instance {key} has {self.limits.calls_per_instance} calls running and "
                       f"{self.limits.queued_per_instance} waiting already; retry in {self.limits.retry_after_s} s",
                       self.limits.retry_after_s)
        slot.holders += 1
        try:
            await slot.turns.acquire()
        except BaseException:
            self._leave(slot)
            raise
        try:
            self._check_total()
        except Saturated:
            slot.turns.release()
            self._leave(slot)
            raise
        self.running += 1
        return functools.partial(self._release, slot)

    @staticmethod
    def release_from_thread(loop: asyncio.AbstractEventLoop, release: Callable[[], None]) -> None:
        try:
            loop.call_soon_threadsafe(release)
        except RuntimeError:
            pass  # the loop is closed: the server has stopped, and its admission with it

    def _check_total(self) -> None:
        if self.running >= self.limits.max_host_calls:
            raise Saturated(f"{self.limits.max_host_calls} calls are waiting on the host already; retry in "
                            f"{self.limits.retry_after_s} s", self.limits.retry_after_s)

    def _release(self, slot: _Key | None) -> None:
        self.running -= 1
        if slot is not None:
            slot.turns.release()
            self._leave(slot)

    def _leave(self, slot: _Key) -> None:
        slot.holders -= 1
        if slot.holders == 0 and self._keys.get(slot.name) is slot:
            del self._keys[slot.name]
