"""What a verification found, before it becomes a VerifyReply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worldrt.providers import canonical_json
from worldrt.v1 import pb


@dataclass
class Outcome:
    verdict: bool
    honest: list[str]
    first_divergent_step: int
    reexecuted_steps: int = 0
    detection_probability: float = 0.0
    proof: dict[str, Any] = field(default_factory=dict)

    def reply(self) -> pb.VerifyReply:
        return pb.VerifyReply(verdict=self.verdict, honest=self.honest, first_divergent_step=self.first_divergent_step,
                              reexecuted_steps=self.reexecuted_steps,
                              detection_probability=self.detection_probability, proof=canonical_json(self.proof))
