"""The Ray executor's worker pool as a pure state machine: no Ray, no processes, an injected clock.

The pool decides; :mod:`autotune.executors.ray_executor` carries out.  Inputs are what the Ray layer
observed (a worker started or failed to start, a trial on a worker returned an outcome or an error, a
worker died with or without its node) plus :meth:`WorkerPool.step` (one turn at the clock's time).
Outputs are commands for the Ray layer (:class:`Spawn`, :class:`Run`, :class:`Kill`, and for early
stopping :class:`Release` and :class:`Prune`), drained with :meth:`WorkerPool.take_commands`, and
executor events, drained with :meth:`WorkerPool.take_events`.  Keeping the decisions here lets every
rule (pool size, start stalls, time limits, node-lost retries, the whole-GPU retry after running out of
memory on a shared GPU, stopping, the verdict deadline and the prune grace) be tested in milliseconds.

Early stopping: a trial's report waits for the rule's verdict on it (:meth:`WorkerPool.reported`).
The verdict (:meth:`WorkerPool.verdict`) releases it at once or prunes the trial; a report still
unjudged ``verdict_wait`` seconds after the pool saw it is released anyway, so a slow driver delays a
trial by at most that long.  A pruned trial that has not ended ``prune_grace`` seconds later (it never
reached another report) is stopped.

Workers are ``STARTING`` (asked of Ray, not yet placed), ``IDLE`` or ``RUNNING`` a trial since a
time.  Pool workers hold ``gpus_per_trial`` and are reused; a whole-GPU worker is spawned for one
trial (reserved while it starts), runs it, and is retired.

Affinity (continue in place): a worker whose trial returned with ``kept_state`` keeps that trial's
live state in its process.  A queued child goes to the idle worker that keeps its planned parent's
state, when that worker is idle (it never waits for it); other trials take the longest-idle worker
that keeps no state a queued child wants.  :func:`choose_worker` is the rule; the simulated executor
uses it too.
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Sequence, Union

from ..errors import ExecutorError
from ..events import ExecutorEvent, TrialFinished, TrialStarted
from ..records import TrialOutcome, TrialSpec
from ..statuses import FAILED, STOPPED, FailureKind
from ..trial import keep_limit

#: how a trial's reason or log tail says that the GPU ran out of memory (PyTorch, CUDA libraries, ROCm)
GPU_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory|"
                     r"CUDA error: out of memory", re.IGNORECASE)
START_FAILURES = 3  # consecutive workers failing to start before the executor gives up
STOPPED_REASON = "stopped by the search"

STARTING, IDLE, RUNNING = "starting", "idle", "running"


@dataclass(frozen=True)
class Spawn:
    """Start worker ``worker`` holding ``gpus`` GPUs (0: none) and the per-trial CPUs and resources."""

    worker: int
    gpus: float


@dataclass(frozen=True)
class Run:
    """Run ``spec`` on the started worker ``worker``."""

    worker: int
    spec: TrialSpec


@dataclass(frozen=True)
class Kill:
    """Kill worker ``worker`` and forget it (and any trial call on it)."""

    worker: int


@dataclass(frozen=True)
class Release:
    """Let the trial go on after its report at ``step`` (the rule's verdict was go on, or its wait is over)."""

    trial_id: int
    step: int


@dataclass(frozen=True)
class Prune:
    """Tell the trial to stop at its report (it answers its waiting report, and every later one, so)."""

    trial_id: int


Command = Union[Spawn, Run, Kill, Release, Prune]


@dataclass
class Worker:
    """One worker as the pool sees it; ``spec`` is its trial (running, or reserved while a whole-GPU
    worker starts)."""

    id: int
    gpus: float
    whole_gpu: bool
    spawned: float
    state: str = STARTING
    node: str | None = None
    spec: TrialSpec | None = None
    attempt: int = 0
    since: float = 0.0
    kept: deque[int] = field(default_factory=lambda: deque(maxlen=keep_limit()))  # trials whose state it keeps


def planned_parent(spec: TrialSpec) -> int | None:
    """The trial id of the parent ``spec`` loads first (its fall-backs load from disk anyway)."""
    return spec.parents[0].trial_id if spec.parents else None


def choose_worker(spec: TrialSpec, idle: Sequence[int], kept: Mapping[int, Collection[int]],
                  wanted: Collection[int] = ()) -> int:
    """The worker to run ``spec`` on, among ``idle`` (longest idle first; not empty).

    ``kept[w]``: the trials whose live state worker ``w``'s process keeps; ``wanted``: the planned parents
    of the other queued trials.  A child goes to the worker keeping its parent's state (it continues in
    place); any other trial to the longest-idle worker keeping no wanted state, else the longest idle."""
    parent = planned_parent(spec)
    if parent is not None:
        for w in idle:
            if parent in kept.get(w, ()):
                return w
    for w in idle:
        if not any(t in wanted for t in kept.get(w, ())):
            return w
    return idle[0]


class WorkerPool:
    """Queue, workers and every decision of the Ray executor, driven by observations and a clock."""

    def __init__(
        self,
        slots: int,
        gpus_per_trial: float = 0.0,
        max_retries: int = 1,
        start_timeout: float = 600.0,
        clock: Callable[[], float] = time.time,
        log_tail: Callable[[TrialSpec], str | None] = lambda spec: None,
        prune_grace: float = 60.0,
        verdict_wait: float = 2.0,
    ) -> None:
        self.slots = slots
        self.prune_grace = prune_grace  # how long a trial told to stop may take to reach its next report
        self.verdict_wait = verdict_wait  # how long a report waits for the rule's verdict before it goes on
        self.gpus_per_trial = gpus_per_trial
        self.max_retries = max_retries
        self.start_timeout = start_timeout
        self.clock = clock
        self.log_tail = log_tail  # a failed trial's log tail (the Ray layer reads the trial's log file)
        self.queue: deque[tuple[TrialSpec, int]] = deque()  # (spec, attempt) waiting for a worker
        self.workers: dict[int, Worker] = {}
        self._idle: list[int] = []  # idle pool workers, longest idle first: it takes the next trial
        self._next_id = 0
        self._start_failures = 0
        self._stalled_since: float | None = None
        self._retry_notes: dict[int, str] = {}
        self._commands: list[Command] = []
        self._events: list[ExecutorEvent] = []
        self._pruning: dict[int, float] = {}  # trial told to stop at its next report -> when it is ended
        self._awaiting: dict[tuple[int, int], float] = {}  # (trial, step) of a report waiting -> its deadline

    # -- views -----------------------------------------------------------------------------------
    @property
    def active(self) -> int:
        """Trials submitted and not finished: queued, running, or waiting for a whole-GPU worker."""
        return len(self.queue) + sum(1 for w in self.workers.values() if w.spec is not None)

    def pool_workers(self) -> list[Worker]:
        """The reused workers (whole-GPU workers excluded)."""
        return [w for w in self.workers.values() if not w.whole_gpu]

    def running(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.state == RUNNING]

    def _whole_gpu_pending(self) -> bool:
        return any(w.whole_gpu and w.state == STARTING for w in self.workers.values())

    # -- outputs ---------------------------------------------------------------------------------
    def take_commands(self) -> list[Command]:
        out, self._commands = self._commands, []
        return out

    def take_events(self) -> list[ExecutorEvent]:
        out, self._events = self._events, []
        return out

    # -- inputs ----------------------------------------------------------------------------------
    def warm(self) -> set[int]:
        """Trials whose live state an idle worker keeps."""
        return {t for w in self._idle for t in self.workers[w].kept}

    def submit(self, spec: TrialSpec) -> None:
        self.queue.append((spec, 1))

    def worker_started(self, wid: int, node: str | None = None) -> None:
        """Ray placed and started worker ``wid`` (on ``node``): it takes a trial, or runs its reserved one."""
        w = self.workers.get(wid)
        if w is None or w.state != STARTING:
            return
        w.node = node
        if w.whole_gpu:
            if w.spec is not None:
                self._run(w, w.spec, w.attempt)
            return
        self._start_failures = 0
        w.state = IDLE
        self._idle.append(wid)

    def worker_failed_to_start(self, wid: int, error: str) -> None:
        """Worker ``wid`` could not start; after ``START_FAILURES`` in a row the executor gives up."""
        w = self.workers.get(wid)
        if w is None or w.state != STARTING:
            return
        self._retire(w)
        if w.whole_gpu:
            if w.spec is not None:
                self._fail(w.spec, self.clock(), w.attempt, f"could not retry with a whole GPU: {error}", FailureKind.LOST)
            return
        self._start_failures += 1
        if self._start_failures >= START_FAILURES:
            raise ExecutorError(f"Ray workers fail to start: {error}")

    def trial_returned(self, wid: int, outcome: TrialOutcome) -> None:
        """The trial on ``wid`` ended with ``outcome``; the worker is healthy.  A trial that ran out of
        GPU memory while sharing a GPU is run once more on a whole-GPU worker instead of finishing."""
        w = self._running_worker(wid)
        if w is None:
            return
        if outcome.parent_id is not None and outcome.parent_id in w.kept:
            w.kept.remove(outcome.parent_id)  # handed to this child (or passed over): gone from the process
        if outcome.kept_state and w.spec is not None:
            w.kept.append(w.spec.trial_id)  # its process keeps this trial's live state for a child
        spec, attempt = self._release(w, worker_ok=True)
        outcome.attempts = attempt
        outcome.retry_note = self._retry_notes.pop(spec.trial_id, None)
        if self._wants_whole_gpu(outcome, w):
            self._retry_notes[spec.trial_id] = (
                f"attempt {attempt} ran out of GPU memory sharing a GPU ({self.gpus_per_trial:g} GPU per "
                f"trial): {first_line(outcome.reason)}; retried with a whole GPU")
            self._spawn(gpus=1.0, reserve=(spec, attempt + 1))
            return
        self._pruning.pop(spec.trial_id, None)
        self._forget_reports(spec.trial_id)
        self._events.append(TrialFinished(outcome))

    def trial_error(self, wid: int, reason: str, worker_ok: bool) -> None:
        """The trial call on ``wid`` failed without an outcome (an error in autotune's worker code with
        the worker intact, or a Ray error that leaves it unusable): a failed trial with ``reason``."""
        w = self._running_worker(wid)
        if w is None:
            return
        started = w.since
        spec, attempt = self._release(w, worker_ok=worker_ok)
        self._fail(spec, started, attempt, reason)

    def worker_died(self, wid: int, node_lost: bool, reason: str) -> None:
        """The worker running a trial died.  Its node was lost: the trial is queued again (up to
        ``max_retries`` retries) for any other node; otherwise it failed with ``reason``."""
        w = self._running_worker(wid)
        if w is None:
            return
        started = w.since
        spec, attempt = self._release(w, worker_ok=False)
        if node_lost and attempt <= self.max_retries:
            self.queue.append((spec, attempt + 1))
            self._retry_notes[spec.trial_id] = f"attempt {attempt} lost its node; retried"
            return
        self._fail(spec, started, attempt, f"its node was lost ({attempt} attempts)" if node_lost else reason,
                   FailureKind.LOST)

    def step(self) -> None:
        """One turn at the clock's time: whole-GPU start limits, pool size, dispatch, stalls, time limits.

        Trials go to started workers only: a worker Ray cannot place (its node is gone, the cluster
        shrank) stays ``STARTING`` and never holds a trial hostage."""
        now = self.clock()
        for key, deadline in list(self._awaiting.items()):  # a report the rule has not judged in time
            if now >= deadline:
                del self._awaiting[key]
                self._commands.append(Release(*key))
        for tid, deadline in list(self._pruning.items()):  # told to stop, and not at a report in time
            if now >= deadline:
                del self._pruning[tid]
                self.stop_trial(tid)
        for w in [w for w in self.workers.values() if w.whole_gpu and w.state == STARTING]:
            if now - w.spawned > self.start_timeout:
                self._retire(w)
                if w.spec is not None:
                    self._fail(w.spec, now, w.attempt, "could not retry with a whole GPU: no Ray node freed a"
                               f" whole GPU within {self.start_timeout:g} s", FailureKind.LOST)
        pending = self._whole_gpu_pending()
        if pending:
            # A whole GPU is wanted: idle pool workers hold GPU fractions, so let them go (the pool
            # grows back afterwards) and give them no new trial until it has started.
            while self._idle:
                self._retire(self.workers[self._idle[-1]])
        queue = self.queue
        while queue and not pending and len(self.pool_workers()) < min(self.slots, len(queue) + len(self.running())):
            self._spawn()  # the pool grows to what is queued, and back after whole-GPU retries
        while queue and self._idle and not pending:
            spec, attempt = queue.popleft()
            wanted = {p for s, _ in queue if (p := planned_parent(s)) is not None}
            wid = choose_worker(spec, self._idle, {i: self.workers[i].kept for i in self._idle}, wanted)
            self._idle.remove(wid)
            self._run(self.workers[wid], spec, attempt)
        self._check_stall(now, pending)
        for w in self.running():
            spec = w.spec
            if spec is not None and spec.timeout and now - w.since > spec.timeout:
                started = w.since
                spec, attempt = self._release(w, worker_ok=False)
                self._fail(spec, started, attempt, f"timed out after {spec.timeout:g} s", FailureKind.TIMEOUT)

    def _check_stall(self, now: float, pending: bool) -> None:
        """Queued trials with no worker running, idle or able to start fail after ``start_timeout``."""
        if not self.queue or self.running() or self._idle or pending:
            self._stalled_since = None
            return
        if not any(w.state == STARTING for w in self.pool_workers()):
            self._spawn()
        if self._stalled_since is None:
            self._stalled_since = now
        if now - self._stalled_since > self.start_timeout:
            while self.queue:
                spec, attempt = self.queue.popleft()
                self._fail(spec, now, attempt, f"no Ray node could start a worker within {self.start_timeout:g} s",
                           FailureKind.LOST)

    def reported(self, trial_id: int, step: int) -> None:
        """The running trial reported at ``step`` and waits for the verdict on it: :meth:`verdict`, or
        :meth:`step` once ``verdict_wait`` has passed, releases it."""
        if trial_id not in self._pruning and any(w.spec is not None and w.spec.trial_id == trial_id
                                                 for w in self.running()):
            self._awaiting.setdefault((trial_id, step), self.clock() + self.verdict_wait)

    def verdict(self, trial_id: int, step: int, stop: bool) -> None:
        """The rule's verdict on the report at ``step``: go on releases it now, stop prunes the trial."""
        if stop:
            self.prune(trial_id)
        elif self._awaiting.pop((trial_id, step), None) is not None:
            self._commands.append(Release(trial_id, step))

    def prune(self, trial_id: int) -> None:
        """Stop the trial at its report: a :class:`Prune` command (its waiting report answers stop), and if it
        has not finished ``prune_grace`` seconds from now, :meth:`step` stops it (its worker killed), as
        a trial that cannot report."""
        self._forget_reports(trial_id)
        if trial_id not in self._pruning:
            self._commands.append(Prune(trial_id))
            self._pruning[trial_id] = self.clock() + self.prune_grace

    def _forget_reports(self, trial_id: int) -> None:
        for key in [k for k in self._awaiting if k[0] == trial_id]:
            del self._awaiting[key]

    def stop_trial(self, trial_id: int) -> bool:
        """Stop one trial: a running one's worker is killed (and replaced), a queued one leaves the
        queue; either finishes as stopped at the next poll.  False if the trial is not here."""
        for i, (spec, attempt) in enumerate(self.queue):
            if spec.trial_id == trial_id:
                del self.queue[i]
                self._finish(spec, STOPPED, FailureKind.STOPPED, STOPPED_REASON, None, attempt)
                return True
        for w in list(self.workers.values()):
            if w.spec is not None and w.spec.trial_id == trial_id:
                started = w.since if w.state == RUNNING else None
                spec, attempt = w.spec, w.attempt
                if w.state == RUNNING:
                    self._release(w, worker_ok=False)
                else:  # a whole-GPU worker still starting for it
                    self._retire(w)
                self._finish(spec, STOPPED, FailureKind.STOPPED, STOPPED_REASON, started, attempt)
                return True
        return False

    def stop(self) -> list[int]:
        """Stop everything at once (Ctrl-C): kill the workers with a trial, drop the queue; returns
        the ids of the trials that held a worker.  Nothing is reported for them."""
        stopped = []
        for w in list(self.workers.values()):
            if w.spec is not None:
                stopped.append(w.spec.trial_id)
                self._retire(w)
        self.queue.clear()  # never started: nothing to record, resume runs them
        self._retry_notes.clear()
        self._pruning.clear()
        self._awaiting.clear()
        return stopped

    def close(self) -> None:
        """Kill every worker."""
        for w in list(self.workers.values()):
            self._retire(w)
        self.queue.clear()

    # -- helpers ---------------------------------------------------------------------------------
    def _running_worker(self, wid: int) -> Worker | None:
        w = self.workers.get(wid)
        return w if w is not None and w.state == RUNNING and w.spec is not None else None

    def _wants_whole_gpu(self, outcome: TrialOutcome, worker: Worker) -> bool:
        if outcome.kind != FailureKind.ERROR or not 0 < self.gpus_per_trial < 1 or worker.whole_gpu:
            return False
        return bool(GPU_OOM.search(outcome.reason or "") or GPU_OOM.search(outcome.log_tail or ""))

    def _spawn(self, gpus: float | None = None, reserve: tuple[TrialSpec, int] | None = None) -> Worker:
        wid, self._next_id = self._next_id, self._next_id + 1
        whole = reserve is not None
        w = Worker(wid, self.gpus_per_trial if gpus is None else gpus, whole, self.clock())
        if reserve is not None:
            w.spec, w.attempt = reserve
        self.workers[wid] = w
        self._commands.append(Spawn(wid, w.gpus))
        return w

    def _run(self, w: Worker, spec: TrialSpec, attempt: int) -> None:
        now = self.clock()
        w.state, w.spec, w.attempt, w.since = RUNNING, spec, attempt, now
        self._commands.append(Run(w.id, spec))
        self._events.append(TrialStarted(spec.trial_id, now, node=w.node))

    def _release(self, w: Worker, worker_ok: bool) -> tuple[TrialSpec, int]:
        """Free ``w`` of its trial: a whole-GPU worker gives its GPU back, a healthy pool worker goes
        idle, a broken one is replaced."""
        assert w.spec is not None
        spec, attempt = w.spec, w.attempt
        w.spec, w.attempt = None, 0
        if w.whole_gpu:
            self._retire(w)
        elif worker_ok:
            w.state = IDLE
            self._idle.append(w.id)
        else:
            self._retire(w)
            self._spawn()
        return spec, attempt

    def _retire(self, w: Worker) -> None:
        """Stop a worker for good (its resources go back to Ray); the pool is not refilled here."""
        self.workers.pop(w.id, None)
        if w.id in self._idle:
            self._idle.remove(w.id)
        self._commands.append(Kill(w.id))

    def _fail(self, spec: TrialSpec, started: float | None, attempt: int, reason: str,
              kind: FailureKind = FailureKind.ERROR) -> None:
        self._finish(spec, FAILED, kind, reason, started, attempt)

    def _finish(self, spec: TrialSpec, status: str, kind: FailureKind, reason: str, started: float | None,
                attempt: int) -> None:
        self._pruning.pop(spec.trial_id, None)
        self._forget_reports(spec.trial_id)
        self._events.append(TrialFinished(TrialOutcome(
            trial_id=spec.trial_id, status=status, kind=kind, reason=reason, started=started, ended=self.clock(),
            log_tail=self.log_tail(spec), attempts=attempt, retry_note=self._retry_notes.pop(spec.trial_id, None),
        )))


def first_line(text: str | None, limit: int = 200) -> str:
    """The first non-empty line of a reason, cut to ``limit`` characters."""
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "no reason given"
    return line[:limit]
