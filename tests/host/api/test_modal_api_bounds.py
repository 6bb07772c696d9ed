"""The Modal API's own records stay bounded: stdin states past their bound forget the least recently written
(pure: the bound itself), and image records past theirs forget the least recently used (over the wire,
in test_modal_api_guard)."""

from __future__ import annotations

import pytest

from worldrt.host.api.modal._execs import MAX_STDIN_STATES, StdinStates

pytestmark = pytest.mark.pure


def test_stdin_states_keep_the_most_recently_written_up_to_their_bound() -> None:
    states = StdinStates(bound=3)
    for n in range(5):
        states.set(("sb", f"exec-{n}"), 10 * n, False)
    states.set(("sb", "exec-2"), 25, True)  # written again: now the most recent
    states.set(("sb", "exec-5"), 7, False)
    assert len(states) == 3
    assert states.get(("sb", "exec-2")).written == 25 and states.get(("sb", "exec-2")).closed
    assert states.get(("sb", "exec-5")).written == 7
    # The least recently written are forgotten: they answer as a stdin never written.
    assert states.get(("sb", "exec-0")).written == 0 and states.get(("sb", "exec-3")).written == 0
    assert states.get(("sb", "exec-4")).written == 40


def test_a_stdin_state_never_goes_back() -> None:
    states = StdinStates()
    states.set(("sb", "e"), 100, True)
    states.set(("sb", "e"), 40, False)  # a late retry of an earlier write
    assert (states.get(("sb", "e")).written, states.get(("sb", "e")).closed) == (100, True)
    assert states.bound == MAX_STDIN_STATES
