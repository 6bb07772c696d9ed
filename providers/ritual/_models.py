"""Registered models: small fixed-weight MLPs, each identified by name and by the digest of its weights."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from worldrt.providers import canonical_json, digest

# The program's source (providers/ritual/_mlp.py), beside this module.
_MLP_SOURCE = Path(__file__).with_name("_mlp.py")


def _weights(layers: list[int], seed: int) -> dict[str, list[Any]]:
    """Weights from a 64-bit LCG (portable, unlike a library generator), scaled by 1/sqrt(fan-in)."""
    state = seed

    def uniform() -> float:
        nonlocal state
        state = (state * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        return (state >> 11) / float(1 << 53) * 2.0 - 1.0

    weights: dict[str, list[Any]] = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(layers)):
        scale = 1.7 / fan_in ** 0.5
        weights[f"W{i}"] = [[round(uniform() * scale, 6) for _ in range(fan_in)] for _ in range(fan_out)]
        weights[f"b{i}"] = [round(uniform() * 0.1, 6) for _ in range(fan_out)]
    return weights


@dataclass(frozen=True)
class Model:
    name: str
    description: str
    layers: tuple[int, ...]
    seed: int

    @cached_property
    def spec(self) -> dict[str, Any]:
        return {"kind": "numpy-mlp", "name": self.name, "layers": list(self.layers), "activation": "tanh",
                "output": "softmax", "weights": _weights(list(self.layers), self.seed)}

    @cached_property
    def model_hash(self) -> str:
        """The digest of the model's spec: its architecture and every weight."""
        return digest(self.spec)

    @cached_property
    def program(self) -> str:
        # Read, never imported: the model runs in a sandbox, and the daemon has no use for numpy.
        source = _MLP_SOURCE.read_text(encoding="utf-8")
        return f"{source}\nimport json as _json\n_SPEC = _json.loads({canonical_json(self.spec)!r})\n"

    def describe(self) -> dict[str, Any]:
        return {"model_hash": self.model_hash, "description": self.description, "layers": list(self.layers),
                "input": f"list of {self.layers[0]} numbers",
                "output": {"probs": f"{self.layers[-1]} class probabilities", "label": "argmax class",
                           "sample": "class drawn with the seed"}}


MODELS: dict[str, Model] = {m.name: m for m in (
    Model("mlp-tiny", "fixed-weight MLP 4-16-3, tanh hidden layer, softmax output", (4, 16, 3), 20240501),
    Model("mlp-small", "fixed-weight MLP 8-32-32-4, tanh hidden layers, softmax output", (8, 32, 32, 4), 20240502),
)}


def python_model_hash(code: str) -> str:
    """The model hash of inference code: the digest of {"kind": "python", "source": code}."""
    return digest({"kind": "python", "source": code})


def by_hash(model_hash: str) -> Model | None:
    return next((m for m in MODELS.values() if m.model_hash == model_hash), None)
