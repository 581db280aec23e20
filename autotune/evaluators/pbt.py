"""Population-Based: later rounds warm-start from the best checkpoints of earlier rounds.

Round 0 trains from scratch.  In each later round the finished trials of all earlier rounds that
left a checkpoint are ranked by the run metric (``mode``), the top fraction (default the top half,
at least one) become parents, and new trials are assigned to them round-robin, best first.  Each
spec also lists the other top parents, in rank order, as fall-backs for a checkpoint that turns out
missing or corrupt when the child starts.  With ``keep_checkpoints`` set, top trials whose checkpoints
were deleted leave the pool (the pool is the top fraction, limited to the checkpoints kept).

Asynchronously (``plan_next``), the first ``popsize`` trials train from scratch and each later trial
picks its parent when it starts, from the top fraction of the trials finished at that moment, in
turn by its ordinal; its generation is its parent's plus one (the lineage depth).
"""

from __future__ import annotations

import math
from typing import Sequence

from ..ranking import Leaderboard
from ..records import COMPLETED, ParentRef, TrialRecord
from .base import MAX_FALLBACKS, Evaluator


class PopulationBasedEvaluator(Evaluator):
    name = "pbt"

    @staticmethod
    def can_parent(record: TrialRecord) -> bool:
        """Admission to the parent pool (with a :class:`Leaderboard`, which also asks for a score)."""
        return record.status == COMPLETED and bool(record.checkpoint) and not record.checkpoint_removed

    @staticmethod
    def _ref(r: TrialRecord) -> ParentRef:
        return ParentRef(trial_id=r.trial_id, checkpoint=r.checkpoint, step=r.checkpoint_step,  # type: ignore[arg-type]
                         hash=r.checkpoint_hash, value=r.value)

    def _next_parents(self, ordinal: int, popsize: int, pool: Leaderboard) -> tuple[tuple[ParentRef, ...], int]:
        k = min(len(pool), max(1, math.ceil(self.top_fraction * pool.seen))) if len(pool) else 0
        if ordinal < popsize or k == 0:
            return (), 0
        first = ordinal % k
        chosen = [pool.at((first + j) % k) for j in range(min(k, 1 + MAX_FALLBACKS))]
        return tuple(self._ref(r) for r in chosen), chosen[0].round + 1

    def ranked_parents(self, earlier: Sequence[TrialRecord]) -> list[ParentRef]:
        """The parent pool: best first, ties broken by the older trial."""
        usable = [r for r in earlier if r.status == COMPLETED and r.checkpoint and r.value is not None]
        sign = -1.0 if self.mode == "max" else 1.0
        usable.sort(key=lambda r: (sign * float(r.value), r.trial_id))  # type: ignore[arg-type]
        k = max(1, math.ceil(self.top_fraction * len(usable))) if usable else 0
        return [self._ref(r) for r in usable[:k] if not r.checkpoint_removed]

    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        pool = self.ranked_parents(earlier) if round > 0 else []
        if not pool:
            return [() for _ in range(n)]
        k = len(pool)
        return [tuple(pool[(i + j) % k] for j in range(k)) for i in range(n)]
