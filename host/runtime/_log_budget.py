"""How much a component may write to the host's log: a cap per invocation (lines and bytes) and a rate
shared by every invocation of one runtime.

A component's ``log`` call costs the host a line in its own log, so a component in a loop could fill the
host's disk. Each invocation gets ``lines`` lines and ``bytes`` bytes at most, and all invocations
together ``per_second`` lines a second (a token bucket with a burst of as many); what is past either is
dropped and counted, and the invocation's end says once how much was dropped. A line is made printable
(control characters become ``?``) so a message cannot forge lines of the host's log.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

MAX_LINE_CHARS = 4096


@dataclass(frozen=True)
class LogLimits:
    """Per invocation: ``lines`` and ``bytes`` of log; per runtime: ``per_second`` lines."""

    lines: int = 1000
    bytes: int = 256 * 1024
    per_second: float = 200.0


class LogRate:
    """A token bucket of lines, shared by the invocations of one runtime; thread-safe."""

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self._tokens = per_second
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


def printable(message: str) -> str:
    """One line of at most MAX_LINE_CHARS characters, control characters shown as ``?``."""
    cut = len(message) - MAX_LINE_CHARS
    text = "".join(c if c.isprintable() else "?" for c in message[:MAX_LINE_CHARS])
    return text + (f" [{cut} more characters cut]" if cut > 0 else "")


class LogBudget:
    """What one invocation may still log; ``admit`` a message, then ``dropped`` says what was cut."""

    def __init__(self, limits: LogLimits, rate: LogRate) -> None:
        self.limits = limits
        self._rate = rate
        self.lines = 0
        self.bytes = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0

    def admit(self, message: str) -> str | None:
        """The line to log for ``message`` (made printable), or None when it is past the budget."""
        if self.lines < self.limits.lines and self.bytes < self.limits.bytes and self._rate.take():
            line = printable(message)
            size = len(line.encode("utf-8", "replace"))
            if self.bytes + size <= self.limits.bytes:
                self.lines += 1
                self.bytes += size
                return line
        self.dropped_lines += 1
        self.dropped_bytes += len(message.encode("utf-8", "replace"))
        return None

    def dropped(self) -> str | None:
        """The one sentence that says what was dropped (None when nothing was)."""
        if not self.dropped_lines:
            return None
        return (f"dropped {self.dropped_lines} log lines ({self.dropped_bytes} bytes) past the cap of "
                f"{self.limits.lines} lines and {self.limits.bytes} bytes per invocation and "
                f"{self.limits.per_second:g} lines/s for the host")
