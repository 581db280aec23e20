"""A simulated executor with a fake clock: ``slots`` trials at a time, durations and results from a model.

For tests and benchmarks of scheduling: nothing trains and no time passes, yet trials start, run
side by side and end in the order their simulated durations say, so busy fractions, resume and
Population-Based lineage can be checked on thousands of trials in seconds.  ``model(spec)`` returns
``(duration_s, value)``; ``value=None`` (or NaN) is a failed trial.  A trial's checkpoint is a name
in the run folder (nothing is written), so Population-Based specs and lineage work as on a real run.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..records import COMPLETED, FAILED, TrialOutcome, TrialSpec
from .base import Executor

SimModel = Callable[[TrialSpec], "tuple[float, float | None]"]


@dataclass
class FakeClock:
    """Simulated seconds; only the simulated executor moves it."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(order=True)
class _Running:
    ends: float
    seq: int
    spec: TrialSpec = field(compare=False)
    started: float = field(compare=False)
    value: float | None = field(compare=False)


class SimulatedExecutor(Executor):
    """``slots`` parallel workers on a fake clock; ``poll`` jumps the clock to the next trial end."""

    def __init__(self, model: SimModel, slots: int = 2, clock: FakeClock | None = None,
                 metric_steps: int = 1) -> None:
        self.model = model
        self._slots = int(slots)
        self.clock = clock or FakeClock()
        self.metric_steps = metric_steps
        self._queue: deque[TrialSpec] = deque()
        self._running: list[_Running] = []
        self._seq = 0
        self.busy_s = 0.0  # simulated trial-seconds run so far
        self.first_start: float | None = None
        self.last_end: float | None = None

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def active(self) -> int:
        return len(self._queue) + len(self._running)

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)
        self._start_queued()

    def _start_queued(self) -> None:
        while self._queue and len(self._running) < self._slots:
            spec = self._queue.popleft()
            duration, value = self.model(spec)
            now = self.clock.now
            self.first_start = now if self.first_start is None else self.first_start
            heapq.heappush(self._running, _Running(now + float(duration), self._seq, spec, now, value))
            self._seq += 1

    def poll(self, timeout: float | None = None) -> list[TrialOutcome]:
        """The trials that end next (all that end at the same simulated moment)."""
        if not self._running:
            return []
        first = heapq.heappop(self._running)
        ended = [first]
        while self._running and self._running[0].ends <= first.ends:
            ended.append(heapq.heappop(self._running))
        self.clock.now = max(self.clock.now, first.ends)
        self.last_end = self.clock.now
        out = [self._outcome(r) for r in ended]
        self._start_queued()
        return out

    def _outcome(self, r: _Running) -> TrialOutcome:
        self.busy_s += r.ends - r.started
        spec, ok = r.spec, r.value is not None and math.isfinite(r.value)
        parent = spec.parent
        start_step = (parent.step or 0) if parent else 0
        step = start_step + self.metric_steps
        checkpoint = f"{spec.trial_dir}/checkpoint"
        return TrialOutcome(
            trial_id=spec.trial_id,
            status=COMPLETED if ok else FAILED,
            reason=None if ok else "the simulated trial failed",
            value=float(r.value) if ok else None,  # type: ignore[arg-type]
            reports=[{"step": step, "metrics": {self.metric: r.value}}] if ok else [],
            checkpoint=checkpoint if ok else None,
            checkpoint_step=step if ok else None,
            checkpoint_hash=hashlib.sha256(checkpoint.encode()).hexdigest() if ok else None,
            parent_id=parent.trial_id if parent else None,
            parent_checkpoint=parent.checkpoint if parent else None,
            parent_step=parent.step if parent else None,
            parent_hash=parent.hash if parent else None,
            started=r.started,
            ended=r.ends,
            node="simulated",
        )

    def stop(self) -> list[int]:
        stopped = [r.spec.trial_id for r in self._running]
        self._running.clear()
        self._queue.clear()
        return stopped

    def busy_fraction(self) -> float:
        """Trial-seconds run / (slots x (last end - first start)): 1.0 means no slot ever idled."""
        if self.first_start is None or self.last_end is None or self.last_end <= self.first_start:
            return 0.0
        return self.busy_s / (self._slots * (self.last_end - self.first_start))

    def describe(self) -> str:
        return f"simulated, {self._slots} slots"
