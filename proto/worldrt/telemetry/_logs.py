"""Logs: text or JSON lines that name the trace and span they were written in.

``setup_logging(who, fmt)`` configures the root logger once for a daemon: ``text`` (the default) is
``TIME WHO[PID] LEVEL MESSAGE`` with `` trace_id=… span_id=…`` added while a span is current; ``json``
is one object per line (time, level, logger, service, pid, message, trace_id, span_id, and the
exception's text). A provider daemon's line forwarded by its host (host/routing/_daemon_logs.py) is named:
``provider NAME: …`` in text, ``"provider": NAME`` in JSON, with the daemon's own trace ids.
The format goes back in the environment (``WORLDRT_LOG_FORMAT``), so a daemon
this process starts logs the same way.
"""

from __future__ import annotations

import json
import logging
import os
import time

from worldrt.errors import InvalidArgument
from worldrt.telemetry._traces import current_ids

FORMATS = ("text", "json")
FORMAT_ENV = "WORLDRT_LOG_FORMAT"


class _TraceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", ""):
            return True  # a line forwarded from a daemon keeps the daemon's trace ids
        ids = current_ids()
        record.trace_id, record.span_id = ids if ids is not None else ("", "")
        return True


class TextFormatter(logging.Formatter):
    def __init__(self, who: str) -> None:
        super().__init__(f"%(asctime)s {who}[%(process)d] %(levelname)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        provider = getattr(record, "provider", "")
        if provider:  # a provider daemon's line, forwarded by the host: named (on a copy of the record)
            record = logging.makeLogRecord({**record.__dict__, "msg": f"provider {provider}: {record.getMessage()}",
                                            "args": None})
        line = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        return f"{line} trace_id={trace_id} span_id={record.span_id}" if trace_id else line  # type: ignore[attr-defined]


class JsonFormatter(logging.Formatter):
    def __init__(self, who: str) -> None:
        super().__init__()
        self.who = who

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "service": self.who, "pid": record.process,
            "message": record.getMessage(),
        }
        if getattr(record, "provider", ""):
            data["provider"] = record.provider  # type: ignore[attr-defined]
        if getattr(record, "trace_id", ""):
            data["trace_id"], data["span_id"] = record.trace_id, record.span_id  # type: ignore[attr-defined]
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def log_format(flag: str | None = None) -> str:
    fmt = (flag or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if fmt not in FORMATS:
        raise InvalidArgument(f"--log-format must be text or json, got {fmt!r}")
    return fmt


def setup_logging(who: str, fmt: str | None = None) -> None:
    """The root logger at $WORLDRT_LOG's level (INFO), writing to stderr in ``fmt`` (text or json)."""
    chosen = log_format(fmt)
    handler = logging.StreamHandler()
    handler.addFilter(_TraceFilter())
    handler.setFormatter(JsonFormatter(who) if chosen == "json" else TextFormatter(who))
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(os.environ.get("WORLDRT_LOG", "INFO"))
    os.environ[FORMAT_ENV] = chosen
