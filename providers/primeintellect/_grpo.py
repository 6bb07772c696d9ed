"""Group-relative policy optimization over a parameter space: the pure, replayable core.

The whole run is a sequence of JSON states. ``init_state`` makes state 0; ``advance(state, rewards)``
makes state k from state k-1 and the rewards of the rollout group consumed at step k. The daemon
evaluates the rewards in sandboxed workers; a verifier re-executes one step with ``step(state, k)``,
which evaluates the same rollouts itself. This file is self-contained (numpy and the standard library
only) because its source, followed by ``_OBJECTIVE_SOURCE = <objective code>``, is the program that
evaluates rollouts and replays steps inside a sandbox.

Policy: one softmax over the choices of each discrete parameter, one Gaussian (mean and log std, in
units of high - low) for each continuous parameter, sampled independently. Parameters are visited in
sorted name order and every sum runs in a fixed order, in float64, so a state is a bitwise function
of the state before it and the rewards.

Asynchrony: the group consumed at step s is sampled from policy version max(0, s - 1 - A), where A
is max_async_level; version v is the policy after v updates. So at any time up to A + 1 groups are
being evaluated while the policy trains, and each update weights its rollouts by the importance ratio
pi_current(a) / pi_behaviour(a) inside the PPO-style clip.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import random
import types

import numpy as np

STATE_VERSION = "worldrt.grpo.v1"
LOG_2PI = math.log(2.0 * math.pi)
LOG_STD_MIN = math.log(1e-3)
LOG_STD_MAX = math.log(2.0)
MEAN_MIN, MEAN_MAX = -1.0, 2.0
MAX_PARAMS = 64
MAX_CHOICES = 1024

# Replaced by the objective's source when this file is shipped as a program.
_OBJECTIVE_SOURCE: str | None = None


# --- the space --------------------------------------------------------------------------------
def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_space(space: object) -> list[list]:
    """``[[name, {"choices": [...]}] | [name, {"low": a, "high": b}], ...]`` sorted by name; ValueError if bad."""
    if not isinstance(space, dict) or not space:
        raise ValueError("space_json must be a non-empty JSON object mapping each parameter to its domain")
    if len(space) > MAX_PARAMS:
        raise ValueError(f"space_json has {len(space)} parameters; at most {MAX_PARAMS} are supported")
    parsed = []
    for name in sorted(space):
        domain = space[name]
        if isinstance(domain, list):
            if not domain or len(domain) > MAX_CHOICES:
                raise ValueError(f"parameter {name!r}: a list of choices must hold 1 to {MAX_CHOICES} values")
            parsed.append([name, {"choices": domain}])
        elif isinstance(domain, dict) and set(domain) == {"low", "high"}:
            low, high = domain["low"], domain["high"]
            if not (_is_number(low) and _is_number(high)) or not low < high:
                raise ValueError(f"parameter {name!r}: low and high must be finite numbers with low < high")
            parsed.append([name, {"low": low, "high": high}])
        else:
            raise ValueError(f"parameter {name!r}: expected a list of choices or {{\"low\": a, \"high\": b}}, "
                             f"got {domain!r}"[:300])
    return parsed


def _width(spec: dict) -> int:
    return len(spec["choices"]) if "choices" in spec else 2


def params_of(space: list[list], action: list) -> dict:
    """The objective's parameters for one sampled action (a choice index or a raw Gaussian draw each)."""
    params = {}
    for (name, spec), a in zip(space, action):
        if "choices" in spec:
            params[name] = spec["choices"][a]
        else:
            unit = min(max(a, 0.0), 1.0)
            params[name] = spec["low"] + (spec["high"] - spec["low"]) * unit
    return params


# --- the policy -------------------------------------------------------------------------------
def initial_theta(space: list[list], init_std: float) -> list[float]:
    theta: list[float] = []
    for _name, spec in space:
        if "choices" in spec:
            theta.extend([0.0] * len(spec["choices"]))
        else:
            theta.extend([0.5, math.log(init_std)])
    return theta


def _softmax(z: np.ndarray) -> tuple[np.ndarray, float]:
    """(probabilities, log of the normalizer) of logits ``z``."""
    zmax = float(z.max())
    e = np.exp(z - zmax)
    total = float(e.sum())
    return e / total, zmax + math.log(total)


def log_prob(space: list[list], theta: np.ndarray, action: list) -> tuple[float, np.ndarray]:
    """log pi_theta(action) and its gradient with respect to theta."""
    lp = 0.0
    grad = np.zeros_like(theta)
    off = 0
    for (_name, spec), a in zip(space, action):
        if "choices" in spec:
            k = len(spec["choices"])
            z = theta[off:off + k]
            probs, log_norm = _softmax(z)
            lp += float(z[a]) - log_norm
            grad[off:off + k] = -probs
            grad[off + a] += 1.0
            off += k
        else:
            mean, log_std = float(theta[off]), float(theta[off + 1])
            std = math.exp(log_std)
            d = (a - mean) / std
            lp += -0.5 * d * d - log_std - 0.5 * LOG_2PI
            grad[off] = d / std
            grad[off + 1] = d * d - 1.0
            off += 2
    return lp, grad


def task_seed(seed: int, step: int) -> int:
    """The objective's seed for the group of ``step`` (every rollout of a group shares its task)."""
    return int(hashlib.sha256(f"{seed}:{step}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def sample_group(space: list[list], theta: list[float], config: dict, step: int, version: int) -> dict:
    """The group consumed at ``step``, sampled from policy ``theta`` (which is version ``version``)."""
    th = np.array(theta, dtype=np.float64)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config["seed"], step])))
    actions, logps = [], []
    for _ in range(config["group_size"]):
        action: list = []
        off = 0
        for _name, spec in space:
            if "choices" in spec:
                k = len(spec["choices"])
                probs, _ = _softmax(th[off:off + k])
                cdf = np.cumsum(probs)
                index = int(np.searchsorted(cdf, rng.random() * float(cdf[-1]), side="right"))
                action.append(min(index, k - 1))
                off += k
            else:
                mean, std = float(th[off]), math.exp(float(th[off + 1]))
                action.append(mean + std * float(rng.standard_normal()))
                off += 2
        actions.append(action)
        logps.append(log_prob(space, th, action)[0])
    return {"step": step, "version": version, "task_seed": task_seed(config["seed"], step),
            "actions": actions, "logp": logps}


# --- the run ----------------------------------------------------------------------------------
def init_state(space: list[list], config: dict) -> dict:
    """State 0: the initial policy, and the first A + 1 groups (all sampled from it) in the queue."""
    theta = initial_theta(space, config["init_std"])
    first = min(config["steps"], config["max_async_level"] + 1)
    return {
        "version": STATE_VERSION, "space": space, "config": config, "t": 0, "theta": theta,
        "adam": {"m": [0.0] * len(theta), "v": [0.0] * len(theta), "count": 0},
        "queue": [sample_group(space, theta, config, s, 0) for s in range(1, first + 1)],
        "last": None, "best": None,
    }


def _clamp(space: list[list], theta: np.ndarray) -> None:
    off = 0
    for _name, spec in space:
        if "choices" in spec:
            off += len(spec["choices"])
        else:
            theta[off] = min(max(float(theta[off]), MEAN_MIN), MEAN_MAX)
            theta[off + 1] = min(max(float(theta[off + 1]), LOG_STD_MIN), LOG_STD_MAX)
            off += 2


def advance(state: dict, rewards: list[float]) -> dict:
    """State t+1 from state t and the rewards of the group at the head of its queue (state t is not changed)."""
    config, space = state["config"], state["space"]
    group = state["queue"][0]
    step = state["t"] + 1
    if group["step"] != step or len(rewards) != len(group["actions"]):
        raise ValueError(f"state {state['t']} cannot consume {len(rewards)} rewards for step {group['step']}")
    r = np.array(rewards, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    advantage = r - float(r.mean())
    theta = np.array(state["theta"], dtype=np.float64)
    m = np.array(state["adam"]["m"], dtype=np.float64)
    v = np.array(state["adam"]["v"], dtype=np.float64)
    count = state["adam"]["count"]
    lr, clip, b1, b2, eps = config["lr"], config["clip"], config["beta1"], config["beta2"], config["eps"]
    g_size = len(rewards)
    for _epoch in range(config["epochs"]):
        grad = np.zeros_like(theta)
        for i in range(g_size):
            lp, g = log_prob(space, theta, group["actions"][i])
            ratio = math.exp(lp - group["logp"][i])
            a = float(advantage[i])
            if (a > 0 and ratio > 1 + clip) or (a < 0 and ratio < 1 - clip):
                continue  # the clipped surrogate is flat here
            grad += (a * ratio / g_size) * g
        count += 1
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * grad * grad
        m_hat = m / (1 - b1 ** count)
        v_hat = v / (1 - b2 ** count)
        theta = theta + lr * m_hat / (np.sqrt(v_hat) + eps)
        _clamp(space, theta)
    if not np.all(np.isfinite(theta)):
        raise ValueError("the policy update became non-finite; rescale the objective")
    best = state["best"]
    for i, action in enumerate(group["actions"]):
        if best is None or rewards[i] > best["value"]:
            best = {"value": float(rewards[i]), "params": params_of(space, action), "step": step, "rollout": i}
    theta_list = theta.tolist()
    queue = list(state["queue"][1:])
    upcoming = step + config["max_async_level"] + 1
    if upcoming <= config["steps"]:
        queue.append(sample_group(space, theta_list, config, upcoming, step))
    return {
        "version": STATE_VERSION, "space": space, "config": config, "t": step, "theta": theta_list,
        "adam": {"m": m.tolist(), "v": v.tolist(), "count": count}, "queue": queue,
        "last": {"step": step, "behaviour_version": group["version"], "rewards": [float(x) for x in rewards],
                 "mean_reward": float(r.mean())},
        "best": best,
    }


# --- inside the sandbox -----------------------------------------------------------------------
def _compile(source: str) -> types.CodeType:
    """The objective's code object. A sandboxed worker offers a cache (``__worldrt_compile__``) so a source
    compiled for every rollout is compiled once per worker; its top level still runs fresh every time."""
    code: types.CodeType = globals().get("__worldrt_compile__", compile)(source, "<objective>", "exec")
    return code


def evaluate(objective_source: str, params: dict, seed: int) -> float:
    """objective(params, seed) in a fresh namespace, with ``random`` and ``numpy.random`` seeded by ``seed``."""
    namespace: dict = {"__name__": "__objective__"}
    exec(_compile(objective_source), namespace)
    objective = namespace.get("objective")
    if not callable(objective):
        raise NameError("objective_code must define objective(params, seed)")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    value = objective(params, seed)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"objective must return a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"objective returned {value}; it must be finite")
    return value


def check() -> bool:
    """The objective's code runs and defines objective()."""
    namespace: dict = {"__name__": "__objective__"}
    exec(_compile(_OBJECTIVE_SOURCE or ""), namespace)
    if not callable(namespace.get("objective")):
        raise NameError("objective_code must define objective(params, seed)")
    return True


def rollout(params: dict, seed: int) -> float:
    return evaluate(_OBJECTIVE_SOURCE or "", params, seed)


def step(state: dict, t: int) -> dict:
    """Re-execute step ``t`` from the state after step t-1: evaluate its group, then update."""
    if state.get("version") != STATE_VERSION or state.get("t") != t - 1:
        raise ValueError(f"expected a {STATE_VERSION} state after step {t - 1}")
    group = state["queue"][0]
    rewards = [evaluate(_OBJECTIVE_SOURCE or "", params_of(state["space"], a), group["task_seed"])
               for a in group["actions"]]
    return advance(state, rewards)
