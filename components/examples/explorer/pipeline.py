"""The explorer's pipeline mode: baseline -> branch -> optimize -> verify -> merge -> attest -> WEV.

Every value is the same oracle, the profit of a trading rule on the verse's seeded market, so the world
extractable value (winner minus baseline) is meaningful. Which phases run, and over which links, comes
from ``args["pipeline"]`` (the host's presets fill it):

    {"baseline": {"link": "baseline", "rule": "ma_cross", "params": {...}} | null,
     "branch": true, "strategies": [{"rule": ..., "params": {...}}, ...],
     "optimize": {"budget": 48, "group_size": 8, "max_async_level": 1} | null,
     "verify": {"sample": 4, "forged_fraction": 0.25} | null,
     "attest": {"link": "attest"} | null, "steps": 252, "fee_bps": 5.0,
     "generator": true}

With ``"generator": false`` candidates are evaluated here, inside the component (its Python runs the same
market code), so a coordinator or validator can work on the verse alone. ``"baseline": false`` skips the
baseline; no strategies means a baseline-only run.
"""

import hashlib  # noqa: F401 - bundled for the market code this component runs itself (trajectory digests)
import json
import math  # noqa: F401 - bundled for the market code
import random  # noqa: F401 - bundled for the market code

from componentize_py_types import Err
from market import SOURCE, SPACES, inference_program, objective_program, step_program
from wit_world.imports import coordinator, generator, lattice, log, validator
from wit_world.imports.types import (
    BranchRequest,
    Claim,
    ExecuteRequest,
    InstanceRef,
    MergeRequest,
    OptimizeRequest,
    OracleResult,
    SnapshotRequest,
    StartRequest,
    VerifyMode,
    VerifyRequest,
)

DEFAULT_BASELINE = {"rule": "ma_cross", "params": {"fast": 5, "slow": 20}}


class PipelineFailed(Exception):
    """A phase failed; the message is what run() reports."""


class Pipeline:
    def __init__(self, verse_id: int, config: dict) -> None:
        self.verse_id = verse_id
        self.config = config
        self.steps = int(config.get("steps", 252))
        self.fee_bps = float(config.get("fee_bps", 5.0))
        self.strategies = config.get("strategies") or []
        self.live: dict[str, str] = {}  # instance -> link it was started over
        self.link = "default"
        self.calls = 0
        self._world: dict | None = None

    def _local(self) -> dict:
        """The verse's world computed in this component (no provider involved)."""
        if self._world is None:
            self._world = {}
            exec(SOURCE + f"\nPRICES = make_market({self.verse_id}, steps={self.steps})\n", self._world)
        return self._world

    # plumbing ----------------------------------------------------------------------------------
    def _call(self, what: str, fn, request):
        self.calls += 1
        try:
            return fn(request)
        except Err as exc:
            raise PipelineFailed(f"{what} failed: {exc.value.code}: {exc.value.message}") from None

    def _use(self, link: str, interfaces: list) -> None:
        lattice.set_link_name(link, interfaces)
        if "generator" in interfaces:
            self.link = link

    def _execute(self, instance_id: str, code: str):
        result = self._call("generator.execute", generator.execute, ExecuteRequest(
            instance_id=instance_id, code=code, language="python", timeout_ms=60_000, env=[], input_json="",
            seed=0, argv=[], cwd="", stdin=b"", output_bytes=False))
        if result.error or result.exit_code:
            raise PipelineFailed(f"code in {instance_id} failed: {result.error or result.stderr.strip()}")
        return json.loads(result.value_json) if result.value_json else None

    def _start(self) -> str:
        instance = self._call("generator.start", generator.start, StartRequest(
            image="", snapshot_id="", language="python", ttl_s=600, limits=None,
            metadata=[("verse-id", str(self.verse_id)), ("component", "explorer")]))
        self.live[instance.instance_id] = self.link
        return instance.instance_id

    def _stop(self, instance_id: str) -> None:
        self._call("generator.stop", generator.stop, InstanceRef(instance_id=instance_id))
        self.live.pop(instance_id, None)

    def _load_market(self, instance_id: str) -> None:
        self._execute(instance_id, SOURCE + f"\nPRICES = make_market({self.verse_id}, steps={self.steps})\nNone")

    # phases ------------------------------------------------------------------------------------
    def baseline(self) -> dict:
        spec = self.config.get("baseline") or {}
        strategy = {"rule": spec.get("rule", DEFAULT_BASELINE["rule"]),
                    "params": spec.get("params", DEFAULT_BASELINE["params"])}
        self._use(spec.get("link", "default"), ["generator"])
        instance_id = self._start()
        self._load_market(instance_id)
        result = self._execute(instance_id, f"backtest(PRICES, {strategy['rule']!r}, {strategy['params']!r}, "
                                            f"fee_bps={self.fee_bps!r})")
        self._stop(instance_id)
        self._use("default", ["generator"])
        log.log(log.Level.INFO, f"baseline {strategy['rule']}: {result['profit']}")
        return {**strategy, "value": result["profit"], "trades": result["trades"]}

    def optimize(self, index: int, rule: str) -> dict:
        cfg = self.config["optimize"]
        reply = self._call("coordinator.optimize", coordinator.optimize, OptimizeRequest(
            objective_code=objective_program(self.verse_id, self.steps, rule, self.fee_bps),
            space_json=json.dumps(SPACES[rule]), budget=int(cfg.get("budget", 48)),
            seed=self.verse_id * 16 + index, group_size=int(cfg.get("group_size", 8)),
            max_async_level=int(cfg.get("max_async_level", 1)), checkpoint_every=1))
        return {"params": json.loads(reply.best_json), "best_value": reply.best_value, "curve": list(reply.curve),
                "steps": len(reply.step_digests) - 1, "reply": reply}

    def verify(self, claimant: str, program: str, start_state_json: str, digests: list,
               states: list) -> dict:
        cfg = self.config["verify"]
        reply = self._call("validator.verify", validator.verify, VerifyRequest(
            program_code=program, start_state_json=start_state_json, steps=len(digests) - 1,
            claims=[Claim(claimant=claimant, step_digests=list(digests), states_json=states)],
            mode=VerifyMode.SPOT_CHECK, sample=int(cfg.get("sample", 4)),
            forged_fraction=float(cfg.get("forged_fraction", 0.25)), attestation_json="", lazy=False))
        return {"verdict": reply.verdict, "reexecuted_steps": reply.reexecuted_steps,
                "detection_probability": round(reply.detection_probability, 6)}

    def evaluate(self, instance_id, rule: str, params: dict) -> dict:
        """The candidate's value in its instance (or here, without one), with the trajectory it claims."""
        if instance_id is None:
            world = self._local()
            return world["trajectory_claim"](world["PRICES"], rule, params, self.fee_bps)
        return self._execute(instance_id, f"trajectory_claim(PRICES, {rule!r}, {params!r}, {self.fee_bps!r})")

    def attest(self, winner: dict) -> dict:
        link = (self.config.get("attest") or {}).get("link", "attest")
        self._use(link, ["generator", "validator"])
        code = inference_program(self.steps, self.fee_bps)
        result = self._call("generator.execute (attested)", generator.execute, ExecuteRequest(
            instance_id="", code=code, language="python", timeout_ms=60_000, env=[],
            input_json=json.dumps({"verse_id": self.verse_id, "rule": winner["rule"], "params": winner["params"]}),
            seed=self.verse_id, argv=[], cwd="", stdin=b"", output_bytes=False))
        if result.error or result.exit_code:
            raise PipelineFailed(f"attested inference failed: {result.error or result.stderr.strip()}")
        output = json.loads(result.value_json)
        check = self._call("validator.verify (attestation)", validator.verify, VerifyRequest(
            program_code=code, start_state_json="", steps=0, claims=[], mode=VerifyMode.ATTESTATION, sample=0,
            forged_fraction=0.0, attestation_json=result.attestation_json, lazy=False))
        self._use("default", ["generator", "validator"])
        attestation = json.loads(result.attestation_json)
        return {"value": output["profit"], "matches_winner": output["profit"] == winner["value"],
                "verdict": check.verdict, "commitment": attestation.get("commitment"),
                "public_key": attestation.get("public_key")}

    # the run -----------------------------------------------------------------------------------
    def run(self) -> dict:
        baseline = self.baseline() if self.config.get("baseline") is not False else None
        generating = bool(self.config.get("generator", True)) and bool(self.strategies)
        branching = generating and bool(self.config.get("branch", True))
        snapshot = None
        if generating:
            root = self._start()
            self._load_market(root)
        if branching:
            snap = self._call("generator.snapshot", generator.snapshot, SnapshotRequest(instance_id=root, ttl_s=0))
            branched = self._call("generator.branch", generator.branch, BranchRequest(
                snapshot_id=snap.snapshot_id, count=len(self.strategies), ttl_s=600))
            homes = [inst.instance_id for inst in branched.instances]
            self.live.update((i, self.link) for i in homes)
            if len(homes) != len(self.strategies):
                raise PipelineFailed(f"branch made {len(homes)} of {len(self.strategies)} instances: "
                                     f"{[e.message for e in branched.errors]}")
            snapshot = {"snapshot_id": snap.snapshot_id, "kind": snap.kind.name, "size_bytes": snap.size_bytes}
        elif generating:
            homes = [root] * len(self.strategies)
        else:
            homes = [None] * len(self.strategies)

        candidates = []
        for index, (home, strategy) in enumerate(zip(homes, self.strategies)):
            rule, params = strategy["rule"], dict(strategy.get("params") or {})
            entry: dict = {"instance_id": home, "rule": rule}
            if self.config.get("optimize"):
                found = self.optimize(index, rule)
                params = found["params"]
                entry["optimized"] = {"best_value": found["best_value"], "steps": found["steps"],
                                      "curve": [round(v, 6) for v in found["curve"]]}
                if self.config.get("verify"):
                    reply = found["reply"]
                    entry["verification"] = self.verify("primeintellect", reply.program_code,
                                                        reply.start_state_json, reply.step_digests,
                                                        list(reply.states_json))
            claim = self.evaluate(home, rule, params)
            if self.config.get("verify") and not self.config.get("optimize"):
                states = [(int(k), v) for k, v in claim["states"].items()]
                entry["verification"] = self.verify(
                    home or "explorer", step_program(self.verse_id, self.steps, rule, params, self.fee_bps),
                    json.dumps(claim["start_state"]), claim["digests"], states)
            entry.update(params=params, value=claim["profit"],
                         verified=entry.get("verification", {}).get("verdict", True))
            log.log(log.Level.INFO, f"{rule} {params}: {claim['profit']} (verified: {entry['verified']})")
            candidates.append(entry)

        eligible = [c for c in candidates if c["verified"]]
        if candidates and not eligible:
            raise PipelineFailed("no candidate passed verification: nothing can win")
        winner = None
        if branching:
            for c in candidates:
                if not c["verified"]:
                    self._stop(c["instance_id"])
            survivor = self._call("generator.merge", generator.merge, MergeRequest(
                instance_ids=[c["instance_id"] for c in eligible],
                oracle=OracleResult(rule="max", scores=[(c["instance_id"], float(c["value"])) for c in eligible],
                                    winner_id=""))).instance_id
            for c in eligible:
                if c["instance_id"] != survivor:
                    self.live.pop(c["instance_id"], None)
            winner = next(c for c in eligible if c["instance_id"] == survivor)
        elif eligible:
            winner = max(eligible, key=lambda c: c["value"])
        attestation = self.attest(winner) if self.config.get("attest") and winner else None
        for instance_id in list(self.live):
            self._stop(instance_id)
        wev = round(winner["value"] - baseline["value"], 6) if winner and baseline else None
        return {
            "verse_id": self.verse_id, "mode": "pipeline", "baseline": baseline, "snapshot": snapshot,
            "candidates": candidates,
            "winner": {k: winner[k] for k in ("rule", "params", "value", "verified")} if winner else None,
            "attestation": attestation, "wev": wev, "provider_calls": self.calls,
        }

    def clean_up(self) -> None:
        for instance_id, link in list(self.live.items()):
            lattice.set_link_name(link, ["generator"])
            try:
                generator.stop(InstanceRef(instance_id=instance_id))
            except Err as exc:
                log.log(log.Level.WARN, f"could not stop {instance_id}: {exc.value.code}: {exc.value.message}")
