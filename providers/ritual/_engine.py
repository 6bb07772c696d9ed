"""Attested re-execution: run a deterministic inference in a sandbox and sign what it produced;
verify an attestation by checking its signature and running the inference again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from worldrt import errors as err
from worldrt.providers import canonical_json, digest
from worldrt.providers.ritual import _attestation
from worldrt.providers.ritual._keys import load_or_create, public_hex
from worldrt.providers.ritual._lazy import LazyQueue
from worldrt.providers.ritual._models import MODELS, Model, by_hash, python_model_hash
from worldrt.providers.sandbox import (
    CallError,
    CallTimeout,
    ProgramError,
    WorkerError,
    WorkerPool,
)


@dataclass(frozen=True)
class Target:
    """What runs: a registered model or inference code, with the hash an attestation commits to."""

    model: str
    model_hash: str
    program: str

    @classmethod
    def registered(cls, model: Model) -> Target:
        return cls(model.name, model.model_hash, model.program)

    @classmethod
    def python(cls, code: str) -> Target:
        return cls("python", python_model_hash(code), code)


@dataclass
class Verification:
    verdict: bool
    reexecuted: int
    proof: dict[str, Any] = field(default_factory=dict)


def target_for(language: str, code: str) -> Target:
    if language in ("", "python"):
        if not code.strip():
            raise err.InvalidArgument("code is empty: define infer(input, seed) and return its output")
        return Target.python(code)
    if language == "model":
        model = MODELS.get(code.strip())
        if model is None:
            raise err.InvalidArgument(f"no registered model {code.strip()!r}; registered: {', '.join(MODELS)}")
        return Target.registered(model)
    raise err.InvalidArgument(f"language {language!r} is not served by ritual: use 'python' (code defines "
                              f"infer(input, seed)) or 'model' (code names a registered model)")


class AttestedInference:
    def __init__(self, state_dir: Path, *, trusted_keys: set[str] | None = None, reexecute_timeout_ms: int = 30_000,
                 max_pending: int = 1024) -> None:
        self.state_dir = state_dir
        self.pool = WorkerPool(state_dir, name="inference")
        self.reexecute_timeout_s = reexecute_timeout_ms / 1000
        self._extra_keys = set(trusted_keys or ())
        self.key: Ed25519PrivateKey = load_or_create(state_dir)
        self.lazy: LazyQueue[Verification] = LazyQueue(self._finish, max_pending=max_pending)

    async def open(self) -> None:
        await self.pool.open()
        self.lazy.start()

    async def close(self) -> None:
        await self.lazy.stop()
        await self.pool.close()

    @property
    def public_key(self) -> str:
        return public_hex(self.key.public_key())

    @property
    def trusted_keys(self) -> set[str]:
        return {self.public_key, *self._extra_keys}

    async def infer(self, target: Target, input: Any, seed: int, timeout_s: float) -> tuple[Any, float]:
        """The output of ``infer(input, seed)`` run in a fresh sandboxed worker, and its cpu ms."""
        async with self.pool.lease(1, target.program) as lease:
            output = await lease.call("infer", [input, seed], timeout_s)
        return output, lease.cpu_ms

    def attest(self, target: Target, input: Any, output: Any, seed: int) -> dict[str, Any]:
        return _attestation.attest(self.key, target.model, target.model_hash, input, output, seed)

    # verification --------------------------------------------------------------------------------
    async def verify(self, att: dict[str, Any], program_code: str, lazy: bool) -> Verification:
        checks = _attestation.check_signature(att, self.trusted_keys)
        target = self._reexecution_target(att, program_code, checks) if checks.ok else None
        proof: dict[str, Any] = {"scheme": "attested re-execution", "commitment": att["commitment"],
                                 "checks": checks.checks, "mode": "lazy" if lazy else "eager"}
        if not checks.ok or target is None:
            proof.update(status="done", reexecution="skipped", reason=checks.reason)
            return Verification(False, 0, proof)
        if not lazy:
            return await self._reexecute(att, target, proof)
        ticket = digest({"attestation": att, "program": program_code})
        found = self.lazy.lookup(ticket)
        if found is not None and found[0] == "done":
            assert found[1] is not None
            return found[1]
        if found is None:
            self.lazy.submit(ticket, (att, target, {**proof, "ticket": ticket}))
        proof.update(status="pending", reexecution="queued", ticket=ticket,
                     fetch="call Verify again with the same attestation_json and program_code (lazy=true)")
        return Verification(False, 0, proof)

    def _reexecution_target(self, att: dict[str, Any], program_code: str,
                            checks: _attestation.SignatureCheck) -> Target | None:
        model = by_hash(att["model_hash"])
        if model is not None:
            checks.checks["model"] = f"registered model {model.name}"
            return Target.registered(model)
        if not program_code:
            raise err.InvalidArgument(f"model_hash {att['model_hash']} is not a registered model here; pass the "
                                      f"attested inference code as program_code to re-execute it")
        target = Target.python(program_code)
        if target.model_hash != att["model_hash"]:
            checks.fail("model", f"program_code hashes to {target.model_hash}, not the attested model_hash: it is "
                                 f"not the code that was attested")
            return None
        checks.checks["model"] = "ok"
        return target

    async def _finish(self, job: tuple[dict[str, Any], Target, dict[str, Any]]) -> Verification:
        att, target, proof = job
        try:
            return await self._reexecute(att, target, dict(proof))
        except err.WorldError as exc:
            return Verification(False, 0, {**proof, "status": "done", "reexecution": "failed", "reason": exc.message})

    async def _reexecute(self, att: dict[str, Any], target: Target, proof: dict[str, Any]) -> Verification:
        proof["status"] = "done"
        try:
            output, _cpu = await self.infer(target, att["input"], att["seed"], self.reexecute_timeout_s)
        except (CallError, ProgramError) as exc:
            proof.update(reexecution="failed", reason=f"re-execution raised: {exc}")
            return Verification(False, 1, proof)
        except CallTimeout:
            proof.update(reexecution="failed", reason=f"re-execution did not finish within "
                                                      f"{self.reexecute_timeout_s * 1000:.0f} ms")
            return Verification(False, 1, proof)
        except WorkerError as exc:
            raise err.Aborted(f"the sandboxed worker died during re-execution: {exc}") from exc
        if canonical_json(output) == canonical_json(att["output"]):
            proof.update(reexecution="match")
            return Verification(True, 1, proof)
        proof.update(reexecution="mismatch",
                     reason=f"re-execution produced a different output: {canonical_json(output)[:300]}")
        return Verification(False, 1, proof)
