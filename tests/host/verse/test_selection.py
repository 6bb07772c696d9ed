"""Provider selection: the seed's select-provider branch by branch, the presets, substitution, GF(3)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from worldrt import errors as err
from worldrt.host.verse import (
    PRESETS,
    ROLES,
    VERIFY_MODES,
    SelectionError,
    abilities,
    balanced,
    candidates,
    choose,
    gf3_sum,
    preset,
    select_provider,
)
from worldrt.providers import CATALOG, ProviderOptions
from worldrt.v1 import pb

pytestmark = pytest.mark.pure

FULL = {"primary": "morph", "optimizer": "primeintellect", "verifier": "gensyn", "gf3_sum": 0}
MORPH = {"primary": "morph", "trit": 1}
PRIME = {"primary": "primeintellect", "trit": 0}
GENSYN = {"primary": "gensyn", "trit": -1}


@pytest.mark.parametrize(("requirements", "expected"), [
    ({"parallel": True, "optimize": True, "verify": True}, FULL),
    # branching is tested before optimization and verification
    ({"parallel": True, "optimize": True, "verify": False}, MORPH),
    ({"parallel": True, "optimize": False, "verify": True}, MORPH),
    ({"parallel": True}, MORPH),
    ({"parallel": False, "optimize": True, "verify": True}, PRIME),
    ({"optimize": True}, PRIME),
    ({"verify": True}, GENSYN),
    ({"parallel": False, "optimize": False, "verify": True}, GENSYN),
    ({"parallel": False, "optimize": False, "verify": False}, MORPH),
    ({}, MORPH),
])
def test_select_provider_is_the_seeds_cond(requirements: dict[str, bool], expected: dict[str, object]) -> None:
    assert select_provider(requirements) == expected


@pytest.mark.parametrize(("requirements", "message"), [
    ({"paralel": True}, "unknown requirement(s) paralel"),
    ({"verify": "yes"}, "requirement verify must be true or false"),
    ({"optimize": 1}, "requirement optimize must be true or false"),
])
def test_select_provider_refuses_what_it_cannot_read(requirements: dict[str, object], message: str) -> None:
    with pytest.raises(SelectionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_provider(requirements)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "roles"), [
    ("full", [("brancher", "morph"), ("baseline", "modal"), ("optimizer", "primeintellect"),
              ("verifier", "gensyn"), ("attester", "ritual")]),
    ("branch", [("brancher", "morph"), ("verifier", "gensyn")]),
    ("inference", [("executor", "modal"), ("optimizer", "primeintellect"), ("attester", "ritual")]),
])
def test_presets_in_pipeline_order_and_balanced(name: str, roles: list[tuple[str, str]]) -> None:
    assert list(preset(name).items()) == roles
    chosen = choose(name, lambda p: True)
    assert [(c.role, c.provider) for c in chosen.choices] == roles
    assert not any(c.substituted for c in chosen.choices)
    assert chosen.gf3_sum == 0 and chosen.balanced
    assert chosen.trits == [CATALOG[p].trit for _, p in roles]
    assert chosen.as_dict()["providers"] == [p for _, p in roles]


def test_full_preset_uses_all_five_providers() -> None:
    assert sorted(preset("full").values()) == sorted(CATALOG)


def test_preset_returns_a_copy() -> None:
    preset("branch")["brancher"] = "modal"
    assert PRESETS["branch"]["brancher"] == "morph"


def test_every_preset_provider_can_do_its_role() -> None:
    for roles in PRESETS.values():
        for role, provider in roles.items():
            assert provider in candidates(role), (role, provider)


@pytest.mark.parametrize(("role", "expected"), [
    ("brancher", ["morph"]),               # modal cannot branch or merge
    ("baseline", ["morph", "modal"]),
    ("executor", ["morph", "modal"]),
    ("optimizer", ["primeintellect"]),
    ("verifier", ["gensyn"]),              # ritual verifies attestations only
    ("attester", ["ritual"]),              # gensyn neither executes nor verifies attestations
])
def test_candidates_follow_catalog_role_and_abilities(role: str, expected: list[str]) -> None:
    assert candidates(role) == expected
    for provider in expected:
        assert CATALOG[provider].role == ROLES[role].catalog_role


@pytest.mark.parametrize(("name", "down", "expected"), [
    ("full", {"modal"}, {"baseline": "morph"}),
    ("inference", {"modal"}, {"executor": "morph"}),
])
def test_an_unhealthy_provider_is_replaced_by_one_of_its_role(name: str, down: set[str],
                                                              expected: dict[str, str]) -> None:
    chosen = choose(name, lambda p: p not in down)
    assert not set(chosen.providers) & down
    for role, provider in expected.items():
        assert chosen.by_role[role] == provider
        assert next(c for c in chosen.choices if c.role == role).substituted
    # a substitute has the same catalog role, hence the same trit: the pipeline still balances
    assert chosen.balanced and chosen.gf3_sum == 0
    assert chosen.distinct_providers == list(dict.fromkeys(chosen.providers))


@pytest.mark.parametrize(("name", "down", "role", "provider", "message"), [
    ("branch", {"morph"}, "brancher", "morph", "no other generator serves start, snapshot, branch"),
    ("full", {"morph"}, "brancher", "morph", "no other generator serves"),
    ("full", {"modal", "morph"}, "brancher", "morph", "morph, which is not healthy"),
    ("full", {"gensyn"}, "verifier", "gensyn", "no other validator serves verify:REFEREE"),
    ("inference", {"modal", "morph"}, "executor", "modal", "morph not healthy either"),
    ("inference", {"ritual"}, "attester", "ritual", "no other validator serves execute, verify:ATTESTATION"),
    ("inference", {"primeintellect"}, "optimizer", "primeintellect", "no other coordinator serves optimize"),
])
def test_no_healthy_substitute_is_a_clear_error(name: str, down: set[str], role: str, provider: str,
                                                message: str) -> None:
    with pytest.raises(SelectionError, match=message) as info:
        choose(name, lambda p: p not in down)
    assert (info.value.role, info.value.provider) == (role, provider)
    assert f"role {role}" in str(info.value) and "\n" not in str(info.value)


def test_health_is_asked_once_per_provider() -> None:
    asked: list[str] = []

    def healthy(provider: str) -> bool:
        asked.append(provider)
        return provider != "modal"

    choose("full", healthy)
    assert sorted(asked) == sorted(set(asked))


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(SelectionError, match="unknown preset 'fast'; choose one of full, branch, inference"):
        choose("fast", lambda p: True)


@pytest.mark.parametrize(("providers", "total"), [
    (["gensyn", "primeintellect", "morph"], 0),
    (["ritual", "primeintellect", "modal"], 0),
    (["ritual", "gensyn", "modal", "morph", "primeintellect"], 0),
    (["morph", "modal"], -1),          # 2 ≡ -1 (mod 3)
    (["morph", "modal", "morph"], 0),  # 3 ≡ 0
    (["gensyn", "ritual"], 1),         # -2 ≡ 1
    (["morph"], 1),
    ([], 0),
])
def test_gf3_sum_and_balance(providers: list[str], total: int) -> None:
    assert gf3_sum(providers) == total
    assert balanced(providers) is (total == 0)


def test_gf3_sum_with_other_trits_and_unknown_provider() -> None:
    assert gf3_sum(["morph", "gensyn"], {"morph": 1, "gensyn": 0}) == 1
    with pytest.raises(SelectionError, match="unknown provider 'nobody'"):
        gf3_sum(["morph", "nobody"])


def test_verify_modes_match_the_validators(tmp_path: Path) -> None:
    """Each validator answers the Verify modes that VERIFY_MODES does not give it with UNIMPLEMENTED."""
    from worldrt.providers.gensyn import GensynProvider
    from worldrt.providers.ritual import RitualProvider

    gensyn = GensynProvider(ProviderOptions(state_dir=tmp_path / "g"))
    ritual = RitualProvider(ProviderOptions(state_dir=tmp_path / "r"))
    assert tuple(gensyn.capability_items()["modes"]) == VERIFY_MODES["gensyn"]
    for provider in (gensyn, ritual):
        for mode in ("REFEREE", "SPOT_CHECK", "ATTESTATION"):
            if mode in VERIFY_MODES[provider.provider_id]:
                assert f"verify:{mode}" in abilities(provider.provider_id)
                continue
            assert f"verify:{mode}" not in abilities(provider.provider_id)
            with pytest.raises(err.Unimplemented):
                asyncio.run(provider.verify(pb.VerifyRequest(mode=getattr(pb, mode)), None))  # type: ignore[arg-type]
