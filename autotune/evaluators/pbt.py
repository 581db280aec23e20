"""Population-Based: later rounds warm-start from the best checkpoints of earlier rounds.

Round 0 trains from scratch.  In each later round the finished trials of all earlier rounds that
left a checkpoint are ranked by the run metric (``mode``), the top fraction (default the top half,
at least one) become parents, and new trials are assigned to them round-robin, best first.  Each
spec also lists the other top parents, in rank order, as fall-backs for a checkpoint that turns out
missing or corrupt when the child starts.  With ``keep_checkpoints`` set, top trials whose checkpoints
were deleted leave the pool (the pool is the top fraction, limited to the checkpoints kept).
"""

from __future__ import annotations

import math
from typing import Sequence

from ..records import COMPLETED, ParentRef, TrialRecord
from .base import Evaluator


class PopulationBasedEvaluator(Evaluator):
    name = "pbt"

    def ranked_parents(self, earlier: Sequence[TrialRecord]) -> list[ParentRef]:
        """The parent pool: best first, ties broken by the older trial."""
        usable = [r for r in earlier if r.status == COMPLETED and r.checkpoint and r.value is not None]
        sign = -1.0 if self.mode == "max" else 1.0
        usable.sort(key=lambda r: (sign * float(r.value), r.trial_id))  # type: ignore[arg-type]
        k = max(1, math.ceil(self.top_fraction * len(usable))) if usable else 0
        return [
            ParentRef(trial_id=r.trial_id, checkpoint=r.checkpoint, step=r.checkpoint_step,
                      hash=r.checkpoint_hash, value=r.value)  # type: ignore[arg-type]
            for r in usable[:k] if not r.checkpoint_removed
        ]

    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        pool = self.ranked_parents(earlier) if round > 0 else []
        if not pool:
            return [() for _ in range(n)]
        k = len(pool)
        return [tuple(pool[(i + j) % k] for j in range(k)) for i in range(n)]
