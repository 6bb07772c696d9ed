"""ritual: the contract's validator by attested re-execution, served by a local engine."""

from __future__ import annotations

from typing import Any

from worldrt import errors as err
from worldrt.providers import (
    Call,
    PriceTable,
    Provider,
    ProviderOptions,
    canonical_json,
    parse_json,
)
from worldrt.providers.ritual import _attestation
from worldrt.providers.ritual._engine import AttestedInference, target_for
from worldrt.providers.ritual._models import MODELS
from worldrt.providers.sandbox import CallError, CallTimeout, ProgramError, WorkerLost
from worldrt.v1 import pb

DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 600_000


def _input(request: pb.ExecuteRequest) -> Any:
    if not request.input_json:
        return None
    return parse_json(request.input_json, "input_json")


class RitualProvider(Provider):
    provider_id = "ritual"
    prices = PriceTable(base={"execute": 0.002, "verify": 0.002}, per_cpu_ms=0.0001, per_wall_ms=0.00001)

    def __init__(self, options: ProviderOptions) -> None:
        super().__init__(options)
        v = options.values
        trusted = {k.strip().lower() for k in v.get("trusted_keys", "").split(",") if k.strip()}
        self.engine = AttestedInference(options.state_dir, trusted_keys=trusted,
                                        reexecute_timeout_ms=int(v.get("reexecute_timeout_ms", DEFAULT_TIMEOUT_MS)),
                                        max_pending=int(v.get("max_pending", 1024)))

    async def open(self) -> None:
        await self.engine.open()

    async def close(self) -> int:
        await self.engine.close()
        return 0

    def languages(self) -> list[str]:
        return ["python"]

    def capability_items(self) -> dict[str, object]:
        e = self.engine
        return {
            "engine": "local attested re-execution on this machine (not Ritual's Infernet network)",
            "proof": "attested re-execution",
            "public_key": e.public_key,
            "signature": "ed25519 over the UTF-8 bytes of the commitment (hex); keys and signatures in hex",
            "commitment": "digest of canonical JSON of {model_hash, input, output, seed}",
            "attestation_json": ["scheme", "model", "model_hash", "input", "output", "seed", "commitment",
                                 "signature", "public_key"],
            "execute": {"python": "code defines infer(input, seed); model_hash = digest of "
                                  "{\"kind\": \"python\", \"source\": code}",
                        "model": "code names a registered model; model_hash = digest of its spec and weights",
                        "input": "ExecuteRequest.input_json", "seed": "ExecuteRequest.seed",
                        "sandboxed": True, "default_timeout_ms": DEFAULT_TIMEOUT_MS},
            "models": {name: m.describe() for name, m in MODELS.items()},
            "verify": {"mode": "ATTESTATION",
                       "eager": "checks commitment, key and signature, then re-executes before replying",
                       "lazy": "lazy=true checks the signature now and queues the re-execution; proof.status is "
                               "'pending' (verdict false) until a later Verify with the same attestation_json "
                               "and program_code returns status 'done'",
                       "trusted_keys": sorted(e.trusted_keys), "pending": e.lazy.pending},
            "isolation": e.pool.isolation,
        }

    async def execute(self, request: pb.ExecuteRequest, call: Call) -> pb.ExecutionResult:
        target = target_for(request.language, request.code)
        input_ = _input(request)
        timeout_ms = request.timeout_ms or DEFAULT_TIMEOUT_MS
        if timeout_ms > MAX_TIMEOUT_MS:
            raise err.InvalidArgument(f"timeout_ms must be at most {MAX_TIMEOUT_MS}")
        try:
            output, cpu_ms = await self.engine.infer(target, input_, request.seed, timeout_ms / 1000)
        except (CallError, ProgramError) as exc:
            if target.model != "python":
                raise err.InvalidArgument(f"model {target.model} rejected the input: {exc}") from exc
            stderr = exc.stderr if isinstance(exc, CallError) else ""
            return pb.ExecutionResult(exit_code=1, error=str(exc), stderr=stderr)
        except CallTimeout as exc:
            raise err.DeadlineExceeded(f"the inference ran past its timeout of {timeout_ms} ms and was stopped") \
                from exc
        except WorkerLost as exc:
            raise err.Aborted(f"the inference's sandboxed worker died: {exc}") from exc
        call.meter.sandbox_cpu_ms = cpu_ms
        attestation = self.engine.attest(target, input_, output, request.seed)
        return pb.ExecutionResult(exit_code=0, value_json=canonical_json(output),
                                  attestation_json=canonical_json(attestation))

    async def verify(self, request: pb.VerifyRequest, call: Call) -> pb.VerifyReply:
        if request.mode in (pb.REFEREE, pb.SPOT_CHECK):
            raise err.Unimplemented("ritual verifies attestations only; use gensyn for REFEREE and SPOT_CHECK")
        if request.mode != pb.ATTESTATION:
            raise err.InvalidArgument("mode must be ATTESTATION")
        att = _attestation.parse(request.attestation_json)
        result = await self.engine.verify(att, request.program_code, request.lazy)
        return pb.VerifyReply(verdict=result.verdict, honest=[att["public_key"]] if result.verdict else [],
                              first_divergent_step=-1, reexecuted_steps=result.reexecuted,
                              proof=canonical_json(result.proof))
