"""Evaluators turn a round's candidates into trial specs: config, budget and parent checkpoint.

They plan; they never run anything.  Warm starts are data in the spec (``TrialSpec.parents``), so the
lineage of every trial can be shown and audited from the records alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Sequence

from ..records import TrialRecord, TrialSpec
from ..samplers.base import Candidate


def trial_dir_name(trial_id: int) -> str:
    """Each trial's private folder, relative to the run folder."""
    return f"trials/{trial_id:06d}"


class Evaluator(ABC):
    """Plans the trials of one round."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        budget: float | None = None,
        mode: str = "max",
        timeout: float | None = None,
        fixed: dict[str, Any] | None = None,
        top_fraction: float = 0.5,
    ) -> None:
        self.budget = budget
        self.mode = mode
        self.timeout = timeout
        self.fixed = dict(fixed or {})
        self.top_fraction = top_fraction

    def plan(self, round: int, candidates: Sequence[Candidate], history: Sequence[TrialRecord]) -> list[TrialSpec]:
        """Specs for this round's candidates, given every finished trial of earlier rounds."""
        parents = self._parents(round, len(candidates), [r for r in history if r.round < round])
        return [
            TrialSpec(
                trial_id=c.id,
                round=round,
                config={**self.fixed, **c.config},
                budget=self.budget,
                trial_dir=trial_dir_name(c.id),
                parents=parents[i],
                timeout=self.timeout,
            )
            for i, c in enumerate(candidates)
        ]

    @abstractmethod
    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        """For each of ``n`` new trials, the parent checkpoints to try in order (empty: from scratch)."""
