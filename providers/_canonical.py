"""The contract's canonical JSON and digest (normative, see issue 4): the one place that defines them."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from worldrt.errors import InvalidArgument

_DIGEST = re.compile(r"[0-9a-f]{64}")
# JSON a client sends is nested at most this deep: deeper input is refused, not parsed into a crash.
MAX_JSON_DEPTH = 64


def canonical_json(obj: Any) -> str:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    """Lowercase sha256 hex of the UTF-8 canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def is_digest(text: str) -> bool:
    """True when ``text`` has the form of a digest: 64 lowercase hex characters."""
    return _DIGEST.fullmatch(text) is not None


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return deepest


def parse_json(text: str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``text`` as JSON; InvalidArgument (naming ``what``) when it is not JSON or nests deeper than ``max_depth``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument(f"{what} nests deeper than {max_depth} levels") from None
    if _depth(value) > max_depth:
        raise InvalidArgument(f"{what} nests deeper than {max_depth} levels")
    return value
