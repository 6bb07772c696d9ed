"""A Verify request read into claims the referee can trust the shape of (InvalidArgument otherwise)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worldrt import errors as err
from worldrt.providers import digest, is_digest, parse_json
from worldrt.v1 import pb


def parse_state(text: str, what: str) -> dict[str, Any]:
    state = parse_json(text, what)
    if not isinstance(state, dict):
        raise err.InvalidArgument(f"{what} must be a JSON object (step() takes and returns a dict)")
    return state


@dataclass
class ClaimView:
    """One claimed trajectory: T+1 digests, and whatever states its claimant supplied."""

    name: str
    digests: list[str]
    states: Mapping[int, str]
    _parsed: dict[int, dict[str, Any]] = field(default_factory=dict)

    def state(self, step: int) -> dict[str, Any] | None:
        """The state this claimant supplied for ``step``, parsed; None when it supplied none."""
        if step not in self.states:
            return None
        if step not in self._parsed:
            self._parsed[step] = parse_state(self.states[step], f"claim {self.name!r} states_json[{step}]")
        return self._parsed[step]


@dataclass
class Dispute:
    program: str
    start_state: dict[str, Any]
    start_digest: str
    steps: int
    claims: list[ClaimView]


def read(request: pb.VerifyRequest, *, max_steps: int, min_claims: int, max_claims: int) -> Dispute:
    if not request.program_code.strip():
        raise err.InvalidArgument("program_code is empty: it must define step(state: dict, t: int) -> dict")
    steps = request.steps
    if steps == 0:
        raise err.InvalidArgument("steps is 0: a trajectory of T = 0 steps has nothing to verify")
    if steps > max_steps:
        raise err.InvalidArgument(f"steps = {steps} is above this daemon's maximum of {max_steps}")
    start = parse_state(request.start_state_json, "start_state_json")
    n = len(request.claims)
    if not min_claims <= n <= max_claims:
        need = f"exactly {min_claims}" if min_claims == max_claims else f"{min_claims} to {max_claims}"
        raise err.InvalidArgument(f"this mode needs {need} claims, got {n}")
    claims: list[ClaimView] = []
    for index, claim in enumerate(request.claims):
        name = claim.claimant or f"claim-{index}"
        if any(c.name == name for c in claims):
            raise err.InvalidArgument(f"two claims are named {name!r}: claimant names must be unique")
        digests = list(claim.step_digests)
        if len(digests) != steps + 1:
            raise err.InvalidArgument(
                f"claim {name!r} has {len(digests)} step digests; steps = {steps} needs {steps + 1} "
                f"(the start state, then one per step): claims must all have the same length")
        bad = next((i for i, d in enumerate(digests) if not is_digest(d)), None)
        if bad is not None:
            raise err.InvalidArgument(f"claim {name!r} step_digests[{bad}] is not 64 lowercase hex characters")
        late = [k for k in claim.states_json if k > steps]
        if late:
            raise err.InvalidArgument(f"claim {name!r} supplies a state for step {late[0]}, beyond steps = {steps}")
        claims.append(ClaimView(name, digests, dict(claim.states_json)))
    return Dispute(request.program_code, start, digest(start), steps, claims)
