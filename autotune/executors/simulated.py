"""A simulated executor with a fake clock: ``slots`` trials at a time, learning curves from a trial model.

For tests and benchmarks of scheduling: nothing trains and no process starts, yet trials start, report,
run side by side and end in the order their simulated durations say, so busy fractions, resume and
Population-Based lineage can be checked on thousands of trials and slots in seconds.

A trial model is ``model(config, budget, parent) -> SimTrial``: the metric after each unit of training
(its learning curve) and the trial's duration in simulated seconds.  ``parent`` is the
:class:`~autotune.records.ParentRef` a Population-Based trial warm-starts from (None from scratch),
so a model can continue the parent's curve.  A curve ending in None or NaN is a failed trial.  A
trial's checkpoint is a name in the run folder (nothing is written), so lineage works as on a real run.

Continue in place: the ``slots`` are workers.  With ``keep_states`` > 0 the simulated trials keep their
live state (as a trial calling ``trial.keep`` would): each worker holds the last ``keep_states`` completed
trials' states, trials are placed by the Ray pool's rule (:func:`~autotune.executors.pool.choose_worker`),
and a child placed on the worker that holds its parent's state continues in place: it skips the
``load_s`` seconds every other trial spends loading its data and checkpoint before its first step, and
its outcome says ``in_place``.  A stopped trial's worker is replaced (as on Ray): its states are lost.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from ..events import ExecutorEvent, TrialFinished, TrialReported, TrialStarted
from ..records import ParentRef, TrialOutcome, TrialSpec
from ..statuses import COMPLETED, FAILED, STOPPED, FailureKind
from .base import Executor
from .pool import choose_worker, planned_parent


@dataclass(frozen=True)
class SimTrial:
    """What a simulated trial does: its metric after each step, and how long it takes in all."""

    curve: tuple[float | None, ...]
    duration: float


TrialModel = Callable[[dict[str, Any], "float | None", "ParentRef | None"], SimTrial]


@dataclass
class FakeClock:
    """Simulated seconds; only the simulated executor moves it."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass(order=True)
class _Event:
    at: float
    seq: int
    kind: str = field(compare=False)  # "report" or "end"
    trial_id: int = field(compare=False)
    step: int = field(compare=False, default=0)
    value: float | None = field(compare=False, default=None)


@dataclass
class _Running:
    spec: TrialSpec
    started: float
    sim: SimTrial
    reports: list[dict[str, Any]] = field(default_factory=list)
    worker: int = 0
    in_place: bool = False


class SimulatedExecutor(Executor):
    """``slots`` parallel workers on a fake clock; ``poll`` jumps the clock to the next event."""

    def now(self) -> float:
        return self.clock.now

    def __init__(self, model: TrialModel, slots: int = 2, clock: FakeClock | None = None, load_s: float = 0.0,
                 keep_states: int = 0) -> None:
        """``load_s``: simulated seconds a trial loads before its first step (none for a child in place);
        ``keep_states``: live states each worker keeps (0: trials do not keep any, nothing runs in place)."""
        self.model = model
        self._slots = int(slots)
        self.clock = clock or FakeClock()
        self.load_s = float(load_s)
        self.keep_states = max(0, int(keep_states))
        self._free: list[int] = list(range(self._slots))  # idle workers, longest idle first
        self._kept: dict[int, deque[int]] = {w: deque(maxlen=self.keep_states) for w in range(self._slots)}
        self._queue: deque[TrialSpec] = deque()
        self._running: dict[int, _Running] = {}
        self._events: list[_Event] = []
        self._seq = 0
        self._pending: list[ExecutorEvent] = []
        self.busy_s = 0.0  # simulated trial-seconds run so far
        self.first_start: float | None = None
        self.last_end: float | None = None
        self.started: list[int] = []  # trial ids in the order they started (tests, benchmarks)
        self.workers: dict[int, int] = {}  # trial id -> the worker it ran on (tests, benchmarks)

    @property
    def slots(self) -> int:
        return self._slots

    @property
    def active(self) -> int:
        """Queued, running, and ended but not yet returned by ``poll`` (a trial stopped just now)."""
        return len(self._queue) + len(self._running) + sum(isinstance(e, TrialFinished) for e in self._pending)

    def warm(self) -> set[int]:
        return {t for w in self._free for t in self._kept[w]}

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)
        self._start_queued()

    def _push(self, at: float, kind: str, trial_id: int, step: int = 0, value: float | None = None) -> None:
        heapq.heappush(self._events, _Event(at, self._seq, kind, trial_id, step, value))
        self._seq += 1

    def _start_queued(self) -> None:
        while self._queue and self._free:
            spec = self._queue.popleft()
            wanted = {p for s in self._queue if (p := planned_parent(s)) is not None}
            worker = choose_worker(spec, self._free, self._kept, wanted)
            self._free.remove(worker)
            parent = planned_parent(spec)
            in_place = parent is not None and parent in self._kept[worker]
            if in_place:
                self._kept[worker].remove(parent)  # handed out once
            sim = self.model(dict(spec.config), spec.budget, spec.parent)
            now = self.clock.now
            self.first_start = now if self.first_start is None else self.first_start
            self._running[spec.trial_id] = _Running(spec, now, sim, worker=worker, in_place=in_place)
            self.started.append(spec.trial_id)
            self.workers[spec.trial_id] = worker
            self._pending.append(TrialStarted(spec.trial_id, now, node="simulated"))
            start_step = (spec.parent.step or 0) if spec.parent else 0
            begin = now if in_place else now + self.load_s
            n = max(1, len(sim.curve))
            for i, value in enumerate(sim.curve):
                self._push(begin + sim.duration * (i + 1) / n, "report", spec.trial_id, start_step + i + 1, value)
            self._push(begin + sim.duration, "end", spec.trial_id)

    def poll(self, timeout: float | None = None) -> list[ExecutorEvent]:
        """The next event (a report or a trial's end; the clock jumps there), after any not yet returned.
        One at a time, so that a trial stopped at a report stops at that moment of simulated time."""
        out, self._pending = self._pending, []
        while self._events and not out:
            ev = heapq.heappop(self._events)
            run = self._running.get(ev.trial_id)
            if run is None:
                continue  # stopped earlier
            self.clock.now = max(self.clock.now, ev.at)
            if ev.kind == "report":
                if ev.value is None or not math.isfinite(ev.value):
                    continue  # a failing trial reports nothing usable
                run.reports.append({"step": ev.step, "metrics": {self.metric: ev.value}})
                out.append(TrialReported(ev.trial_id, ev.step, {self.metric: ev.value}, ev.at))
                continue
            out.append(TrialFinished(self._finish(run, COMPLETED)))
            self._start_queued()
            out += self._pending
            self._pending = []
        return out

    def _finish(self, run: _Running, status: str, reason: str | None = None) -> TrialOutcome:
        del self._running[run.spec.trial_id]
        self._free.append(run.worker)
        now = self.clock.now
        self.busy_s += now - run.started
        self.last_end = now
        spec, last = run.spec, (run.sim.curve[-1] if run.sim.curve else None)
        ok = status == COMPLETED and last is not None and math.isfinite(last)
        kind = FailureKind.of(None, status)
        if status == COMPLETED and not ok:
            status, kind, reason = FAILED, FailureKind.NOT_FINITE, "the simulated trial failed"
        step = run.reports[-1]["step"] if run.reports else None
        checkpoint = f"{spec.trial_dir}/checkpoint" if step is not None else None
        parent = spec.parent
        kept = ok and self.keep_states > 0
        if kept:
            self._kept[run.worker].append(spec.trial_id)
        elif status == STOPPED:
            self._kept[run.worker].clear()  # a stopped trial's worker is killed and replaced
        return TrialOutcome(
            trial_id=spec.trial_id, status=status, kind=kind, reason=reason, value=float(last) if ok else None,  # type: ignore[arg-type]
            reports=list(run.reports), checkpoint=checkpoint, checkpoint_step=step,
            checkpoint_hash=hashlib.sha256(checkpoint.encode()).hexdigest() if checkpoint else None,
            parent_id=parent.trial_id if parent else None, parent_checkpoint=parent.checkpoint if parent else None,
            parent_step=parent.step if parent else None, parent_hash=parent.hash if parent else None,
            started=run.started, ended=now, node="simulated", in_place=run.in_place, kept_state=kept,
        )

    def stop_trial(self, trial_id: int) -> bool:
        run = self._running.get(trial_id)
        if run is None:
            return False
        self._pending.append(TrialFinished(self._finish(run, STOPPED, "stopped by the search")))
        self._start_queued()
        return True

    def stop(self) -> list[int]:
        stopped = list(self._running)
        for run in self._running.values():
            self._kept[run.worker].clear()
            self._free.append(run.worker)
        self._running.clear()
        self._queue.clear()
        self._events.clear()
        return stopped

    def busy_fraction(self) -> float:
        """Trial-seconds run / (slots x (last end - first start)): 1.0 means no slot ever idled."""
        if self.first_start is None or self.last_end is None or self.last_end <= self.first_start:
            return 0.0
        return self.busy_s / (self._slots * (self.last_end - self.first_start))

    def describe(self) -> str:
        return f"simulated, {self._slots} slots"
