"""A multiverse ledger after Paradigm's Multiverse Finance, kept in the registry's DuckDB file.

A multiverse has a root verse: a set of outcomes. A verse is identified by its set of outcomes; a
partition of a verse is a list of disjoint, non-empty children whose union is the verse. Owners hold
balances per verse. ``push_down`` moves x from an owner's balance in a verse to each child of a partition;
``pull_up`` moves x from each child back to the parent. ``resolve`` observes one outcome: every verse
that excludes it dies with its balances, so a partition's lone surviving child then partitions what is
left of its parent, and ``pull_up`` takes from the live children only.

Conserved (and tested): for every outcome still possible, each owner's payoff, the sum of the owner's
balances over the live verses that contain the outcome. The plain sum of balances is not conserved.

Once resolved, a multiverse only allows ``pull_up`` and reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import duckdb

from worldrt.errors import FailedPrecondition
from worldrt.host.registry import Registry


class MultiverseError(FailedPrecondition):
    """A ledger operation was refused; the message says why and what would be accepted."""




@dataclass(frozen=True)
class Verse:
    key: str
    outcomes: frozenset[str]
    parent: str | None
    alive: bool


@dataclass(frozen=True)
class Partition:
    key: str
    parent: str
    children: tuple[str, ...]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")


def _canonical(outcomes: Iterable[str]) -> str:
    return json.dumps(sorted(outcomes), separators=(",", ":"), ensure_ascii=False)


def _outcome_set(outcomes: Iterable[str], what: str) -> frozenset[str]:
    if isinstance(outcomes, str):
        raise MultiverseError(f"{what} must be a collection of outcome names, not the string {outcomes!r}")
    items = list(outcomes)
    for o in items:
        if not isinstance(o, str) or not o:
            raise MultiverseError(f"{what}: outcome {o!r} is not a non-empty string")
    if not items:
        raise MultiverseError(f"{what} is empty; a verse needs at least one outcome")
    return frozenset(items)


def _amount(amount: float) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) or amount <= 0:
        raise MultiverseError(f"amount must be a positive finite number, not {amount!r}")
    return float(amount)


def _show(outcomes: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(outcomes)) + "}"


class Multiverse:
    """One named multiverse in the registry; make one with ``create`` or reopen it with ``open``."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry = registry
        self.name = name

    # creating and opening ---------------------------------------------------------------------
    @classmethod
    def create(cls, registry: Registry, name: str, outcomes: Iterable[str],
               balances: Mapping[str, float] | None = None) -> Multiverse:
        """A new multiverse whose root verse is ``outcomes``, with each owner's opening balance in it."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise MultiverseError(f"multiverse name {name!r} must be letters, digits and . _ : @ + - "
                                  f"(starting with a letter or digit)")
        root = _outcome_set(outcomes, "the root verse")
        opening = dict(balances or {})
        for owner, amount in opening.items():
            if not isinstance(owner, str) or not owner:
                raise MultiverseError(f"owner {owner!r} is not a non-empty string")
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                    or amount < 0:
                raise MultiverseError(f"opening balance of {owner} must be a finite number >= 0, not {amount!r}")
        if registry.query("SELECT 1 FROM mv_multiverses WHERE name = ?", [name]):
            raise MultiverseError(f"multiverse {name!r} exists already; open it or choose another name")
        mv = cls(registry, name)
        mv._forget_unfinished()
        root_key = mv._key(root)
        registry.execute("INSERT INTO mv_verses (verse_key, multiverse, parent, outcomes) VALUES (?, ?, NULL, ?)",
                         [root_key, name, _canonical(root)])
        if opening:
            registry.execute("INSERT INTO mv_balances VALUES " + ", ".join("(?, ?, ?)" for _ in opening),
                             [x for owner, amount in opening.items() for x in (root_key, owner, float(amount))])
        # Written last: a multiverse exists once its root and opening balances do.
        registry.execute("INSERT INTO mv_multiverses (name, root_key) VALUES (?, ?)", [name, root_key])
        mv._journal("create", verse_key=root_key)
        return mv

    def _forget_unfinished(self) -> None:
        """Remove what a create() of this name that did not finish left behind."""
        prefix = f"{self.name}/"
        if self.registry.query("SELECT 1 FROM mv_verses WHERE multiverse = ? LIMIT 1", [self.name]):
            self.registry.execute("DELETE FROM mv_balances WHERE starts_with(verse_key, ?)", [prefix])
            self.registry.execute("DELETE FROM mv_verses WHERE multiverse = ?", [self.name])
            self.registry.execute("DELETE FROM mv_partitions WHERE multiverse = ?", [self.name])

    @classmethod
    def open(cls, registry: Registry, name: str) -> Multiverse:
        if not registry.query("SELECT 1 FROM mv_multiverses WHERE name = ?", [name]):
            raise MultiverseError(f"no multiverse named {name!r}; create it first")
        return cls(registry, name)

    # reads --------------------------------------------------------------------------------------
    def _key(self, outcomes: Iterable[str]) -> str:
        # Names have no "/", so keys of different multiverses never collide.
        return f"{self.name}/{_canonical(outcomes)}"

    def _key_of(self, verse: Verse | str | AbstractSet[str]) -> str:
        if isinstance(verse, Verse):
            return verse.key
        if isinstance(verse, str):
            return verse
        return self._key(_outcome_set(verse, "the verse"))

    def _state(self) -> tuple[str, frozenset[str], str | None]:
        """The root's key, the root's outcomes and the observed outcome (None while unresolved)."""
        row = self.registry.query("SELECT m.root_key, v.outcomes, m.observed FROM mv_multiverses m "
                                  "JOIN mv_verses v ON v.verse_key = m.root_key WHERE m.name = ?", [self.name])[0]
        return row["root_key"], frozenset(json.loads(row["outcomes"])), row["observed"]

    @property
    def observed(self) -> str | None:
        """The outcome ``resolve`` observed, or None while unresolved."""
        return self._state()[2]

    @property
    def root(self) -> Verse:
        return self.verse(self._state()[0])

    def _holdings(self, owner: str | None, keys: Sequence[str]) -> list[tuple[Verse, float]]:
        """Each verse of ``keys`` with ``owner``'s balance in it (0 for no owner), in one query."""
        rows = self.registry.query("""
            SELECT v.verse_key, v.outcomes, v.parent, v.alive, coalesce(b.amount, 0) AS amount
            FROM mv_verses v LEFT JOIN mv_balances b ON b.verse_key = v.verse_key AND b.owner = ?
            WHERE v.multiverse = ? AND list_contains(?, v.verse_key)""", [owner, self.name, list(keys)])
        found = {r["verse_key"]: (_verse_of(r), float(r["amount"])) for r in rows}
        for key in keys:
            if key not in found:
                raise MultiverseError(f"no verse {key!r} in multiverse {self.name!r}")
        return [found[k] for k in keys]

    def verse(self, verse: Verse | str | AbstractSet[str]) -> Verse:
        """The current state of a verse, given the verse, its key or its set of outcomes."""
        return self._holdings(None, [self._key_of(verse)])[0][0]

    def verses(self, *, alive_only: bool = False) -> list[Verse]:
        rows = self.registry.query("SELECT verse_key, outcomes, parent, alive FROM mv_verses WHERE multiverse = ? "
                                   + ("AND alive " if alive_only else "") + "ORDER BY created_at, verse_key",
                                   [self.name])
        return [_verse_of(r) for r in rows]

    def balance(self, owner: str, verse: Verse | str | AbstractSet[str]) -> float:
        return self._holdings(owner, [self._key_of(verse)])[0][1]

    def balances(self) -> list[dict[str, Any]]:
        """Every balance: verse key, its outcomes, whether it is alive, owner and amount."""
        rows = self.registry.query("""
            SELECT v.verse_key, v.outcomes, v.alive, b.owner, b.amount
            FROM mv_balances b JOIN mv_verses v USING (verse_key)
            WHERE v.multiverse = ? ORDER BY v.created_at, v.verse_key, b.owner""", [self.name])
        for row in rows:
            row["outcomes"] = json.loads(row["outcomes"])
        return rows

    def _possible(self, outcome: str) -> None:
        _, outcomes, observed = self._state()
        if outcome not in outcomes:
            raise MultiverseError(f"{outcome!r} is not an outcome of multiverse {self.name!r}; "
                                  f"its outcomes are {_show(outcomes)}")
        if observed is not None and outcome != observed:
            raise MultiverseError(f"outcome {outcome!r} can no longer happen: multiverse {self.name!r} "
                                  f"resolved to {observed!r}")

    def payoff(self, owner: str, outcome: str) -> float:
        """What ``owner`` holds if ``outcome`` happens: their balances in the live verses containing it."""
        self._possible(outcome)
        rows = self.registry.query("""
            SELECT coalesce(sum(b.amount), 0) AS payoff
            FROM mv_balances b JOIN mv_verses v USING (verse_key)
            WHERE v.multiverse = ? AND v.alive AND b.owner = ?
              AND list_contains(CAST(v.outcomes AS VARCHAR[]), ?)""", [self.name, owner, outcome])
        return float(rows[0]["payoff"])

    def payoffs(self) -> dict[tuple[str, str], float]:
        """Every owner's payoff in every outcome still possible, as {(owner, outcome): payoff}."""
        _, outcomes, observed = self._state()
        possible = outcomes if observed is None else {observed}
        rows = self.registry.query("""
            SELECT b.owner, o.outcome, sum(b.amount) FILTER (WHERE v.alive) AS payoff
            FROM mv_balances b JOIN mv_verses v USING (verse_key),
                 unnest(CAST(v.outcomes AS VARCHAR[])) AS o(outcome)
            WHERE v.multiverse = ?
            GROUP BY b.owner, o.outcome""", [self.name])
        table = {(r["owner"], o): 0.0 for r in rows for o in possible}
        for r in rows:
            if r["outcome"] in possible:
                table[(r["owner"], r["outcome"])] = float(r["payoff"] or 0.0)
        return table

    def partitions(self) -> list[Partition]:
        rows = self.registry.query("SELECT partition_key, parent, children FROM mv_partitions WHERE multiverse = ? "
                                   "ORDER BY created_at, partition_key", [self.name])
        return [_partition_of(r) for r in rows]

    def stored(self, partition: Partition | str) -> Partition:
        """The partition as recorded by ``partition()``, given it or its key; refused if it was never recorded."""
        key = partition.key if isinstance(partition, Partition) else partition
        rows = self.registry.query("SELECT partition_key, parent, children FROM mv_partitions "
                                   "WHERE partition_key = ? AND multiverse = ?", [key, self.name])
        if not rows:
            raise MultiverseError(f"no partition {key!r} in multiverse {self.name!r}; make one with partition()")
        return _partition_of(rows[0])

    def survivors(self, partition: Partition | str) -> list[Verse]:
        """The partition's live children (after resolution, the lone child containing the observed outcome)."""
        return [v for v, _ in self._holdings(None, self.stored(partition).children) if v.alive]

    def history(self) -> list[dict[str, Any]]:
        return self.registry.query("SELECT kind, owner, verse_key, partition_key, amount, outcome, moved_at "
                                   "FROM mv_moves WHERE multiverse = ? ORDER BY move_id", [self.name])

    # writes -------------------------------------------------------------------------------------
    def _journal(self, kind: str, *, owner: str | None = None, verse_key: str | None = None,
                 partition_key: str | None = None, amount: float | None = None, outcome: str | None = None) -> None:
        self.registry.execute("INSERT INTO mv_moves (multiverse, kind, owner, verse_key, partition_key, amount, "
                              "outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [self.name, kind, owner, verse_key, partition_key, amount, outcome])

    def _unresolved(self, doing: str) -> None:
        observed = self.observed
        if observed is not None:
            raise MultiverseError(f"multiverse {self.name!r} resolved to {observed!r}; it can no longer {doing} "
                                  f"(only pull_up remains)")

    def _move(self, owner: str, deltas: list[tuple[str, float]]) -> None:
        """Apply balance changes in one statement: all of them or, if any balance would go negative, none."""
        merged: dict[str, float] = {}
        for key, delta in deltas:
            merged[key] = merged.get(key, 0.0) + delta
        values = ", ".join("(?, ?, ?)" for _ in merged)
        params = [x for key, delta in merged.items() for x in (key, owner, delta)]
        try:
            self.registry.execute(f"INSERT INTO mv_balances SELECT * FROM (VALUES {values}) "
                                  "ON CONFLICT (verse_key, owner) DO UPDATE SET amount = mv_balances.amount + "
                                  "excluded.amount", params)
        except duckdb.ConstraintException:
            raise MultiverseError(f"refused: a balance of {owner} would go negative (changed concurrently?); "
                                  f"nothing was moved") from None

    def partition(self, verse: Verse | str | AbstractSet[str], children: Sequence[Iterable[str]]) -> Partition:
        """Record a partition of ``verse`` into ``children`` (creating the child verses that do not exist yet).

        Refused unless the children are non-empty, pairwise disjoint and together exactly the verse.
        """
        self._unresolved("be partitioned")
        parent = self.verse(verse)
        if isinstance(children, (str, bytes)) or not children:
            raise MultiverseError("a partition needs a list of one or more children (sets of outcomes)")
        sets = [_outcome_set(c, f"child {i}") for i, c in enumerate(children)]
        seen: dict[str, int] = {}
        for i, child in enumerate(sets):
            outside = child - parent.outcomes
            if outside:
                raise MultiverseError(f"not a partition: child {i} has {_show(outside)}, which verse "
                                      f"{_show(parent.outcomes)} does not contain")
            for o in sorted(child):
                if o in seen:
                    raise MultiverseError(f"not a partition: outcome {o!r} is in child {seen[o]} and in child {i}; "
                                          f"children must be disjoint")
                seen[o] = i
        missing = parent.outcomes - set(seen)
        if missing:
            raise MultiverseError(f"not a partition: {_show(missing)} of verse {_show(parent.outcomes)} "
                                  f"is in no child; the children must cover the verse")
        canonical = json.dumps(sorted(_canonical(c) for c in sets))
        key = f"{self.name}/p-" + hashlib.sha256(f"{parent.key}\n{canonical}".encode()).hexdigest()[:16]
        existing = self.registry.query("SELECT partition_key, parent, children FROM mv_partitions "
                                       "WHERE partition_key = ?", [key])
        if existing:
            return _partition_of(existing[0])
        child_keys = tuple(self._key(c) for c in sets)
        values = ", ".join("(?, ?, ?, ?)" for _ in sets)
        params = [x for c, k in zip(sets, child_keys) for x in (k, self.name, parent.key, _canonical(c))]
        self.registry.execute(f"INSERT INTO mv_verses (verse_key, multiverse, parent, outcomes) VALUES {values} "
                              "ON CONFLICT DO NOTHING", params)
        self.registry.execute("INSERT INTO mv_partitions (partition_key, multiverse, parent, children) "
                              "VALUES (?, ?, ?, ?)", [key, self.name, parent.key, json.dumps(child_keys)])
        self._journal("partition", verse_key=parent.key, partition_key=key)
        return Partition(key, parent.key, child_keys)

    def push_down(self, owner: str, verse: Verse | str | AbstractSet[str], partition: Partition | str,
                  amount: float) -> None:
        """Take ``amount`` from ``owner``'s balance in ``verse`` and add it to each child of ``partition``."""
        x = _amount(amount)
        self._unresolved("push down")
        part = self.stored(partition)
        key = self._key_of(verse)
        if part.parent != key:
            raise MultiverseError(f"partition {part.key} partitions verse {part.parent}, not {key}")
        parent, have = self._holdings(owner, [key])[0]
        if x > have:
            raise MultiverseError(f"insufficient funds: {owner} holds {have:.10g} in verse {_show(parent.outcomes)}, "
                                  f"cannot push down {x:.10g}")
        self._move(owner, [(parent.key, -x)] + [(child, x) for child in part.children])
        self._journal("push_down", owner=owner, verse_key=parent.key, partition_key=part.key, amount=x)

    def resolve(self, observed: str) -> list[Verse]:
        """Observe ``observed``: every verse that excludes it dies with its balances. Returns those verses.

        Resolving again to the same outcome changes nothing; to another outcome is refused.
        """
        _, outcomes, already = self._state()
        if observed not in outcomes:
            raise MultiverseError(f"{observed!r} is not an outcome of multiverse {self.name!r}; "
                                  f"its outcomes are {_show(outcomes)}")
        if already not in (None, observed):
            raise MultiverseError(f"multiverse {self.name!r} already resolved to {already!r}")
        doomed = [v for v in self.verses(alive_only=True) if observed not in v.outcomes]
        if already is None:
            self.registry.execute("UPDATE mv_multiverses SET observed = ?, resolved_at = now() WHERE name = ?",
                                  [observed, self.name])
            self._journal("resolve", outcome=observed)
        # After the multiverse's own row, so that a crash in between is repaired by resolving again.
        if doomed:
            self.registry.execute("UPDATE mv_verses SET alive = false WHERE multiverse = ? "
                                  "AND NOT list_contains(CAST(outcomes AS VARCHAR[]), ?)", [self.name, observed])
        return [Verse(v.key, v.outcomes, v.parent, False) for v in doomed]

    def _pullable(self, owner: str, part: Partition) -> tuple[Verse, list[tuple[Verse, float]]]:
        """The partition's parent and its live children, with ``owner``'s balances."""
        held = self._holdings(owner, [part.parent, *part.children])
        return held[0][0], [(v, amount) for v, amount in held[1:] if v.alive]

    def pull_up(self, owner: str, partition: Partition | str, amount: float) -> None:
        """Take ``amount`` from ``owner``'s balance in every live child of ``partition``; add it to the parent.

        Before resolution every child is alive; after it, only the child containing the observed outcome.
        """
        x = _amount(amount)
        part = self.stored(partition)
        parent, live = self._pullable(owner, part)
        if not parent.alive:
            raise MultiverseError(f"cannot pull up from dead verse {_show(parent.outcomes)}: it excludes the "
                                  f"observed outcome {self.observed!r} and vanished with its balances")
        for child, have in live:
            if x > have:
                raise MultiverseError(f"insufficient funds: {owner} holds {have:.10g} in verse "
                                      f"{_show(child.outcomes)}, cannot pull up {x:.10g}")
        self._move(owner, [(child.key, -x) for child, _ in live] + [(parent.key, x)])
        self._journal("pull_up", owner=owner, verse_key=parent.key, partition_key=part.key, amount=x)

    def pull_up_all(self, owner: str, partition: Partition | str) -> float:
        """Pull up as much as possible (the smallest of the owner's live-child balances); returns the amount.

        Nothing (0) when the partition's parent is dead.
        """
        part = self.stored(partition)
        parent, live = self._pullable(owner, part)
        amount = min((have for _, have in live), default=0.0)
        if not parent.alive or amount <= 0:
            return 0.0
        self.pull_up(owner, part, amount)
        return amount


def _verse_of(row: dict[str, Any]) -> Verse:
    return Verse(row["verse_key"], frozenset(json.loads(row["outcomes"])), row["parent"], row["alive"])


def _partition_of(row: dict[str, Any]) -> Partition:
    return Partition(row["partition_key"], row["parent"], tuple(json.loads(row["children"])))


# choosing the observed outcome -------------------------------------------------------------------------

ORCHESTRATE_MODES: dict[str, str] = {
    "optimal": "the branch with the highest value",
    "robust": "the branch at the median of the branch values (the lower median for an even count), so one "
              "outlying branch, lucky or broken, cannot decide the outcome",
    "pessimistic": "the branch with the lowest value: resolves to the worst world, to see what survives it",
}


def pick(mode: str, values: Mapping[str, float]) -> str:
    """The branch a ``verse orchestrate`` MODE resolves to, from each branch's oracle value.

    Ties go to the smallest branch name, so the choice is deterministic.
    """
    if mode not in ORCHESTRATE_MODES:
        raise MultiverseError(f"unknown mode {mode!r}; modes: {', '.join(ORCHESTRATE_MODES)}")
    if not values:
        raise MultiverseError("no branch values to pick from")
    for branch, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise MultiverseError(f"branch {branch!r} has value {value!r}, which is not a number")
    if mode == "optimal":
        target = max(values.values())
    elif mode == "pessimistic":
        target = min(values.values())
    else:
        target = statistics.median_low(values.values())
    return min(b for b in values if values[b] == target)
