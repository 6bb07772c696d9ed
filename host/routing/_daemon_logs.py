"""A provider daemon's stderr, read line by line into the host's log with the provider named.

The supervisor starts each daemon with its stderr a pipe. A reader thread per daemon reads it in lines of at
most ``MAX_LINE`` bytes (a longer line is cut and marked, the rest of it up to its newline dropped) and only
queues them, so the pipe never fills and the daemon never blocks on its own log, whatever the host's log
does. The queue holds ``MAX_QUEUED`` lines; beyond that the oldest are dropped, and how many is said once
the writer catches up. One writer thread per daemon drains it: each line is appended to ``logs/NAME.log``
(as before) and logged on ``worldrt.provider.NAME`` with the record's ``provider`` set. A JSON line of the
daemon's (``--log-format json``) keeps its level, message, trace id and span id; a text line its level.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import threading
from pathlib import Path
from typing import IO

MAX_LINE = 16 * 1024
MAX_QUEUED = 10_000
_TEXT = re.compile(r"\S+\[\d+\] (DEBUG|INFO|WARNING|ERROR|CRITICAL) (.*)", re.DOTALL)
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARNING": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}


def _record(line: str) -> tuple[int, str, dict[str, str]]:
    """(level, message, trace ids) of one line of a daemon's log."""
    if line.startswith("{"):
        try:
            data = json.loads(line)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            ids = {key: data[key] for key in ("trace_id", "span_id") if isinstance(data.get(key), str)}
            return _LEVELS.get(str(data.get("level")), logging.INFO), data["message"], ids
    found = _TEXT.search(line)
    if found is not None:
        message, ids = found.group(2), {}
        for key in ("span_id", "trace_id"):  # the text format ends with " trace_id=… span_id=…"
            head, sep, value = message.rpartition(f" {key}=")
            if sep and value and " " not in value:
                message, ids[key] = head, value
        return _LEVELS[found.group(1)], message, ids
    return logging.INFO, line, {}


class DaemonLog:
    """Pumps ``stream`` (a daemon's stderr) into ``log_path`` and the host's log, naming ``provider``."""

    def __init__(self, provider: str, stream: IO[bytes], log_path: Path) -> None:
        self.provider = provider
        self.dropped = 0
        self._stream = stream
        self._log_path = log_path
        self._lines: collections.deque[str] = collections.deque()
        self._ready = threading.Condition()
        self._done = False
        self._logger = logging.getLogger(f"worldrt.provider.{provider}")
        self._reader = threading.Thread(target=self._read, name=f"log-{provider}-read", daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"log-{provider}-write", daemon=True)
        self._reader.start()
        self._writer.start()

    def _read(self) -> None:
        try:
            while True:
                raw = self._stream.readline(MAX_LINE + 1)
                if not raw:
                    break
                if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                    raw = raw[:MAX_LINE] + f" [line cut at {MAX_LINE} bytes]".encode()
                    while (rest := self._stream.readline(MAX_LINE)) and not rest.endswith(b"\n"):
                        pass  # the rest of an overlong line
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._ready:
                    if len(self._lines) >= MAX_QUEUED:
                        self._lines.popleft()
                        self.dropped += 1
                    self._lines.append(line)
                    self._ready.notify()
        except (OSError, ValueError):
            pass  # the pipe closed under us: the daemon is gone
        finally:
            self._stream.close()
            with self._ready:
                self._done = True
                self._ready.notify()

    def _write(self) -> None:
        told = 0
        with open(self._log_path, "a", encoding="utf-8", errors="replace") as out:
            while True:
                with self._ready:
                    while not self._lines and not self._done:
                        self._ready.wait()
                    if not self._lines and self._done:
                        return
                    batch, dropped = list(self._lines), self.dropped
                    self._lines.clear()
                if dropped > told:
                    self._logger.warning("%d line(s) of provider %s's log were dropped: the host's log did not keep "
                                         "up", dropped - told, self.provider, extra={"provider": self.provider})
                    told = dropped
                for line in batch:
                    out.write(line + "\n")
                    level, message, ids = _record(line)
                    self._logger.log(level, "%s", message, extra={"provider": self.provider, **ids})
                out.flush()

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until what the daemon wrote before it exited is in the host's log."""
        self._reader.join(timeout_s)
        self._writer.join(timeout_s)
