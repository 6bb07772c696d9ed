"""gensyn against its running daemon: refereed delegation, spot checks, replaying a primeintellect run."""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support import module_daemon, settle_sandboxes, sigterm_mid_call_leaves_nothing, status_of
from worldrt.providers import canonical_json, digest
from worldrt.providers.gensyn import bisect_divergence
from worldrt.providers.gensyn._dispute import read
from worldrt.providers.gensyn._replay import Replayer
from worldrt.providers.gensyn._spotcheck import spot_check
from worldrt.providers.sandbox import WorkerPool
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

PROGRAM = """
def step(state, t):
    x = (state["x"] * 6364136223846793005 + 1442695040888963407 + t) % (1 << 64)
    return {"x": x, "sum": (state["sum"] + x % 1000) % 1000003}
"""
_ns: dict[str, Any] = {}
exec(PROGRAM, _ns)
STEP = _ns["step"]
START = {"x": 7, "sum": 0}
T = 1024


def trajectory(steps: int, forge_at: int | None = None) -> list[dict]:
    """The states of a run; from ``forge_at`` on, a claimant that changed one state and carried on."""
    states = [START]
    for t in range(1, steps + 1):
        state = STEP(states[-1], t)
        if t == forge_at:
            state = {**state, "x": state["x"] + 1}
        states.append(state)
    return states


HONEST = trajectory(T)
FORGED = trajectory(T, forge_at=700)


def claim(name: str, states: list[dict], supply: list[int] | None = None) -> pb.Claim:
    return pb.Claim(claimant=name, step_digests=[digest(s) for s in states],
                    states_json={k: canonical_json(states[k]) for k in (supply or [])})


def referee(*claims: pb.Claim, steps: int = T, program: str = PROGRAM) -> pb.VerifyRequest:
    return pb.VerifyRequest(program_code=program, start_state_json=json.dumps(START), steps=steps,
                            mode=pb.REFEREE, claims=list(claims))


@pytest.fixture(scope="module")
def gensyn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "gensyn", step_timeout_ms="1000")


def test_bisection_takes_ceil_log2_comparisons() -> None:
    for steps in (1, 2, 3, 1000, 1024, 1025):
        for first in sorted({1, steps // 3 or 1, steps}):
            k, comparisons = bisect_divergence(lambda i: i < first, 0, steps)
            assert k == first and comparisons <= math.ceil(math.log2(steps))


def test_capabilities_are_truthful(gensyn: ProviderDaemon) -> None:
    caps = gensyn.stub.Capabilities(pb.CapabilitiesRequest())
    assert (caps.provider_id, caps.trit) == ("gensyn", -1)
    items = {c.name: json.loads(c.value_json) for c in caps.capabilities}
    assert items["modes"] == ["REFEREE", "SPOT_CHECK"] and "not the Gensyn network" in items["engine"]
    with pytest.raises(grpc.RpcError) as info:
        gensyn.stub.Verify(pb.VerifyRequest(mode=pb.ATTESTATION, attestation_json="{}"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "ritual" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        gensyn.stub.Optimize(pb.OptimizeRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "primeintellect" in info.value.details()


def test_referee_of_1024_steps_asks_for_one_state_and_reexecutes_one_step(gensyn: ProviderDaemon) -> None:
    request = referee(claim("alice", HONEST), claim("mallory", FORGED))
    with pytest.raises(grpc.RpcError) as info:
        gensyn.stub.Verify(request)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    needed = int(dict(info.value.trailing_metadata())["x-worldrt-needs-state"])
    assert needed == 699
    request.claims[1].states_json[needed] = canonical_json(FORGED[needed])  # either claimant may supply it
    reply = gensyn.stub.Verify(request)
    assert (reply.verdict, list(reply.honest), reply.first_divergent_step) == (False, ["alice"], 700)
    assert reply.reexecuted_steps == 1
    rounds = json.loads(reply.proof)["rounds"]
    assert rounds[0]["comparisons"] <= math.ceil(math.log2(T)) and rounds[0]["eliminated"] == ["mallory"]


def test_referee_with_every_state_supplied_names_the_honest_claim_in_any_order(gensyn: ProviderDaemon) -> None:
    everything = list(range(T + 1))
    reply = gensyn.stub.Verify(referee(claim("mallory", FORGED, everything), claim("alice", HONEST, everything)))
    assert list(reply.honest) == ["alice"] and reply.reexecuted_steps == 1 and not reply.verdict


def test_a_lying_supplied_state_is_not_trusted(gensyn: ProviderDaemon) -> None:
    lie = pb.Claim(claimant="mallory", step_digests=[digest(s) for s in FORGED],
                   states_json={699: canonical_json({"x": 1, "sum": 1}), 650: canonical_json(HONEST[650])})
    reply = gensyn.stub.Verify(referee(claim("alice", HONEST), lie))
    assert list(reply.honest) == ["alice"]
    assert reply.reexecuted_steps == 50  # replayed 651..699 from the state that did hash right, then step 700
    assert json.loads(reply.proof)["rounds"][0]["supplied_states_not_matching"] == ["mallory@699"]


def test_equal_claims_stand_without_reexecution(gensyn: ProviderDaemon) -> None:
    reply = gensyn.stub.Verify(referee(claim("a", HONEST), claim("b", HONEST)))
    assert reply.verdict and list(reply.honest) == ["a", "b"]
    assert reply.reexecuted_steps == 0 and reply.first_divergent_step == -1


def test_three_claims_and_a_wrong_start(gensyn: ProviderDaemon) -> None:
    steps = 40
    honest, forged = trajectory(steps), trajectory(steps, forge_at=13)
    wrong_start = [{"x": 8, "sum": 0}] + honest[1:]
    reply = gensyn.stub.Verify(referee(claim("a", honest), claim("m", forged), claim("b", honest),
                                       claim("s", wrong_start), steps=steps))
    assert list(reply.honest) == ["a", "b"] and not reply.verdict
    assert reply.first_divergent_step == 0 and reply.reexecuted_steps == 13  # replayed 1..12 from the start, then 13
    assert json.loads(reply.proof)["wrong_start_digest"] == ["s"]


def test_claims_that_agree_on_a_wrong_step_are_both_caught(gensyn: ProviderDaemon) -> None:
    steps = 20
    bad_a, bad_b = trajectory(steps, forge_at=5), trajectory(steps, forge_at=5)
    bad_b[12] = {**bad_b[12], "sum": -1}
    reply = gensyn.stub.Verify(referee(claim("a", bad_a), claim("b", bad_b[:13] + bad_a[13:]), steps=steps))
    assert not reply.verdict and list(reply.honest) == [] and reply.first_divergent_step == 5


def test_spot_check_of_an_honest_claim(gensyn: ProviderDaemon) -> None:
    request = pb.VerifyRequest(program_code=PROGRAM, start_state_json=json.dumps(START), steps=T,
                               mode=pb.SPOT_CHECK, sample=8, forged_fraction=0.1,
                               claims=[claim("alice", HONEST, list(range(T + 1)))])
    reply = gensyn.stub.Verify(request)
    assert reply.verdict and list(reply.honest) == ["alice"] and reply.reexecuted_steps == 8
    assert reply.detection_probability == pytest.approx(1 - 0.9 ** 8)
    assert len(json.loads(reply.proof)["sampled_steps"]) == 8


def test_spot_check_of_every_step_catches_a_forgery(gensyn: ProviderDaemon) -> None:
    steps = 64
    forged = trajectory(steps, forge_at=33)
    request = pb.VerifyRequest(program_code=PROGRAM, start_state_json=json.dumps(START), steps=steps,
                               mode=pb.SPOT_CHECK, sample=steps, forged_fraction=1 / steps,
                               claims=[claim("mallory", forged, list(range(steps + 1)))])
    reply = gensyn.stub.Verify(request)
    assert not reply.verdict and reply.first_divergent_step == 33
    assert reply.detection_probability == pytest.approx(1 - (1 - 1 / steps) ** steps)  # the normative bound


def test_spot_check_without_states_asks_for_them(tmp_path: Path) -> None:
    request = pb.VerifyRequest(program_code=PROGRAM, start_state_json=json.dumps(START), steps=T,
                               mode=pb.SPOT_CHECK, sample=3, claims=[claim("alice", HONEST)])
    with ProviderDaemon("gensyn", state_dir=tmp_path, options={"max_replay_steps": "0"}) as strict:
        # With no replay allowed, three sampled steps need supplied states (unless they are 1, 2, 3).
        assert status_of(lambda: strict.stub.Verify(request)) == grpc.StatusCode.FAILED_PRECONDITION
        request.claims[0].states_json.update({k: canonical_json(HONEST[k]) for k in range(T + 1)})
        reply = strict.stub.Verify(request)
        assert reply.verdict and reply.reexecuted_steps == 3


def test_spot_check_of_every_step_needs_no_states(gensyn: ProviderDaemon) -> None:
    request = pb.VerifyRequest(program_code=PROGRAM, start_state_json=json.dumps(START), steps=T,
                               mode=pb.SPOT_CHECK, sample=T, claims=[claim("alice", HONEST)])
    reply = gensyn.stub.Verify(request)  # each sampled step starts from the one checked before it
    assert reply.verdict and reply.reexecuted_steps == T


class _Counting(Replayer):
    """A replayer that notes how many steps it re-executes at once."""

    in_flight = most = 0

    async def step(self, state: dict[str, Any], t: int) -> tuple[dict[str, Any], str]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await super().step(state, t)
        finally:
            self.in_flight -= 1


def test_spot_check_re_executes_independent_steps_at_once_and_decides_as_in_order(tmp_path: Path) -> None:
    """Sampled steps whose previous state is supplied start chains of their own, all re-executed at the same
    time on the lease's two workers; without supplied states each step starts from the one checked before it,
    one at a time on one worker. Either way the verdict is the one in order: the first sampled step that
    fails decides it."""
    steps = 16
    forged = trajectory(steps, forge_at=6)

    def spot(states: list[dict], supply: list[int]) -> pb.VerifyRequest:
        return pb.VerifyRequest(program_code=PROGRAM, start_state_json=json.dumps(START), steps=steps,
                                mode=pb.SPOT_CHECK, sample=steps, claims=[claim("c", states, supply)])

    async def check(request: pb.VerifyRequest) -> tuple[bool, int, int, int, int]:
        dispute = read(request, max_steps=steps, min_claims=1, max_claims=1)
        replayer = _Counting(pool, dispute.program, 5.0, steps, workers=2)
        async with replayer:
            outcome = await spot_check(dispute, replayer, request.sample, 0.1, random.Random(1))
        return outcome.verdict, outcome.first_divergent_step, replayer.most, replayer.workers, replayer.reexecuted

    async def scenario() -> None:
        everything = list(range(steps + 1))
        assert await check(spot(HONEST[:steps + 1], everything)) == (True, -1, steps, 2, steps)
        assert await check(spot(HONEST[:steps + 1], [])) == (True, -1, 1, 1, steps)
        verdict, at, most, workers, _ = await check(spot(forged, everything))
        assert (verdict, at, most, workers) == (False, 6, steps, 2)
        assert await check(spot(forged, [])) == (False, 6, 1, 1, 6)

    pool = WorkerPool(tmp_path, name="spot", ready_workers=2)

    async def main() -> None:
        await pool.open()
        try:
            await scenario()
        finally:
            await pool.close()

    asyncio.run(main())
    assert settle_sandboxes(tmp_path, 0) == 0


# --- checking a primeintellect Optimize run ------------------------------------------------------
OBJECTIVE = "def objective(params, seed):\n    return -abs(params['x'] - 0.7) + (params['c'] == 'b')\n"


@pytest.fixture(scope="module")
def optimize_reply(tmp_path_factory: pytest.TempPathFactory) -> pb.OptimizeReply:
    state = tmp_path_factory.mktemp("primeintellect")
    with ProviderDaemon("primeintellect", state_dir=state) as pi:
        return pi.stub.Optimize(pb.OptimizeRequest(
            objective_code=OBJECTIVE, space_json=json.dumps({"x": {"low": 0, "high": 1}, "c": ["a", "b", "c"]}),
            budget=96, seed=3, group_size=8, max_async_level=1, checkpoint_every=1))


def replay_request(reply: pb.OptimizeReply, mode: int, claims: list[pb.Claim], **kw: Any) -> pb.VerifyRequest:
    return pb.VerifyRequest(program_code=reply.program_code, start_state_json=reply.start_state_json,
                            steps=len(reply.step_digests) - 1, mode=mode, claims=claims, **kw)


def tampered(reply: pb.OptimizeReply, at: int) -> pb.Claim:
    """A claimant that nudged the policy after step ``at`` and committed to the nudged state."""
    state = json.loads(reply.states_json[at])
    state["theta"][0] += 0.5
    digests = list(reply.step_digests)
    digests[at] = digest(state)
    states = dict(reply.states_json)
    states[at] = canonical_json(state)
    return pb.Claim(claimant="tamperer", step_digests=digests, states_json=states)


def test_an_optimize_run_verifies_step_by_step(gensyn: ProviderDaemon, optimize_reply: pb.OptimizeReply) -> None:
    steps = len(optimize_reply.step_digests) - 1
    honest = pb.Claim(claimant="primeintellect", step_digests=optimize_reply.step_digests,
                      states_json=optimize_reply.states_json)
    reply = gensyn.stub.Verify(replay_request(optimize_reply, pb.SPOT_CHECK, [honest], sample=steps))
    assert reply.verdict and reply.reexecuted_steps == steps, reply.proof


def test_a_tampered_optimize_run_fails(gensyn: ProviderDaemon, optimize_reply: pb.OptimizeReply) -> None:
    steps = len(optimize_reply.step_digests) - 1
    forged = tampered(optimize_reply, 5)
    spot = gensyn.stub.Verify(replay_request(optimize_reply, pb.SPOT_CHECK, [forged], sample=steps))
    assert not spot.verdict and spot.first_divergent_step == 5
    honest = pb.Claim(claimant="primeintellect", step_digests=optimize_reply.step_digests)
    bare = pb.Claim(claimant="tamperer", step_digests=forged.step_digests)
    refereed = gensyn.stub.Verify(replay_request(optimize_reply, pb.REFEREE, [bare, honest]))
    assert list(refereed.honest) == ["primeintellect"] and refereed.first_divergent_step == 5
    assert refereed.reexecuted_steps == 5  # no states supplied: replayed 1..4 from the start state, then step 5


# --- bad input --------------------------------------------------------------------------------
def _bad_cases() -> list[tuple[str, pb.VerifyRequest, grpc.StatusCode, str]]:
    a, b = claim("a", HONEST[:11]), claim("b", trajectory(10, forge_at=4))
    short = pb.Claim(claimant="b", step_digests=b.step_digests[:-1])

    def req(**kw: Any) -> pb.VerifyRequest:
        fields: dict[str, Any] = {"program_code": PROGRAM, "start_state_json": json.dumps(START), "steps": 10,
                                  "mode": pb.REFEREE, "claims": [a, b]}
        fields.update(kw)
        return pb.VerifyRequest(**fields)

    raises = "def step(state, t):\n    raise ZeroDivisionError('boom')"
    loops = "def step(state, t):\n    while True:\n        pass"
    exits = "import os\ndef step(state, t):\n    os._exit(1)"
    inv, dl = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.DEADLINE_EXCEEDED
    return [
        ("unequal lengths", req(claims=[a, short]), inv, "same length"),
        ("T = 0", req(steps=0, claims=[pb.Claim(claimant="a", step_digests=a.step_digests[:1])] * 2), inv, "T = 0"),
        ("huge T", req(steps=4_000_000_000), inv, "maximum"),
        ("one claim", req(claims=[a]), inv, "2 to 64 claims"),
        ("same name", req(claims=[a, pb.Claim(claimant="a", step_digests=b.step_digests)]), inv, "unique"),
        ("bad digest", req(claims=[a, pb.Claim(claimant="b", step_digests=["zz"] * 11)]), inv, "hex"),
        ("start not JSON", req(start_state_json="{nope"), inv, "not JSON"),
        ("start not object", req(start_state_json="[1]"), inv, "JSON object"),
        ("supplied state not JSON", req(claims=[a, pb.Claim(claimant="b", step_digests=b.step_digests,
                                                            states_json={3: "{"})]), inv, "states_json[3]"),
        ("state beyond T", req(claims=[a, pb.Claim(claimant="b", step_digests=b.step_digests,
                                                   states_json={99: "{}"})]), inv, "beyond"),
        ("no program", req(program_code=""), inv, "program_code"),
        ("syntax error", req(program_code="def step(:"), inv, "SyntaxError"),
        ("no step()", req(program_code="x = 1"), inv, "step"),
        ("step raises", req(program_code=raises), inv, "ZeroDivisionError: boom"),
        ("step returns a list", req(program_code="def step(s, t):\n    return [1]"), inv, "must return a dict"),
        ("step loops", req(program_code=loops), dl, "timeout of 1000 ms"),
        ("step ends its process", req(program_code=exits), grpc.StatusCode.ABORTED, "died"),
        ("no mode", req(mode=pb.VERIFY_MODE_UNSPECIFIED), inv, "mode"),
        ("spot check of two", req(mode=pb.SPOT_CHECK, sample=1), inv, "exactly 1"),
        ("sample 0", req(mode=pb.SPOT_CHECK, claims=[a]), inv, "sample"),
        ("forged fraction 2", req(mode=pb.SPOT_CHECK, claims=[a], sample=1, forged_fraction=2.0), inv, "between 0"),
    ]


@pytest.mark.parametrize("request_, code, words", [c[1:] for c in _bad_cases()], ids=[c[0] for c in _bad_cases()])
def test_bad_input_gets_a_clear_status_and_the_daemon_serves_on(
        gensyn: ProviderDaemon, request_: pb.VerifyRequest, code: grpc.StatusCode, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        gensyn.stub.Verify(request_)
    assert info.value.code() == code, info.value.details()
    assert words in info.value.details()
    assert gensyn.stub.Capabilities(pb.CapabilitiesRequest()).trit == -1
    steps = 10
    ok = gensyn.stub.Verify(referee(claim("a", HONEST[:steps + 1]), claim("b", trajectory(steps, 4)), steps=steps))
    assert list(ok.honest) == ["a"]


def test_sigterm_mid_verify_leaves_no_process(tmp_path: Path) -> None:
    daemon = ProviderDaemon("gensyn", state_dir=tmp_path).start()
    slow = "import time\ndef step(state, t):\n    time.sleep(0.05)\n    return {'t': t}"
    states = [{"t": t} for t in range(101)]
    request = pb.VerifyRequest(program_code=slow, start_state_json=json.dumps(states[0]), steps=100,
                               mode=pb.SPOT_CHECK, sample=100, claims=[claim("a", states)])
    sigterm_mid_call_leaves_nothing(daemon, tmp_path, lambda: daemon.stub.Verify(request), pb.VerifyReply)


def test_a_daemon_without_a_worker_for_spot_checks_does_not_start(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="exited with 2 before serving"):
        ProviderDaemon("gensyn", state_dir=tmp_path, options={"workers": "0"}).start()
    assert "the gensyn option workers must be at least 1, not 0" in (tmp_path / "gensyn.log").read_text()
