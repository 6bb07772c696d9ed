// The verse's world as Python source, sent into the generator instance: the same text as the Python
// explorer's market.py SOURCE (a test checks they are equal), so both explorers score the same market.
export const SOURCE = `
import math
import random

def make_market(seed, steps=252, start=100.0):
    rng = random.Random(seed)
    prices = [start]
    regime = rng.choice(("trend", "revert"))
    drift = rng.uniform(-0.002, 0.002)
    anchor = start
    for _ in range(steps):
        if rng.random() < 0.03:
            regime = "revert" if regime == "trend" else "trend"
            drift = rng.uniform(-0.002, 0.002)
            anchor = prices[-1]
        price = prices[-1]
        shock = rng.gauss(0.0, 0.012)
        step = drift + shock if regime == "trend" else 0.08 * math.log(anchor / price) + shock
        prices.append(price * math.exp(step))
    return prices

def _mean(xs):
    return sum(xs) / len(xs)

def hold(prices, t):
    return 1

def ma_cross(prices, t, fast=5, slow=20):
    if t + 1 < max(fast, slow):
        return 0
    return 1 if _mean(prices[t + 1 - fast:t + 1]) > _mean(prices[t + 1 - slow:t + 1]) else 0

def mean_revert(prices, t, window=20, z=1.0):
    if t + 1 < window:
        return 0
    window_prices = prices[t + 1 - window:t + 1]
    mean = _mean(window_prices)
    sd = math.sqrt(_mean([(p - mean) ** 2 for p in window_prices])) or 1e-12
    score = (prices[t] - mean) / sd
    return 1 if score < -z else (0 if score > 0 else None)

def breakout(prices, t, window=20):
    if t < window:
        return 0
    past = prices[t - window:t]
    if prices[t] > max(past):
        return 1
    if prices[t] < min(past):
        return 0
    return None

RULES = {"hold": hold, "ma_cross": ma_cross, "mean_revert": mean_revert, "breakout": breakout}

def start_state(cash=1000.0):
    return {"cash": cash, "units": 0.0, "position": 0, "trades": 0, "equity": cash}

def trade_step(prices, rule, params, fee_bps, state, t):
    """Decide at step t from the prices seen so far, trade at prices[t], mark to prices[t + 1]."""
    state = dict(state)
    wanted = RULES[rule](prices, t, **params)
    fee = fee_bps / 10_000
    if wanted is not None and wanted != state["position"]:
        if wanted == 1:
            state["units"], state["cash"] = state["cash"] * (1 - fee) / prices[t], 0.0
        else:
            state["cash"], state["units"] = state["units"] * prices[t] * (1 - fee), 0.0
        state["position"], state["trades"] = wanted, state["trades"] + 1
    state["equity"] = state["cash"] + state["units"] * prices[t + 1]
    return state

def backtest(prices, rule, params=None, cash=1000.0, fee_bps=5.0):
    """Trade \`\`rule\`\` over \`\`prices\`\`: a signal of 1 is long, 0 flat, None keeps the position."""
    params = params or {}
    state = start_state(cash)
    for t in range(len(prices) - 1):
        state = trade_step(prices, rule, params, fee_bps, state, t)
    return {"rule": rule, "params": params, "profit": round(state["equity"] - cash, 6),
            "trades": state["trades"], "final_equity": round(state["equity"], 6)}

def _digest(obj):
    import hashlib, json
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

def trajectory_claim(prices, rule, params, fee_bps=5.0, every=16, cash=1000.0):
    """What this process claims about its backtest: the digest of the state before and after each
    step, and every \`\`every\`\`-th state, so a validator can re-execute any step from a nearby one."""
    import json
    state = start_state(cash)
    digests, states = [_digest(state)], {"0": json.dumps(state)}
    for t in range(len(prices) - 1):
        state = trade_step(prices, rule, params, fee_bps, state, t)
        digests.append(_digest(state))
        if (t + 1) % every == 0:
            states[str(t + 1)] = json.dumps(state)
    return {"start_state": start_state(cash), "digests": digests, "states": states,
            "profit": round(state["equity"] - cash, 6)}
`;
