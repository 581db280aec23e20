"""Ranking finished trials by the run metric: the best trial, the sampler's loss, a live leaderboard.

Readers (``show``, the dashboard, :class:`~autotune.results.Result`) and the driver share these rules,
so "best" means the same everywhere: completed trials with a finite value, ties to the older trial.
The :class:`Leaderboard` keeps that order as trials finish one by one, so the driver and the
Population-Based evaluator never re-sort the whole history per trial.
"""

from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence, TypeVar

from .records import COMPLETED, TrialRecord, TrialTally

#: a record, or the tally of one (the runs list ranks those)
Ranked = TypeVar("Ranked", TrialRecord, TrialTally)


def loss_of(record: TrialRecord | TrialTally, mode: str) -> float | None:
    """What the sampler minimises: the metric, sign-flipped for ``max``; None for a failed trial."""
    if record.status != COMPLETED or record.value is None or not math.isfinite(record.value):
        return None
    return -float(record.value) if mode == "max" else float(record.value)


def best_record(records: Sequence[Ranked], mode: str) -> Ranked | None:
    """The best completed trial; ties go to the earlier trial."""
    scored = [(loss, r.trial_id, r) for r in records if (loss := loss_of(r, mode)) is not None]
    return min(scored, key=lambda t: (t[0], t[1]))[2] if scored else None


class Leaderboard:
    """Scored trials, best first, kept sorted as they arrive (binary search per insertion).

    ``admit``: which records belong (for example, those with a checkpoint).  ``seen`` counts every
    record ever admitted, also after :meth:`discard` (a parent pool's top fraction is a fraction of
    all of them, while only the ones whose checkpoints still exist stay on the board).
    """

    def __init__(self, mode: str, admit: Callable[[TrialRecord], bool] | None = None) -> None:
        self.mode = mode
        self.admit = admit or (lambda r: True)
        self._keys: list[tuple[float, int]] = []
        self._records: dict[int, TrialRecord] = {}
        self.seen = 0

    def add(self, record: TrialRecord) -> bool:
        """Rank a finished trial; False when it is not scored or not admitted."""
        loss = loss_of(record, self.mode)
        if loss is None or record.trial_id in self._records or not self.admit(record):
            return False
        bisect.insort(self._keys, (loss, record.trial_id))
        self._records[record.trial_id] = record
        self.seen += 1
        return True

    def discard(self, trial_id: int) -> None:
        record = self._records.pop(trial_id, None)
        if record is not None:
            loss = loss_of(record, self.mode)
            i = bisect.bisect_left(self._keys, (loss, trial_id))
            del self._keys[i]

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, trial_id: int) -> bool:
        return trial_id in self._records

    def at(self, rank: int) -> TrialRecord:
        """The trial at ``rank`` (0 is the best)."""
        return self._records[self._keys[rank][1]]

    def best(self) -> TrialRecord | None:
        return self.at(0) if self._keys else None

    def rank_of(self, trial_id: int) -> int | None:
        record = self._records.get(trial_id)
        if record is None:
            return None
        return bisect.bisect_left(self._keys, (loss_of(record, self.mode), trial_id))
