"""The explorer verse: seed a market in a generator instance, branch it, try one trading rule per branch,
keep the most profitable branch.

run(verse_id, args) starts an instance (or attaches to ``args["instance_id"]``), builds the verse's market
in its memory, scores the ``hold`` baseline, snapshots, branches once per strategy, backtests a different
strategy in each branch, merges by the best profit and returns a JSON summary. ``args`` (JSON, all
optional): ``strategies`` ([{"rule", "params"}], rules: ma_cross, mean_revert, breakout, hold), ``steps``,
``fee_bps``, ``timeout_ms``, ``instance_id``, ``keep`` (leave the surviving instance running).
With ``args["pipeline"]`` it runs the whole pipeline instead (see pipeline.py).

Build: ``worldrt component build components/examples/explorer -o explorer.wasm``.
"""

import json

import wit_world
from componentize_py_types import Err
from market import SOURCE
from pipeline import Pipeline, PipelineFailed
from wit_world.imports import generator, log
from wit_world.imports.types import (
    BranchRequest,
    ExecuteRequest,
    ExecutionResult,
    InstanceRef,
    MergeRequest,
    OracleResult,
    SnapshotRequest,
    StartRequest,
)

DEFAULT_STRATEGIES = [
    {"rule": "ma_cross", "params": {"fast": 5, "slow": 20}},
    {"rule": "mean_revert", "params": {"window": 20, "z": 1.0}},
    {"rule": "breakout", "params": {"window": 20}},
]


class VerseFailed(Exception):
    """A step of the verse failed; the message is what run() reports."""


def _provider(operation: str, call, request):
    try:
        return call(request)
    except Err as exc:
        raise VerseFailed(f"generator.{operation} failed: {exc.value.code}: {exc.value.message}") from None


class Explorer:
    def __init__(self, verse_id: int, args: dict) -> None:
        self.verse_id = verse_id
        self.strategies = args.get("strategies") or DEFAULT_STRATEGIES
        self.steps = int(args.get("steps", 252))
        self.fee_bps = float(args.get("fee_bps", 5.0))
        self.timeout_ms = int(args.get("timeout_ms", 60_000))
        self.attach = args.get("instance_id") or ""
        self.keep = bool(args.get("keep", False))
        self.live: list[str] = []
        self.calls = 0

    def execute(self, instance_id: str, code: str):
        self.calls += 1
        result: ExecutionResult = _provider("execute", generator.execute, ExecuteRequest(
            instance_id=instance_id, code=code, language="python", timeout_ms=self.timeout_ms, env=[],
            input_json="", seed=0, argv=[], cwd="", stdin=b"", output_bytes=False))
        if result.error or result.exit_code:
            raise VerseFailed(f"code in {instance_id} failed: {result.error or result.stderr.strip()}")
        return json.loads(result.value_json) if result.value_json else None

    def backtest(self, instance_id: str, strategy: dict) -> dict:
        call = (f"RESULT = backtest(PRICES, {strategy['rule']!r}, {strategy.get('params') or {}!r}, "
                f"fee_bps={self.fee_bps!r})\nRESULT")
        return self.execute(instance_id, call)

    def stop(self, instance_id: str) -> None:
        self.calls += 1
        _provider("stop", generator.stop, InstanceRef(instance_id=instance_id))
        self.live.remove(instance_id)

    def run(self) -> dict:
        if self.attach:
            root = self.attach
        else:
            self.calls += 1
            root = _provider("start", generator.start, StartRequest(
                image="", snapshot_id="", language="python", ttl_s=600, limits=None,
                metadata=[("verse-id", str(self.verse_id)), ("component", "explorer")])).instance_id
            self.live.append(root)
        log.log(log.Level.INFO, f"verse {self.verse_id}: instance {root}")

        market = self.execute(root, SOURCE + (
            f"\nPRICES = make_market({self.verse_id}, steps={self.steps})\n"
            "{'steps': len(PRICES) - 1, 'first': PRICES[0], 'last': round(PRICES[-1], 6),"
            " 'low': round(min(PRICES), 6), 'high': round(max(PRICES), 6)}"))
        baseline = self.backtest(root, {"rule": "hold", "params": {}})

        self.calls += 1
        snap = _provider("snapshot", generator.snapshot, SnapshotRequest(instance_id=root, ttl_s=0))
        self.calls += 1
        branched = _provider("branch", generator.branch, BranchRequest(
            snapshot_id=snap.snapshot_id, count=len(self.strategies), ttl_s=600))
        branch_ids = [inst.instance_id for inst in branched.instances]
        self.live.extend(branch_ids)
        failed = [{"index": e.index, "code": e.code, "message": e.message} for e in branched.errors]
        if not branch_ids:
            raise VerseFailed(f"no branch of snapshot {snap.snapshot_id} came up: {failed}")
        log.log(log.Level.INFO, f"snapshot {snap.snapshot_id} branched into {len(branch_ids)}")

        outcomes = []
        for instance_id, strategy in zip(branch_ids, self.strategies, strict=False):
            outcome = self.backtest(instance_id, strategy)
            outcomes.append({"instance_id": instance_id, **outcome})
            log.log(log.Level.INFO, f"{instance_id} {strategy['rule']}: profit {outcome['profit']}")

        scores = [(o["instance_id"], float(o["profit"])) for o in outcomes]
        self.calls += 1
        survivor = _provider("merge", generator.merge, MergeRequest(
            instance_ids=[o["instance_id"] for o in outcomes],
            oracle=OracleResult(rule="max", scores=scores, winner_id=""))).instance_id
        self.live = [i for i in self.live if i == survivor or i not in branch_ids]
        winner = next(o for o in outcomes if o["instance_id"] == survivor)
        # The survivor still holds the winning branch's memory: its RESULT is the winner's backtest.
        survivor_state = self.execute(survivor, "RESULT")

        if not self.keep:
            for instance_id in list(self.live):
                if instance_id != self.attach:
                    self.stop(instance_id)
        return {
            "verse_id": self.verse_id,
            "instance_id": root,
            "market": market,
            "baseline": baseline,
            "snapshot": {"snapshot_id": snap.snapshot_id, "kind": snap.kind.name, "size_bytes": snap.size_bytes},
            "branches": outcomes,
            "branch_errors": failed,
            "winner": winner,
            "survivor_state_matches": survivor_state == {k: winner[k] for k in survivor_state},
            "wev": round(winner["profit"] - baseline["profit"], 6),
            "kept": self.live if self.keep else [],
            "provider_calls": self.calls,
        }

    def clean_up(self) -> None:
        """Stop what this run started, after a failure (errors here are logged, the first failure stands)."""
        for instance_id in list(self.live):
            if instance_id == self.attach:
                continue
            try:
                generator.stop(InstanceRef(instance_id=instance_id))
            except Err as exc:
                log.log(log.Level.WARN, f"could not stop {instance_id}: {exc.value.code}: {exc.value.message}")


class WitWorld(wit_world.WitWorld):
    def run(self, verse_id: int, args: str) -> str:
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise Err(f"args is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise Err("args must be a JSON object")
        if isinstance(parsed.get("pipeline"), dict):
            pipeline = Pipeline(verse_id, parsed["pipeline"])
            try:
                return json.dumps(pipeline.run(), sort_keys=True)
            except PipelineFailed as exc:
                log.log(log.Level.ERROR, str(exc))
                pipeline.clean_up()
                raise Err(str(exc)) from None
        explorer = Explorer(verse_id, parsed)
        try:
            return json.dumps(explorer.run(), sort_keys=True)
        except VerseFailed as exc:
            log.log(log.Level.ERROR, str(exc))
            explorer.clean_up()
            raise Err(str(exc)) from None
