"""Provider selection: the seed's ``select-provider``, the pipeline presets, and substitution of unhealthy
providers by another provider of the same catalog role that can do the same job.

A preset names, in pipeline order, the *pipeline roles* it fills (brancher, baseline, optimizer, ...) and
the provider it prefers for each. A pipeline role states what its provider must be able to do: a catalog
role (generator, coordinator, validator; it fixes the trit, so a substitute never changes a pipeline's
GF(3) sum) and the operations the pipeline calls on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worldrt.errors import FailedPrecondition
from worldrt.providers import CATALOG


class SelectionError(FailedPrecondition):
    """No provider can be selected: an unknown preset or requirement, or an unhealthy provider without a
    healthy substitute."""

    def __init__(self, message: str, *, role: str | None = None, provider: str | None = None) -> None:
        super().__init__(message)
        self.role = role
        self.provider = provider


# GF(3) ------------------------------------------------------------------------------------------------

def gf3_sum(providers: Iterable[str], trits: Mapping[str, int] | None = None) -> int:
    """The providers' trits summed in GF(3), as the balanced representative -1, 0 or +1.

    ``trits`` defaults to the catalog's; pass the registry's to check against what the registry says.
    """
    table = trits if trits is not None else {p: info.trit for p, info in CATALOG.items()}
    total = 0
    for provider in providers:
        if provider not in table:
            raise SelectionError(f"unknown provider {provider!r}; known: {', '.join(table)}", provider=provider)
        total += table[provider]
    return (total + 1) % 3 - 1


def balanced(providers: Iterable[str], trits: Mapping[str, int] | None = None) -> bool:
    """True when the providers' trits sum to 0 in GF(3)."""
    return gf3_sum(providers, trits) == 0


# the seed's select-provider -------------------------------------------------------------------------

REQUIREMENTS = ("parallel", "optimize", "verify")


def _trit(provider: str) -> int:
    return CATALOG[provider].trit


def select_provider(requirements: Mapping[str, bool]) -> dict[str, Any]:
    """The seed's ``select-provider``: ``{parallel, optimize, verify}`` (absent means false) to the seed's map.

    The branches are tried in the seed's order, so branching wins over optimization and verification
    unless all three are asked for.
    """
    unknown = sorted(set(requirements) - set(REQUIREMENTS))
    if unknown:
        raise SelectionError(f"unknown requirement(s) {', '.join(unknown)}; use {', '.join(REQUIREMENTS)}")
    for name, value in requirements.items():
        if not isinstance(value, bool):
            raise SelectionError(f"requirement {name} must be true or false, not {value!r}")
    needs_branching = requirements.get("parallel", False)
    needs_training = requirements.get("optimize", False)
    needs_verification = requirements.get("verify", False)
    if needs_branching and needs_training and needs_verification:
        return {"primary": "morph", "optimizer": "primeintellect", "verifier": "gensyn",
                "gf3_sum": gf3_sum(["morph", "primeintellect", "gensyn"])}
    if needs_branching:
        return {"primary": "morph", "trit": _trit("morph")}
    if needs_training:
        return {"primary": "primeintellect", "trit": _trit("primeintellect")}
    if needs_verification:
        return {"primary": "gensyn", "trit": _trit("gensyn")}
    return {"primary": "morph", "trit": _trit("morph")}


# pipeline roles and presets -------------------------------------------------------------------------

# The catalog lists operations, not Verify's modes, and the two validators serve disjoint modes: each
# answers the other's with UNIMPLEMENTED (providers/gensyn/_provider.py, providers/ritual/_provider.py).
VERIFY_MODES: dict[str, tuple[str, ...]] = {"gensyn": ("REFEREE", "SPOT_CHECK"), "ritual": ("ATTESTATION",)}


def abilities(provider: str) -> frozenset[str]:
    """What a provider can do: its catalog operations, plus ``verify:MODE`` for each Verify mode it serves."""
    info = CATALOG[provider]
    return frozenset(info.operations) | {f"verify:{mode}" for mode in VERIFY_MODES.get(provider, ())}


@dataclass(frozen=True)
class Role:
    """A job in a pipeline: the catalog role its provider must have and the abilities it must serve."""

    name: str
    catalog_role: str
    requires: tuple[str, ...]
    job: str


ROLES: dict[str, Role] = {r.name: r for r in (
    Role("brancher", "generator", ("start", "snapshot", "branch", "execute", "merge"),
         "starts the verse, snapshots it, branches it and merges the branches by the oracle"),
    Role("baseline", "generator", ("start", "execute"), "runs the unbranched baseline strategy"),
    Role("executor", "generator", ("start", "execute"), "executes the verse's program"),
    Role("optimizer", "coordinator", ("optimize",), "optimizes each branch's strategy"),
    Role("verifier", "validator", ("verify:REFEREE",), "verifies each optimization by refereed replay"),
    Role("attester", "validator", ("execute", "verify:ATTESTATION"), "attests the winner's result"),
)}

# role -> preferred provider, in pipeline order.
PRESETS: dict[str, dict[str, str]] = {
    "full": {"brancher": "morph", "baseline": "modal", "optimizer": "primeintellect", "verifier": "gensyn",
             "attester": "ritual"},
    "branch": {"brancher": "morph", "verifier": "gensyn"},
    "inference": {"executor": "modal", "optimizer": "primeintellect", "attester": "ritual"},
}


def preset(name: str) -> dict[str, str]:
    """The preset's pipeline roles and preferred providers, in pipeline order (a copy)."""
    if name not in PRESETS:
        raise SelectionError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def candidates(role: str) -> list[str]:
    """Every provider that can fill ``role``, in catalog order."""
    if role not in ROLES:
        raise SelectionError(f"unknown role {role!r}; roles: {', '.join(ROLES)}", role=role)
    spec = ROLES[role]
    return [p for p, info in CATALOG.items()
            if info.role == spec.catalog_role and set(spec.requires) <= abilities(p)]


@dataclass(frozen=True)
class Choice:
    role: str
    provider: str
    preferred: str

    @property
    def substituted(self) -> bool:
        return self.provider != self.preferred


@dataclass(frozen=True)
class Selection:
    """The providers chosen for a preset: one per pipeline role, in pipeline order (a provider may fill
    two roles when it substitutes for another)."""

    preset: str
    choices: tuple[Choice, ...]

    @property
    def by_role(self) -> dict[str, str]:
        return {c.role: c.provider for c in self.choices}

    @property
    def providers(self) -> list[str]:
        return [c.provider for c in self.choices]

    @property
    def distinct_providers(self) -> list[str]:
        return list(dict.fromkeys(self.providers))

    @property
    def trits(self) -> list[int]:
        return [_trit(p) for p in self.providers]

    @property
    def gf3_sum(self) -> int:
        return gf3_sum(self.providers)

    @property
    def balanced(self) -> bool:
        return self.gf3_sum == 0

    def as_dict(self) -> dict[str, Any]:
        return {"preset": self.preset,
                "roles": [{"role": c.role, "provider": c.provider, "trit": _trit(c.provider),
                           "preferred": c.preferred, "substituted": c.substituted} for c in self.choices],
                "providers": self.providers, "trits": self.trits, "gf3_sum": self.gf3_sum,
                "balanced": self.balanced}


def choose(preset_name: str, healthy: Callable[[str], bool]) -> Selection:
    """Fill each role of the preset with its preferred provider if healthy, else with the first healthy
    provider (catalog order) that can do the role's job; ``healthy`` is asked at most once per provider."""
    roles = preset(preset_name)
    seen: dict[str, bool] = {}

    def is_healthy(provider: str) -> bool:
        if provider not in seen:
            seen[provider] = bool(healthy(provider))
        return seen[provider]

    choices = []
    for role, preferred in roles.items():
        if is_healthy(preferred):
            choices.append(Choice(role, preferred, preferred))
            continue
        others = [p for p in candidates(role) if p != preferred]
        substitute = next((p for p in others if is_healthy(p)), None)
        if substitute is None:
            spec = ROLES[role]
            tried = f"; {', '.join(others)} not healthy either" if others else \
                f"; no other {spec.catalog_role} serves {', '.join(spec.requires)}"
            raise SelectionError(f"preset {preset_name}: role {role} needs {preferred}, which is not healthy"
                                 f"{tried}. Start it (worldrt provider serve {preferred}) or pick another preset",
                                 role=role, provider=preferred)
        choices.append(Choice(role, substitute, preferred))
    return Selection(preset_name, tuple(choices))
