"""Full-Trial: every trial fine-tunes a fresh model with its proposal for the full budget."""

from __future__ import annotations

from typing import Sequence

from ..records import TrialRecord
from .base import Evaluator


class FullTrialEvaluator(Evaluator):
    name = "full"

    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        return [() for _ in range(n)]
