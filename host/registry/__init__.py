"""The registry: one DuckDB file written by one process, every table's schema, the journal that makes
a row durable before its caller sees the result, the batched writer, the lock that makes it one process's,
and the redaction of what rows keep."""

from typing import TYPE_CHECKING

from worldrt.faces import lazy_names
from worldrt.host.registry._journal import Journal, Row, parse_record, read_rows
from worldrt.host.registry._json import message_json
from worldrt.host.registry._lock import RegistryError, RegistryLock
from worldrt.host.registry._redaction import DEFAULT_CAP_BYTES, REDACTED, Redactor
from worldrt.host.registry._schema import SCHEMA, SEED_PROVIDERS

if TYPE_CHECKING:
    from worldrt.host.registry._store import RUN_COLUMNS, Invocation, RecordError, Registry, Sink

# The store loads DuckDB (about 70 ms): imported on first use, so a command that embeds a host can take the
# registry's lock and start its providers first.
_STORE = frozenset({"RUN_COLUMNS", "Invocation", "RecordError", "Registry", "Sink"})


__getattr__ = lazy_names(__name__, dict.fromkeys(_STORE, "_store"))


__all__ = ["Registry", "RegistryError", "RegistryLock", "RecordError", "Invocation", "Journal", "Row", "read_rows",
           "parse_record", "RUN_COLUMNS", "Sink", "message_json", "Redactor", "REDACTED", "DEFAULT_CAP_BYTES", "SCHEMA",
           "SEED_PROVIDERS"]
