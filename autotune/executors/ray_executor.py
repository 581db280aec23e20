"""Trials on Ray: a pool of reused Ray actors, one trial at a time each.

Ray does the scheduling (placement on any node with the requested CPUs, fractional GPUs and custom
resources), process management and cleanup.  Each actor is a long-lived worker process that runs
trial after trial, so Python start-up, imports (torch) and CUDA set-up are paid once per worker, not
per trial.  What to start, run, retry or kill is decided by :class:`~autotune.executors.pool.WorkerPool`
(pure, tested without Ray); this module only makes the Ray calls: it tells the pool what Ray reports
(a worker started, a trial returned, a worker or its node died) and carries out the pool's commands.
Reports reach the driver while trials run: each worker sends them to a small ``_ReportBus`` actor,
which the driver drains every turn.  With an early-stopping rule, the driver waits on the bus for
reports (it wakes the moment one arrives) and a Python objective's report waits for the rule's verdict
on it: a losing trial stops at the report the rule judged, as with Ray Tune's schedulers or Optuna's
``should_prune``, not one report (an epoch) later.  The pool decides when a wait ends (the verdict, or
``VERDICT_WAIT_S`` after the report, on its clock); the bus only carries the answers.

This is the only module that imports ``ray``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError, RayTaskError

from ..errors import ConfigError, ExecutorError
from ..events import ExecutorEvent, TrialFinished, TrialReported
from ..records import TrialOutcome, TrialSpec
from ..trial_runner import LOG_FILE_NAME, log_tail, raise_worker_terminated, run_trial
from .base import Executor
from .local_ray import LocalRaySession, end_stale_sessions
from .pool import Kill, Prune, Release, Run, Spawn, WorkerPool
from .ray_auth import TOKEN_FILE, enable_token_auth, token_at_hand

POLL_S = 0.5
DRAIN_S = 0.5  # without a rule, how often the driver fetches live reports from the bus (one round trip each)
VERDICT_WAIT_S = 2.0  # how long a report waits for the rule's verdict; then it goes on (a later stop still works)
#: the bus's own bound on a report's wait, for a driver that cannot answer at all (the pool answers in
#: ``VERDICT_WAIT_S``); under the 30 s a worker waits for the bus
BUS_WAIT_S = 20.0
PRUNE_GRACE_S = 60.0  # how long a trial told to stop may take to reach its next report
NODE_VERDICT_S = 60.0  # how long to wait for the cluster to call a silent node dead


class _TrialWorker:
    """A reusable worker process; ``run`` executes one trial in it.  Between trials the process holds the
    live states trials kept (``trial.keep``); the pool sends a child here when it holds its parent's, and
    the child continues in place (``TrialOutcome.kept_state`` tells the pool what this process keeps)."""

    def __init__(self) -> None:
        # Ray ends workers with SIGTERM when their driver dies or is stopped; Ray's own handler raises
        # SystemExit, which a trial would record as its failure.  Ours ends the trial unrecorded, so
        # `resume` runs it again.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, raise_worker_terminated)

    def ready(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "node": ray.util.get_node_ip_address(), "pid": os.getpid()}

    def run(self, target: Any, spec: TrialSpec, run_dir: str, metric: str, artifacts: str | None = None,
            bus: Any = None, judging: bool = True) -> TrialOutcome:
        node = ray.util.get_node_ip_address()
        gpus = [str(g) for g in ray.get_gpu_ids()]
        node_id = ray.get_runtime_context().get_node_id()
        on_report = None if bus is None else _Reports(bus, spec.trial_id, judging)
        return run_trial(target, spec, run_dir, metric, node=node, gpu_ids=gpus, node_id=node_id, artifacts=artifacts,
                         on_report=on_report)


class _Reports:
    """A worker's reports to the bus.  With a rule each waits for its answer (did the rule stop the
    trial?); without one the answer is always no, so none waits (a round trip per report was half a
    short trial's time in its worker), with at most ``UNANSWERED`` in flight."""

    UNANSWERED = 16

    def __init__(self, bus: Any, trial_id: int, judging: bool) -> None:
        self._bus, self._trial_id, self._judging = bus, trial_id, judging
        self._sent: list[Any] = []

    def __call__(self, entry: dict[str, Any]) -> bool:
        ref = self._bus.put.remote(self._trial_id, entry)
        if self._judging:
            return bool(ray.get(ref, timeout=30))
        self._sent.append(ref)
        if len(self._sent) > self.UNANSWERED:  # a failed put surfaces here; Trial._send then stops the channel
            ray.get(self._sent.pop(0), timeout=30)
        return False


class _ReportBus:
    """Carries the reports of running trials from the workers to the driver, as they are made, and the
    early-stopping rule's verdicts back (an asyncio actor: waiting costs no thread)."""

    def __init__(self, judging: bool = False, verdict_wait_s: float = BUS_WAIT_S) -> None:
        self._reports: list[tuple[int, dict[str, Any]]] = []
        self._stop: set[int] = set()
        self._judging = judging
        self._verdict_wait_s = verdict_wait_s
        self._waiting: dict[tuple[int, int], asyncio.Event] = {}  # (trial, step) -> its report's wait
        self._new: asyncio.Event | None = None  # set while reports wait to be drained

    def _arrived(self) -> asyncio.Event:
        if self._new is None:
            self._new = asyncio.Event()
        return self._new

    async def put(self, trial_id: int, entry: dict[str, Any]) -> bool:
        """Keep a report; True when the trial has been told to stop (early stopping).  With a rule,
        first wait for the answer to this very report (:meth:`release` or :meth:`prune`; at most
        ``verdict_wait_s``, should the driver be unable to answer)."""
        self._reports.append((trial_id, entry))
        self._arrived().set()
        if self._judging and trial_id not in self._stop:
            key = (trial_id, int(entry.get("step", 0)))
            event = self._waiting[key] = asyncio.Event()
            try:
                await asyncio.wait_for(event.wait(), self._verdict_wait_s)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiting.pop(key, None)
        return trial_id in self._stop

    async def release(self, trial_id: int, step: int) -> None:
        """The rule lets the trial go on after its report at ``step``."""
        event = self._waiting.get((trial_id, step))
        if event is not None:
            event.set()

    async def prune(self, trial_id: int) -> None:
        """The trial is stopped: its reports answer so from now on, and any that waits is answered now."""
        self._stop.add(trial_id)
        for (tid, _), event in list(self._waiting.items()):
            if tid == trial_id:
                event.set()

    async def drain(self) -> list[tuple[int, dict[str, Any]]]:
        out, self._reports = self._reports, []
        self._arrived().clear()
        return out

    async def next_reports(self, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        """The reports made since the last drain, as soon as there are any (or none after ``timeout``)."""
        if not self._reports:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived().wait(), timeout)
        return await self.drain()


class RayExecutor(Executor):
    """Runs trials on a local Ray (started on demand) or on the cluster at ``address``."""

    def __init__(
        self,
        address: str | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        resources_per_trial: dict[str, float] | None = None,
        max_workers: int | None = None,
        max_retries: int = 1,
        num_cpus: int | None = None,
        num_gpus: int | None = None,
        start_timeout: float = 600.0,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.resources_per_trial = dict(resources_per_trial or {})
        self.max_workers = max_workers
        self.max_retries = max_retries
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus  # a local Ray's GPUs, when started here (default: what Ray detects)
        self.start_timeout = start_timeout
        self._started_ray = False
        self._pool = WorkerPool(0, gpus_per_trial=gpus_per_trial, max_retries=max_retries,
                                start_timeout=start_timeout, log_tail=self._log_tail, prune_grace=PRUNE_GRACE_S,
                                verdict_wait=VERDICT_WAIT_S)
        self._actors: dict[int, Any] = {}  # pool worker id -> Ray actor
        self._starting: dict[Any, int] = {}  # ready() ref -> worker not yet placed and started
        self._runs: dict[Any, int] = {}  # run() ref -> worker running it
        self._node_ids: dict[int, str] = {}  # started worker -> its Ray node
        self._bus: Any = None  # the _ReportBus actor: live reports from the workers
        self._reports: list[ExecutorEvent] = []
        self._listening: Any = None  # with a rule: the bus's next_reports() call the driver waits on
        self._drained = 0.0  # without a rule: when the bus was last drained (time.monotonic)

    # -- lifecycle -------------------------------------------------------------------------------
    def open(self, run_dir: Path, target: Any, metric: str, artifacts: str | None = None) -> None:
        super().open(run_dir, target, metric, artifacts)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = dict(
                include_dashboard=False,
                log_to_driver=False,
                # An embedded local Ray is ours: keep its start-up chatter off the user's terminal.
                logging_level=logging.WARNING if self.address else logging.ERROR,
                configure_logging=True,
            )
            if self.address:
                _check_reachable(self.address)
                kwargs["address"] = self.address
                enable_token_auth()
            else:
                # "local": a Ray of our own, even where a `ray start` cluster runs (ray.init() would join
                # the latest one); joining a cluster is what --address is for
                kwargs["address"] = "local"
                if self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                if self.num_gpus is not None:
                    kwargs["num_gpus"] = self.num_gpus
            try:
                if self.address:
                    _init_ray(kwargs)
                else:
                    _start_local_ray(kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a local Ray"
                hint = ""
                if self.address and not token_at_hand():
                    hint = (" (a Ray 2.60 cluster authenticates by token: set RAY_AUTH_TOKEN, or copy the head's"
                            f" ~/.ray/auth_token to {TOKEN_FILE})")
                raise ExecutorError(f"cannot start or join Ray at {where}: {e}{hint}") from None
            self._started_ray = True
        self._pool.slots = self._compute_slots()
        self._bus = ray.remote(_ReportBus).options(num_cpus=0).remote(self.judging)

    def _compute_slots(self) -> int:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        need = {"CPU": self.cpus_per_trial, "GPU": self.gpus_per_trial, **self.resources_per_trial}
        need = {k: v for k, v in need.items() if v > 0}
        slots = 0
        for n in nodes:
            res = n.get("Resources", {})
            fit = min((int(res.get(k, 0) / v + 1e-9) for k, v in need.items()), default=8)
            slots += fit
        if slots == 0:
            have = ", ".join(
                f"{n.get('NodeManagerAddress')}: " + ", ".join(f"{k}={v:g}" for k, v in sorted(n.get("Resources", {}).items())
                                                          if k in ("CPU", "GPU") or k in need)
                for n in nodes
            )
            want = ", ".join(f"{k}={v:g}" for k, v in need.items())
            raise ConfigError(f"no Ray node can hold one trial ({want}); nodes have: {have or 'no live nodes'}")
        if self.max_workers:
            slots = min(slots, self.max_workers)
        return slots

    @property
    def slots(self) -> int:
        return self._pool.slots

    def describe(self) -> str:
        where = self.address or "local Ray"
        return f"Ray ({where}), {self._pool.slots} trial slots"

    def _log_tail(self, spec: TrialSpec) -> str | None:
        return log_tail(self.run_dir / spec.trial_dir / LOG_FILE_NAME)

    # -- running ---------------------------------------------------------------------------------
    def warm(self) -> set[int]:
        return self._pool.warm()

    def submit(self, spec: TrialSpec) -> None:
        self._pool.submit(spec)

    @property
    def active(self) -> int:
        return self._pool.active

    def poll(self, timeout: float | None = None) -> list[ExecutorEvent]:
        """Events since the last call; waits in steps of ``POLL_S`` until a trial ends or ``timeout``
        passes (None: until one ends)."""
        deadline = None if timeout is None else time.time() + timeout
        events = [*self._take_reports(), *self._pool.take_events()]
        # with a rule, a report is an answer the worker waits for: return it at once to be judged
        wake = (TrialFinished, TrialReported) if self.judging else (TrialFinished,)
        while self.active and not any(isinstance(e, wake) for e in events):
            self._turn(POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.time())))
            events += [*self._take_reports(), *self._pool.take_events()]
            if deadline is not None and time.time() >= deadline:
                break
        return events

    def _take_reports(self) -> list[ExecutorEvent]:
        out, self._reports = self._reports, []
        return out

    def _drain_bus(self) -> None:
        """Without a rule: the reports the workers made since the last drain, at most every
        ``DRAIN_S`` (they only show trials live; a report arriving after its trial's end is still in
        the outcome, and the driver ignores the late copy).  With a rule the driver listens instead
        (see :meth:`_turn`): a report drained here would wait for the turn's wait before its verdict."""
        if self._bus is None or self.judging or time.monotonic() - self._drained < DRAIN_S:
            return
        self._drained = time.monotonic()
        try:
            batch = ray.get(self._bus.drain.remote(), timeout=30)
        except (RayError, GetTimeoutError):
            return  # the live view misses these; the outcome carries every report
        self._add_reports(batch)

    def _add_reports(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        for trial_id, entry in batch:
            step = int(entry.get("step", 0))
            if self.judging:  # it waits for the verdict on it: the pool keeps the deadline
                self._pool.reported(int(trial_id), step)
            self._reports.append(TrialReported(int(trial_id), step, dict(entry.get("metrics") or {}),
                                               float(entry.get("time") or 0.0)))

    def _turn(self, wait_s: float) -> None:
        """One turn: report started workers, let the pool decide, wait up to ``wait_s`` for a trial."""
        self._drain_bus()
        self._observe_starts()
        self._pool.step()
        self._execute()
        waiting = [*self._runs, *self._starting]
        if self.judging and self._bus is not None and self._listening is None and self._runs:
            self._listening = self._bus.next_reports.remote(max(wait_s, POLL_S))
        if self._listening is not None:
            waiting.append(self._listening)
        done, _ = ray.wait(waiting, num_returns=1, timeout=wait_s) if waiting else ([], [])
        for ref in done:
            if ref in self._runs:  # (a started worker is reported at the next turn)
                self._collect(ref, self._runs.pop(ref))
            elif ref is self._listening:
                self._listening = None
                try:
                    self._add_reports(ray.get(ref, timeout=30))
                except (RayError, GetTimeoutError):
                    pass  # the live view misses these; the outcome carries every report
        self._execute()

    def _observe_starts(self) -> None:
        if not self._starting:
            return
        ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
        for ref in ready:
            wid = self._starting.pop(ref)
            try:
                info = ray.get(ref)
            except RayError as e:
                try:
                    self._pool.worker_failed_to_start(wid, str(e))
                finally:
                    self._execute()
                continue
            self._node_ids[wid] = info["node_id"]
            self._pool.worker_started(wid, node=info.get("node"))

    def _collect(self, ref: Any, wid: int) -> None:
        """Tell the pool how the trial call on worker ``wid`` ended."""
        try:
            outcome = ray.get(ref)
        except RayActorError as e:
            lost = self._node_lost(e, self._node_ids.get(wid))
            self._pool.worker_died(wid, lost, _death_reason(e))
        except RayTaskError as e:  # autotune's own bug inside the worker; keep the search going
            self._pool.trial_error(wid, f"worker error: {e}", worker_ok=True)
        except (RayError, GetTimeoutError) as e:
            self._pool.trial_error(wid, f"Ray error: {type(e).__name__}: {e}", worker_ok=False)
        else:
            self._pool.trial_returned(wid, outcome)

    def _node_lost(self, err: RayActorError, node_id: str | None) -> bool:
        """A dead node (not a trial that crashed its own process) is worth a retry elsewhere.

        A worker whose connection broke (``ActorUnavailableError``) may have lost its node; the
        cluster marks a node dead only after its health checks fail, so wait for that verdict."""
        if getattr(err, "preempted", False):
            return True
        if node_id is None:
            return False
        patience = NODE_VERDICT_S if isinstance(err, ActorUnavailableError) else 1.0
        deadline = time.time() + patience
        while True:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            if node_id not in alive:
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.5)

    def _execute(self) -> None:
        """Carry out the pool's commands with Ray calls."""
        for cmd in self._pool.take_commands():
            if isinstance(cmd, Spawn):
                actor = ray.remote(_TrialWorker).options(
                    num_cpus=self.cpus_per_trial,
                    num_gpus=cmd.gpus or None,
                    resources=self.resources_per_trial or None,
                    max_restarts=0,
                    max_task_retries=0,
                ).remote()
                self._actors[cmd.worker] = actor
                self._starting[actor.ready.remote()] = cmd.worker
            elif isinstance(cmd, Run):
                ref = self._actors[cmd.worker].run.remote(self.target, cmd.spec, str(self.run_dir), self.metric,
                                                          self.artifacts, self._bus, self.judging)
                self._runs[ref] = cmd.worker
            elif isinstance(cmd, Kill):
                self._kill(cmd.worker)
            elif isinstance(cmd, Release) and self._bus is not None:
                self._bus.release.remote(cmd.trial_id, cmd.step)
            elif isinstance(cmd, Prune) and self._bus is not None:
                self._bus.prune.remote(cmd.trial_id)

    def _kill(self, wid: int) -> None:
        """Kill a worker and forget its pending calls (its resources go back to Ray)."""
        for refs in (self._starting, self._runs):
            for ref in [r for r, w in refs.items() if w == wid]:
                del refs[ref]
        self._node_ids.pop(wid, None)
        actor = self._actors.pop(wid, None)
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass

    def verdict(self, trial_id: int, step: int, stop: bool) -> None:
        """Answer the report the trial made at ``step`` (it may be waiting for this): stop prunes it (which
        also ends its wait), go on releases the wait (the pool decides; see :meth:`WorkerPool.verdict`)."""
        if self._bus is None:
            super().verdict(trial_id, step, stop)
            return
        self._pool.verdict(trial_id, step, stop)
        self._execute()

    def prune(self, trial_id: int) -> None:
        """Tell the trial to stop at its next report (through the report bus); the pool ends a trial that
        has not stopped ``PRUNE_GRACE_S`` later."""
        if self._bus is None:
            self.stop_trial(trial_id)
            return
        self._pool.prune(trial_id)
        self._execute()

    def stop_trial(self, trial_id: int) -> bool:
        """Kill the worker running ``trial_id`` (it is replaced) or drop it from the queue; the next
        poll returns its :class:`TrialFinished` with status ``stopped``."""
        stopped = self._pool.stop_trial(trial_id)
        self._execute()
        return stopped

    def stop(self) -> list[int]:
        stopped = self._pool.stop()
        self._execute()
        return stopped

    def close(self) -> None:
        self._pool.close()
        self._execute()
        for wid in list(self._actors):
            self._kill(wid)
        self._starting.clear()
        self._runs.clear()
        self._listening = None
        if self._bus is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._bus, no_restart=True)
            self._bus = None
        if self._started_ray:
            if ray.is_initialized():
                ray.shutdown()
            _end_local_ray()


#: Ray Client's head starts a server process per client; on a busy head that start can time out
#: ("Starting Ray client server failed"), and a second try, with the imports warm, usually succeeds.
CLIENT_START_TRIES = 3


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a HOST:PORT nobody listens on: ``ray.init`` would retry such an address forever."""
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", "local" and the like: Ray resolves them itself, and fails fast
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ExecutorError(f"cannot reach Ray at {address}: {e.strerror or e} (is the head running, and is"
                            " the port open from here?)") from None


#: The local Ray this process started (see :mod:`.local_ray`); process-wide, as ``ray.init`` is.
_LOCAL_RAY: LocalRaySession | None = None


def _start_local_ray(kwargs: dict[str, Any]) -> None:
    """Start a local Ray whose processes end with this driver: first end those of earlier local Rays
    whose driver died, then start this one marked, with its reaper and its record."""
    global _LOCAL_RAY
    _end_local_ray()  # one this process started and someone shut down: its reaper and record go too
    end_stale_sessions()
    session = LocalRaySession.begin()
    try:
        with session.marking():
            _init_ray(kwargs)
    except BaseException:
        session.end()
        raise
    session_dir = gcs_address = None
    node = getattr(ray._private.worker, "_global_node", None)  # what Ray started: its folder, its GCS
    with contextlib.suppress(AttributeError, RuntimeError):
        session_dir, gcs_address = node.get_session_dir_path(), node.gcs_address
    if session.started(session_dir, gcs_address):
        _LOCAL_RAY = session


def _end_local_ray() -> None:
    """After ``ray.shutdown()``: end what is left of the local Ray this process started, if any."""
    global _LOCAL_RAY
    session, _LOCAL_RAY = _LOCAL_RAY, None
    if session is not None:
        session.end()


def _init_ray(kwargs: dict[str, Any]) -> None:
    address = str(kwargs.get("address") or "")
    for attempt in range(1, CLIENT_START_TRIES + 1):
        try:
            ray.init(**kwargs)
            return
        except (ConnectionError, RuntimeError) as e:
            text = str(e).lower()
            # the head's per-client server failed to start (busy head: a timeout, or a process that died
            # at birth and shows as a zombie); a second try usually succeeds
            transient = address.startswith("ray://") and (
                "client server failed" in text or ("initialization failure from server" in text
                                                   and ("zombie" in text or "timed out" in text)))
            if not transient or attempt == CLIENT_START_TRIES:
                raise
            logging.getLogger(__name__).warning("Ray Client server did not start (attempt %d); retrying", attempt)
            time.sleep(2.0 * attempt)


def _death_reason(err: RayActorError) -> str:
    text = str(err)
    for line in text.splitlines():
        low = line.lower()
        if "exit" in low or "signal" in low or "killed" in low or "oom" in low or "memory" in low:
            return "worker process died: " + line.strip()[:300]
    return "worker process died: " + (text.strip().splitlines() or ["unknown cause"])[0][:300]
