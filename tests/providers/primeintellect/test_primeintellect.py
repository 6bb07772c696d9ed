"""primeintellect against its running daemon: async GRPO that learns, reproduces, and refuses bad input."""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from tests.support import module_daemon, sigterm_mid_call_leaves_nothing, status_of
from worldrt.providers import digest
from worldrt.providers.primeintellect import _grpo
from worldrt.providers.testing import ProviderDaemon
from worldrt.v1 import pb

pytestmark = pytest.mark.daemons

TARGET = [3, 1, 4, 1, 5, 2]
OBJECTIVE = f"""
TARGET = {TARGET}

def objective(params, seed):
    hits = sum(1.0 for i, t in enumerate(TARGET) if params[f"p{{i}}"] == t)
    return hits - 4.0 * (params["x"] - 0.3) ** 2
"""
SPACE = {**{f"p{i}": list(range(8)) for i in range(len(TARGET))}, "x": {"low": 0.0, "high": 1.0}}
BUDGET = 400


def known_objective(params: dict) -> float:
    hits = sum(1.0 for i, t in enumerate(TARGET) if params[f"p{i}"] == t)
    return hits - 4.0 * (params["x"] - 0.3) ** 2


def request(**kw: object) -> pb.OptimizeRequest:
    fields = {"objective_code": OBJECTIVE, "space_json": json.dumps(SPACE), "budget": BUDGET, "seed": 1,
              "group_size": 8, "max_async_level": 0}
    fields.update(kw)
    return pb.OptimizeRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def pi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderDaemon]:
    yield from module_daemon(tmp_path_factory, "primeintellect", rollout_timeout_ms="1000")


def test_capabilities_are_truthful(pi: ProviderDaemon) -> None:
    caps = pi.stub.Capabilities(pb.CapabilitiesRequest())
    assert (caps.provider_id, caps.trit) == ("primeintellect", 0)
    assert "optimize" in caps.operations and "execute" not in caps.operations
    items = {c.name: json.loads(c.value_json) for c in caps.capabilities}
    assert "not PrimeIntellect" in items["engine"]
    assert items["curve"].startswith("mean reward")
    assert items["algorithm"]["advantage"] == "reward - group mean"
    with pytest.raises(grpc.RpcError) as info:
        pi.stub.Execute(pb.ExecuteRequest(code="1"))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "morph" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        pi.stub.Verify(pb.VerifyRequest())
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED and "gensyn" in info.value.details()


def test_beats_random_search_with_the_same_rollout_budget(pi: ProviderDaemon) -> None:
    grpo, rand = [], []
    for seed in range(5):
        reply = pi.stub.Optimize(request(seed=seed, max_async_level=1))
        assert known_objective(json.loads(reply.best_json)) == pytest.approx(reply.best_value)
        grpo.append(reply.best_value)
        rng = random.Random(seed)
        rand.append(max(known_objective({**{f"p{i}": rng.randrange(8) for i in range(len(TARGET))},
                                         "x": rng.random()}) for _ in range(BUDGET)))
    mean_grpo, mean_rand = sum(grpo) / 5, sum(rand) / 5
    assert mean_grpo > mean_rand + 1.5, (grpo, rand)
    assert mean_grpo > 5.5


def test_the_same_request_gives_the_same_reply_bytes(pi: ProviderDaemon) -> None:
    first = pi.stub.Optimize(request(seed=7, max_async_level=2, budget=160, checkpoint_every=4))
    again = pi.stub.Optimize(request(seed=7, max_async_level=2, budget=160, checkpoint_every=4))
    assert first.SerializeToString(deterministic=True) == again.SerializeToString(deterministic=True)
    other = pi.stub.Optimize(request(seed=8, max_async_level=2, budget=160))
    assert other.step_digests[1:] != first.step_digests[1:]


def test_reply_carries_curve_digests_and_states(pi: ProviderDaemon) -> None:
    reply = pi.stub.Optimize(request(budget=96, max_async_level=2, checkpoint_every=1))
    steps = 96 // 8
    assert len(reply.curve) == steps and len(reply.step_digests) == steps + 1
    assert digest(json.loads(reply.start_state_json)) == reply.step_digests[0]
    assert set(reply.states_json) == set(range(1, steps + 1))
    for k, text in reply.states_json.items():
        state = json.loads(text)
        assert digest(state) == reply.step_digests[k]
        assert state["last"]["mean_reward"] == reply.curve[k - 1]
        # The group of step k was sampled by the policy of max(0, k - 1 - A) updates: stale, and weighted.
        assert state["last"]["behaviour_version"] == max(0, k - 1 - 2)
    assert "def step(state" in reply.program_code and "_OBJECTIVE_SOURCE = " in reply.program_code


def test_async_level_changes_which_policy_samples(pi: ProviderDaemon) -> None:
    sync = pi.stub.Optimize(request(budget=80))
    stale = pi.stub.Optimize(request(budget=80, max_async_level=3))
    assert sync.step_digests[0] != stale.step_digests[0]  # the start state queues A + 1 groups
    assert sync.curve[0] == stale.curve[0]  # both first groups come from the initial policy
    assert sync.curve[1:] != stale.curve[1:]


BAD_SPACES = ["not json", "[]", "{}", '{"a": []}', '{"a": {"low": 1, "high": 0}}', '{"a": "x"}',
              '{"a": {"low": 0}}', '{"a": {"low": 0, "high": "1"}}']


@pytest.mark.parametrize("space", BAD_SPACES)
def test_malformed_space_is_invalid(pi: ProviderDaemon, space: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        pi.stub.Optimize(request(space_json=space))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "space_json" in info.value.details() or "parameter" in info.value.details()
    assert pi.stub.Capabilities(pb.CapabilitiesRequest()).trit == 0


@pytest.mark.parametrize("fields, words", [
    ({"budget": 0}, "below group_size"),
    ({"budget": 10**9}, "maximum of"),
    ({"group_size": 1}, "group_size"),
    ({"group_size": 100_000}, "group_size"),
    ({"max_async_level": 99}, "max_async_level"),
    ({"objective_code": ""}, "empty"),
    ({"objective_code": "def objective(p, s) return 1"}, "SyntaxError"),
    ({"objective_code": "x = 1"}, "must define objective"),
    ({"objective_code": "def objective(p, s):\n    raise ValueError('no good')"}, "ValueError: no good"),
    ({"objective_code": "def objective(p, s):\n    return 'high'"}, "must return a number"),
    ({"objective_code": "def objective(p, s):\n    return float('nan')"}, "finite"),
    ({"objective_code": "raise RuntimeError('top level')"}, "RuntimeError: top level"),
])
def test_bad_requests_are_invalid_and_the_daemon_serves_on(pi: ProviderDaemon, fields: dict, words: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        pi.stub.Optimize(request(**fields))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert words in info.value.details()
    assert pi.stub.Capabilities(pb.CapabilitiesRequest()).trit == 0


LOOPS = [
    "def objective(p, s):\n    while p['p0'] == 0:\n        pass\n    return 1.0",
    "import time\ndef objective(p, s):\n    while p['p0'] == 0:\n        try:\n            time.sleep(1)\n"
    "        except BaseException:\n            pass\n    return 1.0",
]


@pytest.mark.parametrize("code", LOOPS, ids=["busy", "ignores-interrupt"])
def test_an_objective_that_loops_hits_the_rollout_timeout(pi: ProviderDaemon, code: str) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        pi.stub.Optimize(request(objective_code=code))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "rollout timeout of 1000 ms" in info.value.details()
    assert time.monotonic() - started < 10
    assert pi.stub.Optimize(request(budget=16)).best_value > 0


def test_an_objective_that_ends_its_process_is_aborted(pi: ProviderDaemon) -> None:
    code = "import os\ndef objective(p, s):\n    os._exit(3)"
    assert status_of(lambda: pi.stub.Optimize(request(objective_code=code))) == grpc.StatusCode.ABORTED
    assert pi.stub.Optimize(request(budget=16)).best_value > 0


def test_sigterm_mid_run_leaves_no_process(tmp_path: Path) -> None:
    """The daemon, bwrap, the frozen template and rollout workers all end with the daemon."""
    daemon = ProviderDaemon("primeintellect", state_dir=tmp_path).start()
    slow = "import time\ndef objective(p, s):\n    time.sleep(0.05)\n    return 1.0"
    sigterm_mid_call_leaves_nothing(
        daemon, tmp_path, lambda: daemon.stub.Optimize(request(objective_code=slow, budget=4000, group_size=16)),
        pb.OptimizeReply)


def test_stale_groups_are_importance_weighted() -> None:
    """Pure engine check: a group sampled A versions ago no longer has probability ratio 1."""
    space = _grpo.parse_space(SPACE)
    config = {"seed": 2, "group_size": 8, "max_async_level": 2, "steps": 10, "lr": 0.1, "clip": 0.2, "epochs": 4,
              "init_std": 0.3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    state = _grpo.init_state(space, config)
    for _ in range(3):
        group = state["queue"][0]
        state = _grpo.advance(state, [known_objective(_grpo.params_of(space, a)) for a in group["actions"]])
    head = state["queue"][0]
    assert head["version"] == state["t"] - 2
    theta = np.array(state["theta"])
    ratios = [math.exp(_grpo.log_prob(space, theta, a)[0] - lp) for a, lp in zip(head["actions"], head["logp"])]
    assert any(abs(r - 1) > 1e-3 for r in ratios)
