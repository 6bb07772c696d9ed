"""The registry: one DuckDB file written by one process, every table's schema, the journal that makes
a row durable before its caller sees the result, the batched writer, and the redaction of what rows keep."""

from worldrt.host.registry._journal import Journal, Row, parse_record, read_rows
from worldrt.host.registry._json import message_json
from worldrt.host.registry._redaction import DEFAULT_CAP_BYTES, REDACTED, Redactor
from worldrt.host.registry._schema import SCHEMA, SEED_PROVIDERS
from worldrt.host.registry._store import RUN_COLUMNS, Invocation, RecordError, Registry, RegistryError, Sink

__all__ = ["Registry", "RegistryError", "RecordError", "Invocation", "Journal", "Row", "read_rows", "parse_record", "RUN_COLUMNS",
           "Sink", "message_json", "Redactor", "REDACTED", "DEFAULT_CAP_BYTES", "SCHEMA", "SEED_PROVIDERS"]
