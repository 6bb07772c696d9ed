"""What the daemon accepts from a sandboxed process: every frame is checked before it is used.

A sandbox is untrusted, so a frame of the wrong shape (a forged result, a number out of range, a
string beyond its size) is a protocol violation: the daemon stops that process and says so, and
nothing of the frame reaches a client.
"""

from __future__ import annotations

import binascii
from typing import Any

from worldrt.providers.sandbox._process import ProtocolError, SandboxError

MAX_VALUE_JSON = 1024 * 1024 + 64
MAX_ERROR = 64 * 1024 + 64
# What a collecting run (the agent's COLLECT_MAX characters) may return in its result frame.
MAX_COLLECTED = 128 * 1024
INT32 = (-(2**31), 2**31 - 1)


def _fail(who: str, why: str) -> ProtocolError:
    return ProtocolError(f"{who} sent a malformed frame ({why})")


def _b64(raw: Any, who: str, what: str) -> bytes:
    if not isinstance(raw, str):
        raise _fail(who, f"{what} is not base64 text")
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _fail(who, f"{what} is not base64") from None


def output_or_done(frame: dict[str, Any], who: str) -> tuple[str, Any]:
    """("stdout"|"stderr", text or bytes) or ("done", checked result) of one frame of a run."""
    event = frame.get("ev")
    if event in ("stdout", "stderr"):
        if "b" in frame:
            data: str | bytes = _b64(frame["b"], who, f"{event} bytes")
        else:
            data = frame.get("d")  # type: ignore[assignment]
            if not isinstance(data, str):
                raise _fail(who, f"{event} without text")
        if not data:
            # The agent never sends one; a flood of them would cost the daemon work without counting
            # against a run's output cap.
            raise _fail(who, f"an empty {event} frame")
        return event, data
    if event != "done":
        if "error" in frame and isinstance(frame["error"], str):
            raise _fail(who, f"an error instead of a result: {frame['error'][:200]}")
        raise _fail(who, f"event {str(event)[:40]!r}")
    return "done", done(frame, who)


def done(frame: dict[str, Any], who: str) -> dict[str, Any]:
    code = frame.get("exit_code", 0)
    if not isinstance(code, int) or isinstance(code, bool) or not INT32[0] <= code <= INT32[1]:
        raise _fail(who, "exit_code is not a 32-bit integer")
    value = frame.get("value_json", "")
    error = frame.get("error", "")
    if not isinstance(value, str) or len(value) > MAX_VALUE_JSON:
        raise _fail(who, "value_json is not a string within 1 MiB")
    if not isinstance(error, str) or len(error) > MAX_ERROR:
        raise _fail(who, "error is not a string within 64 KiB")
    numbers = {}
    for name in ("cpu_ms", "duration_ms"):
        number = frame.get(name, 0.0)
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not 0 <= number < 1e12:
            raise _fail(who, f"{name} is not a duration")
        numbers[name] = float(number)
    collected: dict[str, str | bytes] = {}
    for stream in ("stdout", "stderr"):
        if f"{stream}_b" in frame:
            collected[stream] = _b64(frame[f"{stream}_b"], who, f"{stream} bytes")
            continue
        text = frame.get(stream, "")
        if not isinstance(text, str):
            raise _fail(who, f"{stream} is not a string")
        collected[stream] = text
    if len(collected["stdout"]) + len(collected["stderr"]) > MAX_COLLECTED:
        raise _fail(who, f"a result frame carries more than {MAX_COLLECTED} characters of output")
    refused = frame.get("refused", "")
    if refused not in ("", "invalid", "missing"):
        raise _fail(who, "refused is not a known kind")
    return {"exit_code": code, "value_json": value, "error": error, "refused": refused,
            "interrupted": frame.get("interrupted") is True, **numbers, **collected}


def ok(frame: dict[str, Any], who: str, what: str) -> dict[str, Any]:
    """A reply that must say ``ok``; an ``error`` reply becomes a SandboxError with its text."""
    if frame.get("ok") is True:
        return frame
    error = frame.get("error")
    if isinstance(error, str):
        raise SandboxError(f"{what} failed in the sandbox: {error[:500]}")
    raise _fail(who, f"neither ok nor an error in answer to {what}")


def strings(frame: dict[str, Any], key: str, who: str, limit: int = 4096) -> list[str]:
    items = frame.get(key, [])
    if not isinstance(items, list) or len(items) > limit or not all(isinstance(i, str) for i in items):
        raise _fail(who, f"{key} is not a list of strings")
    return items


def count(frame: dict[str, Any], key: str, who: str) -> int:
    value = frame.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**62:
        raise _fail(who, f"{key} is not a count")
    return value
