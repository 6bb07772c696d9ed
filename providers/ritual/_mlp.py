"""A fixed-weight multilayer perceptron: the program of every registered model.

Self-contained (numpy and the standard library only): its source, followed by ``_SPEC = ...`` (the
model's layers and weights), is the program that runs a registered model inside a sandbox.
"""

from __future__ import annotations

import math

import numpy as np

_SPEC: dict | None = None  # replaced by the model's spec when this file is shipped as a program


def forward(spec: dict, x: np.ndarray) -> np.ndarray:
    h = x
    layers = len(spec["layers"]) - 1
    for i in range(layers):
        w = np.array(spec["weights"][f"W{i}"], dtype=np.float64)
        b = np.array(spec["weights"][f"b{i}"], dtype=np.float64)
        h = w @ h + b
        if i < layers - 1:
            h = np.tanh(h)
    return h


def infer(input: list, seed: int) -> dict:
    """Class probabilities of ``input``, the most likely class, and one class drawn with ``seed``."""
    spec = _SPEC or {}
    width = spec["layers"][0]
    if (not isinstance(input, list) or len(input) != width
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in input)):
        raise ValueError(f"{spec['name']} takes a list of {width} finite numbers")
    z = forward(spec, np.array(input, dtype=np.float64))
    e = np.exp(z - float(z.max()))
    probs = e / float(e.sum())
    rng = np.random.Generator(np.random.PCG64(seed))
    drawn = int(np.searchsorted(np.cumsum(probs), rng.random(), side="right"))
    return {"probs": probs.tolist(), "label": int(np.argmax(probs)), "sample": min(drawn, len(probs) - 1)}
