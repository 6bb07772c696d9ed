"""The sandbox program an Optimize run's workers execute and its claims are verified with: the GRPO core's
source (``_grpo.py``, read as text: the daemon that only needs the text never imports numpy) followed by the
objective."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def grpo_source() -> str:
    """The GRPO core every program begins with (a prelude a worker pool can compile once)."""
    return Path(__file__).with_name("_grpo.py").read_text(encoding="utf-8")


def program_for(objective_code: str) -> str:
    """The sandbox program: the GRPO core with the objective bound; defines rollout() and step()."""
    return f"{grpo_source()}\n_OBJECTIVE_SOURCE = {objective_code!r}\n"
