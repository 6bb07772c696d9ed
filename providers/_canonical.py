"""The contract's canonical JSON and digest (normative, see issue 4): the one place that defines them."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_DIGEST = re.compile(r"[0-9a-f]{64}")


def canonical_json(obj: Any) -> str:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(obj: Any) -> str:
    """Lowercase sha256 hex of the UTF-8 canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def is_digest(text: str) -> bool:
    """True when ``text`` has the form of a digest: 64 lowercase hex characters."""
    return _DIGEST.fullmatch(text) is not None
