"""Attestations: a commitment to (model hash, input, output, seed) signed with ed25519.

commitment = digest of the canonical JSON of {"model_hash", "input", "output", "seed"}; the signature
is ed25519 over the UTF-8 bytes of that hex string; keys and signatures travel as lowercase hex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from worldrt import errors as err
from worldrt.providers import digest, parse_json
from worldrt.providers.ritual._keys import public_hex

SCHEME = "worldrt.ritual.attested-reexecution.v1"
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "commitment": str, "signature": str, "public_key": str, "model_hash": str, "seed": int,
}


def commitment(model_hash: str, input: Any, output: Any, seed: int) -> str:
    return digest({"model_hash": model_hash, "input": input, "output": output, "seed": seed})


def attest(key: Ed25519PrivateKey, model: str, model_hash: str, input: Any, output: Any,
           seed: int) -> dict[str, Any]:
    c = commitment(model_hash, input, output, seed)
    return {"scheme": SCHEME, "model": model, "model_hash": model_hash, "input": input, "output": output,
            "seed": seed, "commitment": c, "signature": key.sign(c.encode()).hex(),
            "public_key": public_hex(key.public_key())}


def parse(text: str) -> dict[str, Any]:
    """The attestation object; InvalidArgument when it is not one."""
    att = parse_json(text, "attestation_json")
    if not isinstance(att, dict):
        raise err.InvalidArgument("attestation_json must be a JSON object {commitment, signature, public_key, ...}")
    missing = [k for k in (*_FIELDS, "input", "output") if k not in att]
    if missing:
        raise err.InvalidArgument(f"attestation_json lacks {', '.join(missing)}")
    for name, kind in _FIELDS.items():
        if not isinstance(att[name], kind) or isinstance(att[name], bool):
            raise err.InvalidArgument(f"attestation_json.{name} must be a {kind.__name__}")  # type: ignore[union-attr]
    if att["seed"] < 0:
        raise err.InvalidArgument("attestation_json.seed must not be negative")
    return att


def _hex_bytes(text: str, size: int) -> bytes | None:
    if len(text) != 2 * size:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


@dataclass
class SignatureCheck:
    """Each check's result ("ok" or why not) and the first failure's reason."""

    checks: dict[str, str] = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason

    def fail(self, check: str, reason: str) -> None:
        self.checks[check] = reason
        self.reason = self.reason or reason


def check_signature(att: dict[str, Any], trusted_keys: set[str]) -> SignatureCheck:
    out = SignatureCheck()
    recomputed = commitment(att["model_hash"], att["input"], att["output"], att["seed"])
    if recomputed != att["commitment"]:
        out.fail("commitment", f"the commitment is not the digest of the attested model_hash, input, output and "
                               f"seed (recomputed {recomputed}): they were changed after signing")
    else:
        out.checks["commitment"] = "ok"
    key = _hex_bytes(att["public_key"], 32)
    signature = _hex_bytes(att["signature"], 64)
    if key is None:
        out.fail("public_key", "public_key is not 32 bytes of hex")
    elif att["public_key"] not in trusted_keys:
        out.fail("public_key", "signed by a key this verifier does not trust (its own key is "
                               "Capabilities.public_key; others are added with --set trusted_keys=HEX,...)")
    else:
        out.checks["public_key"] = "ok"
    if signature is None:
        out.fail("signature", "signature is not 64 bytes of hex")
    elif key is not None:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, att["commitment"].encode())
            out.checks["signature"] = "ok"
        except (InvalidSignature, ValueError):
            out.fail("signature", "the signature does not verify under public_key for this commitment")
    return out
