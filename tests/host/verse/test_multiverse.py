"""The multiverse ledger: payoffs conserved by push_down and pull_up (hypothesis), every refusal, the
orchestration flow push_down -> resolve -> pull_up, and the MODEs that choose the observed outcome."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worldrt.host.registry import Registry
from worldrt.host.verse import (
    ORCHESTRATE_MODES,
    Multiverse,
    MultiverseError,
    Partition,
    pick,
)

pytestmark = pytest.mark.pure

_names = itertools.count()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    reg = Registry.open(tmp_path_factory.mktemp("mv") / "w.duckdb")
    yield reg
    reg.close()


def fresh(registry: Registry, outcomes: set[str], balances: dict[str, float]) -> Multiverse:
    return Multiverse.create(registry, f"m{next(_names)}", outcomes, balances)


def same(a: float, b: float) -> bool:
    # Balances are DOUBLE: x taken from one verse and added to another is conserved up to rounding.
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# the invariant -----------------------------------------------------------------------------------

OUTCOMES = [f"o{i}" for i in range(7)]
OWNERS = ["alice", "bob", "carol"]
money = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def payoffs(mv: Multiverse, data: st.DataObject) -> dict[tuple[str, str], float]:
    table = mv.payoffs()
    owner, outcome = data.draw(st.sampled_from(sorted(table)))
    assert same(mv.payoff(owner, outcome), table[(owner, outcome)])
    return table


def assert_unchanged(before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert same(value, after[key]), (key, value, after[key])


def draw_partition(data: st.DataObject, outcomes: frozenset[str]) -> list[set[str]]:
    """A random partition: each outcome assigned to one of k children, empty children dropped."""
    k = data.draw(st.integers(1, len(outcomes)))
    labels = data.draw(st.lists(st.integers(0, k - 1), min_size=len(outcomes), max_size=len(outcomes)))
    children: dict[int, set[str]] = {}
    for outcome, label in zip(sorted(outcomes), labels):
        children.setdefault(label, set()).add(outcome)
    return list(children.values())


def draw_amount(data: st.DataObject, most: float) -> float | None:
    if most <= 0:
        return None
    return data.draw(st.floats(min_value=0, max_value=most, exclude_min=True))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_payoffs_are_unchanged_by_push_down_and_pull_up(registry: Registry, data: st.DataObject) -> None:
    outcomes = data.draw(st.sets(st.sampled_from(OUTCOMES), min_size=1, max_size=5))
    opening = data.draw(st.dictionaries(st.sampled_from(OWNERS), money, min_size=1))
    mv = fresh(registry, outcomes, opening)
    partitions: list[Partition] = []
    for _ in range(data.draw(st.integers(1, 6))):
        owner = data.draw(st.sampled_from(OWNERS))
        if not partitions or data.draw(st.booleans()):
            verse = data.draw(st.sampled_from(mv.verses()))
            partitions.append(mv.partition(verse, draw_partition(data, verse.outcomes)))
        part = data.draw(st.sampled_from(partitions))
        before = payoffs(mv, data)
        if data.draw(st.booleans()):
            x = draw_amount(data, mv.balance(owner, part.parent))
            if x is None:
                continue
            mv.push_down(owner, part.parent, part, x)
        else:
            x = draw_amount(data, min(mv.balance(owner, c) for c in part.children))
            if x is None:
                continue
            mv.pull_up(owner, part, x)
        assert_unchanged(before, payoffs(mv, data))
        assert all(row["amount"] >= 0 for row in mv.balances())

    observed = data.draw(st.sampled_from(sorted(outcomes)))
    mv.resolve(observed)
    # after resolution: pull up the survivors, innermost first; the observed outcome's payoffs stay put
    for part in reversed(partitions):
        before = payoffs(mv, data)
        assert {o for _, o in before} == {observed}
        for owner in OWNERS:
            if mv.verse(part.parent).alive:
                mv.pull_up_all(owner, part)
            else:
                with pytest.raises(MultiverseError, match="dead verse"):
                    mv.pull_up(owner, part, 1.0)
        assert_unchanged(before, payoffs(mv, data))


# the orchestration flow ----------------------------------------------------------------------------

def test_push_down_resolve_pull_up_returns_the_survivor_to_the_root(tmp_path: Path) -> None:
    reg = Registry.open(tmp_path / "w.duckdb")
    mv = Multiverse.create(reg, "1069", {"b0", "b1", "b2"}, {"alice": 100.0, "bob": 30.0})
    part = mv.partition(mv.root, [{"b0"}, {"b1"}, {"b2"}])
    mv.push_down("alice", mv.root, part, 60.0)
    assert mv.balance("alice", mv.root) == 40.0
    assert [mv.balance("alice", {b}) for b in ("b0", "b1", "b2")] == [60.0, 60.0, 60.0]
    assert [mv.payoff("alice", b) for b in ("b0", "b1", "b2")] == [100.0, 100.0, 100.0]
    assert mv.payoffs() == {(w, b): v for w, v in (("alice", 100.0), ("bob", 30.0)) for b in ("b0", "b1", "b2")}

    died = mv.resolve("b1")
    assert sorted(v.outcomes for v in died) == [frozenset({"b0"}), frozenset({"b2"})]
    assert [v.outcomes for v in mv.survivors(part)] == [frozenset({"b1"})]
    assert mv.observed == "b1" and mv.root.alive
    assert mv.pull_up_all("alice", part) == 60.0
    assert mv.pull_up_all("bob", part) == 0.0
    assert mv.balance("alice", mv.root) == 100.0 and mv.balance("alice", {"b1"}) == 0.0
    assert mv.payoff("alice", "b1") == 100.0 and mv.payoff("bob", "b1") == 30.0
    assert mv.payoffs() == {("alice", "b1"): 100.0, ("bob", "b1"): 30.0}
    # the dead verses keep their rows (for the record) but count for nothing
    assert mv.balance("alice", {"b0"}) == 60.0 and not mv.verse({"b0"}).alive
    assert [m["kind"] for m in mv.history()] == ["create", "partition", "push_down", "resolve", "pull_up"]
    reg.close()

    again = Registry.open(tmp_path / "w.duckdb")
    reopened = Multiverse.open(again, "1069")
    assert reopened.observed == "b1" and reopened.payoff("alice", "b1") == 100.0
    assert [p.key for p in reopened.partitions()] == [part.key]
    again.close()


def test_partitioning_the_same_way_twice_gives_the_same_partition(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b", "c"}, {"alice": 1.0})
    first = mv.partition(mv.root, [{"a"}, {"b", "c"}])
    assert mv.partition(mv.root.key, [{"c", "b"}, {"a"}]) == first
    assert len(mv.partitions()) == 1


def test_a_verse_is_its_outcomes_whichever_partition_made_it(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b", "c"}, {"alice": 10.0})
    coarse = mv.partition(mv.root, [{"a"}, {"b", "c"}])
    fine = mv.partition(mv.root, [{"a"}, {"b"}, {"c"}])
    assert coarse.children[0] == fine.children[0]
    mv.push_down("alice", mv.root, coarse, 4.0)
    mv.push_down("alice", mv.root, fine, 1.0)
    assert mv.balance("alice", {"a"}) == 5.0
    assert {o: mv.payoff("alice", o) for o in "abc"} == {"a": 10.0, "b": 10.0, "c": 10.0}


def test_the_trivial_partition_is_a_partition_and_moves_nothing(registry: Registry) -> None:
    mv = fresh(registry, {"a"}, {"alice": 5.0})
    part = mv.partition(mv.root, [{"a"}])
    mv.push_down("alice", mv.root, part, 5.0)
    assert mv.balance("alice", mv.root) == 5.0 and mv.payoff("alice", "a") == 5.0


# refusals ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("children", "message"), [
    ([{"a"}, {"a", "b"}, {"c"}], "outcome 'a' is in child 0 and in child 1; children must be disjoint"),
    ([{"a"}, {"b"}], r"not a partition: \{c\} of verse \{a, b, c\} is in no child"),
    ([{"a", "b", "c", "d"}], r"child 0 has \{d\}, which verse \{a, b, c\} does not contain"),
    ([{"a", "b", "c"}, set()], "child 1 is empty"),
    ([], "a partition needs a list of one or more children"),
    ("abc", "a partition needs a list of one or more children"),
    ([{"a", "b"}, "c"], "child 1 must be a collection of outcome names"),
])
def test_a_non_partition_is_refused(registry: Registry, children: list[set[str]], message: str) -> None:
    mv = fresh(registry, {"a", "b", "c"}, {"alice": 1.0})
    with pytest.raises(MultiverseError, match=message):
        mv.partition(mv.root, children)
    assert mv.partitions() == [] and len(mv.verses()) == 1


@pytest.mark.parametrize("amount", [-1.0, 0.0, math.nan, math.inf, True, "5"])
def test_push_down_and_pull_up_refuse_amounts_that_are_not_positive(registry: Registry, amount: object) -> None:
    mv = fresh(registry, {"a", "b"}, {"alice": 10.0})
    part = mv.partition(mv.root, [{"a"}, {"b"}])
    with pytest.raises(MultiverseError, match="amount must be a positive finite number"):
        mv.push_down("alice", mv.root, part, amount)  # type: ignore[arg-type]
    with pytest.raises(MultiverseError, match="amount must be a positive finite number"):
        mv.pull_up("alice", part, amount)  # type: ignore[arg-type]
    assert mv.balance("alice", mv.root) == 10.0


def test_push_down_refuses_insufficient_funds(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b"}, {"alice": 10.0})
    part = mv.partition(mv.root, [{"a"}, {"b"}])
    with pytest.raises(MultiverseError, match=r"insufficient funds: alice holds 10 in verse \{a, b\}, "
                                              r"cannot push down 10.5"):
        mv.push_down("alice", mv.root, part, 10.5)
    with pytest.raises(MultiverseError, match="insufficient funds: mallory holds 0"):
        mv.push_down("mallory", mv.root, part, 1.0)
    assert mv.balances() == [{"verse_key": mv.root.key, "outcomes": ["a", "b"], "alive": True,
                              "owner": "alice", "amount": 10.0}]


def test_pull_up_refuses_when_any_child_would_go_negative_and_moves_nothing(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b", "c"}, {"alice": 10.0})
    coarse = mv.partition(mv.root, [{"a"}, {"b", "c"}])
    fine = mv.partition(mv.root, [{"a"}, {"b"}, {"c"}])
    mv.push_down("alice", mv.root, coarse, 6.0)
    mv.push_down("alice", mv.root, fine, 2.0)   # {a}: 8, {b}: 2, {c}: 2, {b, c}: 6, root: 2
    before = mv.balances()
    with pytest.raises(MultiverseError, match=r"alice holds 2 in verse \{b\}, cannot pull up 3"):
        mv.pull_up("alice", fine, 3.0)
    assert mv.balances() == before
    mv.pull_up("alice", fine, 2.0)
    assert mv.balance("alice", mv.root) == 4.0 and mv.balance("alice", {"a"}) == 6.0


def test_the_ledger_itself_refuses_a_negative_balance(registry: Registry) -> None:
    """The CHECK on mv_balances: a move that would overdraw any balance is refused whole."""
    mv = fresh(registry, {"a", "b"}, {"alice": 1.0})
    part = mv.partition(mv.root, [{"a"}, {"b"}])
    with pytest.raises(MultiverseError, match="would go negative"):
        mv._move("alice", [(part.children[0], 5.0), (mv.root.key, -2.0)])
    assert mv.balance("alice", mv.root) == 1.0 and mv.balance("alice", {"a"}) == 0.0


def test_pulling_up_from_a_dead_verse_is_refused(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b", "c", "d"}, {"alice": 10.0})
    top = mv.partition(mv.root, [{"a", "b"}, {"c", "d"}])
    mv.push_down("alice", mv.root, top, 10.0)
    inner = mv.partition({"c", "d"}, [{"c"}, {"d"}])
    mv.push_down("alice", {"c", "d"}, inner, 4.0)
    mv.resolve("a")
    with pytest.raises(MultiverseError, match=r"cannot pull up from dead verse \{c, d\}: it excludes the observed "
                                              r"outcome 'a'"):
        mv.pull_up("alice", inner, 4.0)
    assert mv.pull_up_all("alice", inner) == 0.0
    assert mv.pull_up_all("alice", top) == 10.0
    assert mv.payoff("alice", "a") == 10.0


def test_after_resolution_only_pull_up_remains(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b"}, {"alice": 10.0})
    part = mv.partition(mv.root, [{"a"}, {"b"}])
    mv.resolve("a")
    assert mv.resolve("a") == []  # the same observation again changes nothing
    with pytest.raises(MultiverseError, match="already resolved to 'a'"):
        mv.resolve("b")
    with pytest.raises(MultiverseError, match="resolved to 'a'; it can no longer push down"):
        mv.push_down("alice", mv.root, part, 1.0)
    with pytest.raises(MultiverseError, match="resolved to 'a'; it can no longer be partitioned"):
        mv.partition(mv.root, [{"a", "b"}])
    with pytest.raises(MultiverseError, match="outcome 'b' can no longer happen"):
        mv.payoff("alice", "b")


def test_unknown_outcomes_partitions_and_verses_are_refused(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b"}, {"alice": 10.0})
    with pytest.raises(MultiverseError, match=r"'z' is not an outcome of multiverse .*; its outcomes are \{a, b\}"):
        mv.resolve("z")
    with pytest.raises(MultiverseError, match="'z' is not an outcome"):
        mv.payoff("alice", "z")
    forged = Partition(f"{mv.name}/p-forged", mv.root.key, (mv.root.key, mv.root.key))
    with pytest.raises(MultiverseError, match="no partition .*p-forged.*; make one with partition()"):
        mv.push_down("alice", mv.root, forged, 1.0)
    with pytest.raises(MultiverseError, match=r"no verse .*\[\"z\"\]"):
        mv.balance("alice", {"z"})
    other = fresh(registry, {"a", "b"}, {"alice": 10.0})
    theirs = other.partition(other.root, [{"a"}, {"b"}])
    with pytest.raises(MultiverseError, match="no partition"):
        mv.pull_up("alice", theirs, 1.0)
    sub = mv.partition(mv.root, [{"a"}, {"b"}])
    with pytest.raises(MultiverseError, match="partitions verse .*, not"):
        mv.push_down("alice", {"a"}, sub, 1.0)


@pytest.mark.parametrize(("name", "outcomes", "balances", "message"), [
    ("has/slash", {"a"}, {}, "must be letters, digits"),
    ("", {"a"}, {}, "must be letters, digits"),
    ("ok", set(), {}, "the root verse is empty"),
    ("ok", "ab", {}, "must be a collection of outcome names"),
    ("ok", {"a", ""}, {}, "outcome '' is not a non-empty string"),
    ("ok", {"a"}, {"alice": -1.0}, "opening balance of alice must be a finite number >= 0"),
    ("ok", {"a"}, {"alice": math.nan}, "opening balance of alice"),
    ("ok", {"a"}, {"alice": "5"}, "opening balance of alice must be a finite number >= 0, not '5'"),
    ("ok", {"a"}, {"": 5.0}, "owner '' is not a non-empty string"),
])
def test_create_refuses_bad_input(registry: Registry, name: str, outcomes: set[str], balances: dict[str, float],
                                  message: str) -> None:
    with pytest.raises(MultiverseError, match=message):
        Multiverse.create(registry, name, outcomes, balances)


def test_names_are_unique_and_open_needs_one_that_exists(registry: Registry) -> None:
    mv = fresh(registry, {"a"}, {})
    with pytest.raises(MultiverseError, match="exists already; open it or choose another name"):
        Multiverse.create(registry, mv.name, {"a"})
    with pytest.raises(MultiverseError, match="no multiverse named 'never'"):
        Multiverse.open(registry, "never")


# choosing the observed outcome ----------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "values", "expected"), [
    ("optimal", {"b0": 1.0, "b1": 7.5, "b2": 3.0}, "b1"),
    ("optimal", {"b0": 2.0, "b1": 2.0}, "b0"),                         # ties: smallest name
    ("optimal", {"b0": -3.0, "b1": -1.0}, "b1"),
    ("robust", {"b0": 1.0, "b1": 100.0, "b2": 3.0}, "b2"),             # the outlier does not decide
    ("robust", {"b0": 1.0, "b1": 100.0, "b2": 3.0, "b3": 4.0}, "b2"),  # lower median of 1, 3, 4, 100
    ("robust", {"b0": 5.0}, "b0"),
    ("robust", {"b2": 3.0, "b1": 3.0, "b0": 9.0}, "b1"),
    ("pessimistic", {"b0": 1.0, "b1": 7.5, "b2": -3.0}, "b2"),
])
def test_pick(mode: str, values: dict[str, float], expected: str) -> None:
    assert pick(mode, values) == expected


def test_every_mode_is_documented_and_picks_a_branch() -> None:
    assert {"optimal", "robust"} <= set(ORCHESTRATE_MODES)
    for mode, doc in ORCHESTRATE_MODES.items():
        assert doc
        assert pick(mode, {"x": 1.0, "y": 2.0, "z": 3.0}) in {"x", "y", "z"}


@pytest.mark.parametrize(("mode", "values", "message"), [
    ("greedy", {"b0": 1.0}, "unknown mode 'greedy'; modes: optimal, robust, pessimistic"),
    ("optimal", {}, "no branch values to pick from"),
    ("robust", {"b0": math.nan}, "branch 'b0' has value nan, which is not a number"),
    ("optimal", {"b0": "high"}, "branch 'b0' has value 'high'"),
])
def test_pick_refuses(mode: str, values: dict[str, float], message: str) -> None:
    with pytest.raises(MultiverseError, match=message):
        pick(mode, values)


def test_create_recovers_from_a_create_that_did_not_finish(registry: Registry) -> None:
    mv = fresh(registry, {"a", "b"}, {"alice": 3.0})
    registry.execute("DELETE FROM mv_multiverses WHERE name = ?", [mv.name])  # as if it stopped before its last write
    again = Multiverse.create(registry, mv.name, {"a", "c"}, {"bob": 1.0})
    assert again.root.outcomes == frozenset({"a", "c"})
    assert [(r["owner"], r["amount"]) for r in again.balances()] == [("bob", 1.0)]
