"""The verse's world, as the source the explorer sends into its generator instance.

It runs there (plain Python 3, standard library only), so it is kept as text. ``make_market(seed)`` is a
seeded price path: regimes that trend or revert to an anchor switch at random, so which trading rule wins
depends on the verse. ``backtest(prices, rule, params)`` trades one rule over that path (long or flat,
deciding each step from the prices seen so far, paying a fee per trade) and returns its profit.
"""

SOURCE = r'''
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
    if t + 1 < slow:
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

def backtest(prices, rule, params=None, cash=1000.0, fee_bps=5.0):
    """Trade ``rule`` over ``prices``: a signal of 1 is long, 0 flat, None keeps the position."""
    decide = RULES[rule]
    params = params or {}
    fee = fee_bps / 10_000
    initial = cash
    units, position, trades, equity = 0.0, 0, 0, cash
    for t in range(len(prices) - 1):
        wanted = decide(prices, t, **params)
        if wanted is not None and wanted != position:
            if wanted == 1:
                units, cash = cash * (1 - fee) / prices[t], 0.0
            else:
                cash, units = units * prices[t] * (1 - fee), 0.0
            position, trades = wanted, trades + 1
        equity = cash + units * prices[t + 1]
    return {"rule": rule, "params": params, "profit": round(equity - initial, 6), "trades": trades,
            "final_equity": round(equity, 6)}
'''
