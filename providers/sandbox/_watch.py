"""WatchFiles on the daemon's side: the events a watcher in an instance sends, checked, as a bounded stream.

A watcher (``_watcher.py``) is a process the member starts inside its sandbox; the daemon gets a socket to
it and nothing else. Every frame is checked (at most ``MAX_FRAME`` bytes, at most ``EVENTS_PER_FRAME``
events, each a known kind with paths of valid UTF-8 within the kernel's limit); one that is not ends the
watch with ABORTED and closes the socket, which ends the watcher. Frames are read only as the caller
takes events, so a caller that reads slowly holds at most one frame here and the watcher drops (and
counts) what it cannot send. An instance holds at most ``WatchLimits.per_instance`` watchers; each ends
at its timeout, when its folder goes, when its caller goes, or when its instance ends.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from worldrt.providers.sandbox._process import ProtocolError, SandboxProcess

MAX_FRAME = 1024 * 1024
EVENTS_PER_FRAME = 128
MAX_PATH = 4096
KINDS = ("ready", "create", "modify", "remove", "rename", "chmod", "overflow", "ended")


@dataclass(frozen=True)
class WatchLimits:
    per_instance: int = 4
    max_dirs: int = 512
    max_s: int = 3600

    @classmethod
    def from_options(cls, values: dict[str, str]) -> WatchLimits:
        """``--set watch_max_per_instance=N watch_max_dirs=N watch_max_s=N`` (each above 0)."""
        chosen = {}
        for field, key in (("per_instance", "watch_max_per_instance"), ("max_dirs", "watch_max_dirs"),
                           ("max_s", "watch_max_s")):
            if key in values:
                chosen[field] = int(values[key])
                if chosen[field] <= 0:
                    raise ValueError(f"{key} must be above 0, got {chosen[field]}")
        return cls(**chosen)


@dataclass(frozen=True)
class Change:
    kind: str
    path: str = ""
    old_path: str = ""
    is_dir: bool = False
    dropped: int = 0
    message: str = ""


def _text(raw: Any, who: str, limit: int = MAX_PATH) -> str:
    if not isinstance(raw, str) or len(raw) > limit:
        raise ProtocolError(f"{who} sent a malformed watch frame (a path or message)")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{who} sent a malformed watch frame (text that is not UTF-8)") from None
    return raw


def changes(frame: dict[str, Any], who: str) -> list[Change]:
    """The events of one watcher frame, checked."""
    events = frame.get("events")
    if not isinstance(events, list) or not 0 < len(events) <= EVENTS_PER_FRAME:
        raise ProtocolError(f"{who} sent a malformed watch frame (no list of events)")
    out = []
    for event in events:
        if not isinstance(event, list) or len(event) not in (4, 6) or event[0] not in KINDS or \
                not isinstance(event[3], bool):
            raise ProtocolError(f"{who} sent a malformed watch frame (an event)")
        dropped, message = 0, ""
        if len(event) == 6:
            dropped, message = event[4], _text(event[5], who, 1000)
            if not isinstance(dropped, int) or isinstance(dropped, bool) or not 0 <= dropped < 2**62:
                raise ProtocolError(f"{who} sent a malformed watch frame (a count of dropped events)")
        out.append(Change(event[0], _text(event[1], who), _text(event[2], who), event[3], dropped, message))
    return out


class Watch:
    """One watcher's socket in the daemon; ``close`` (the instance ended) ends its stream."""

    def __init__(self, fd: int, who: str) -> None:
        self.proc = SandboxProcess(socket.socket(fileno=fd), 0, who, max_frame=MAX_FRAME)
        self.who = who
        self.ended = ""

    def close(self, reason: str = "") -> None:
        self.ended = self.ended or reason
        self.proc.close()

    async def changes(self) -> AsyncIterator[Change]:
        """Events until the watcher ends (its last is "ended"), or until the socket is closed here."""
        while True:
            frame, _ = await self.proc.recv()
            for change in changes(frame, self.who):
                yield change
                if change.kind == "ended":
                    return
