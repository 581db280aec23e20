"""Trials on Ray: a pool of reused Ray actors, one trial at a time each.

Ray does the scheduling (placement on any node with the requested CPUs, fractional GPUs and custom
resources), process management and cleanup.  Each actor is a long-lived worker process that runs
trial after trial, so Python start-up, imports (torch) and CUDA set-up are paid once per worker, not
per trial.  A worker that dies or overruns its time limit is killed and replaced; its trial is a
failed outcome with the reason and its log tail.  A trial whose node was lost is re-queued (up to
``max_retries``) on whatever node Ray picks next.  A trial that ran out of GPU memory while sharing a
GPU (``gpus_per_trial`` below 1) is run once more in a worker of its own that holds a whole GPU.

This package is the only code that imports ``ray``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayError, RayTaskError

from ..errors import ConfigError, ExecutorError
from ..records import FAILED, TrialOutcome, TrialSpec
from ..trial_runner import LOG_FILE_NAME, log_tail, run_trial
from .base import Executor

POLL_S = 0.5
#: how a trial's reason or log tail says that the GPU ran out of memory (PyTorch, CUDA libraries, ROCm)
GPU_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory|"
                     r"CUDA error: out of memory", re.IGNORECASE)
NODE_VERDICT_S = 60.0  # how long to wait for the cluster to call a silent node dead
TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def _enable_token_auth() -> None:
    """Joining a cluster: Ray 2.60 heads authenticate by token, but Ray turns token mode on by itself
    only for ``address=auto``.  When the user has the token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
    the file ``ray start --head`` writes) and chose no mode, use token mode, the way Ray does."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: the environment variable alone, before ray.init
        if os.environ.get("RAY_AUTH_TOKEN") or TOKEN_FILE.exists():
            os.environ["RAY_AUTH_MODE"] = "token"
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


class _TrialWorker:
    """A reusable worker process; ``run`` executes one trial in it."""

    def ready(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "pid": os.getpid()}

    def run(self, target: Any, spec: TrialSpec, run_dir: str, metric: str, artifacts: str | None = None) -> TrialOutcome:
        node = ray.util.get_node_ip_address()
        gpus = [str(g) for g in ray.get_gpu_ids()]
        node_id = ray.get_runtime_context().get_node_id()
        return run_trial(target, spec, run_dir, metric, node=node, gpu_ids=gpus, node_id=node_id, artifacts=artifacts)


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
        self._started_ray = False
        self._workers: list[Any] = []
        self._running: dict[Any, tuple[Any, TrialSpec, float, int]] = {}
        self._ready: dict[Any, Any] = {}
        self._retry_notes: dict[int, str] = {}
        self._starting: dict[Any, Any] = {}  # ready() ref -> worker not yet placed and started
        self._idle: list[Any] = []
        self._start_failures = 0
        self._whole_gpu: dict[Any, tuple[Any, TrialSpec, int, float]] = {}  # ready() ref -> worker, spec, attempt, since
        self._whole_gpu_workers: set[Any] = set()
        self.start_timeout = start_timeout  # worker -> ref of its ready() call (gives its node)
        self._slots = 0
        self._queue: deque[tuple[TrialSpec, int]] = deque()  # (spec, attempt) waiting for a worker
        self._stalled_since: float | None = None

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
                _enable_token_auth()
            else:
                if self.num_cpus is not None:
                    kwargs["num_cpus"] = self.num_cpus
                if self.num_gpus is not None:
                    kwargs["num_gpus"] = self.num_gpus
            try:
                _init_ray(kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = self.address or "a local Ray"
                hint = ""
                if self.address and not os.environ.get("RAY_AUTH_TOKEN") and not TOKEN_FILE.exists():
                    hint = (" (a Ray 2.60 cluster authenticates by token: set RAY_AUTH_TOKEN, or copy the head's"
                            f" ~/.ray/auth_token to {TOKEN_FILE})")
                raise ExecutorError(f"cannot start or join Ray at {where}: {e}{hint}") from None
            self._started_ray = True
        self._slots = self._compute_slots()

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
        return self._slots

    def describe(self) -> str:
        where = self.address or "local Ray"
        return f"Ray ({where}), {self._slots} trial slots"

    def _new_worker(self, gpus: float | None = None) -> Any:
        cls = ray.remote(_TrialWorker)
        worker = cls.options(
            num_cpus=self.cpus_per_trial,
            num_gpus=(self.gpus_per_trial if gpus is None else gpus) or None,
            resources=self.resources_per_trial or None,
            max_restarts=0,
            max_task_retries=0,
        ).remote()
        self._ready[worker] = worker.ready.remote()
        return worker

    def _worker_node(self, worker: Any) -> str | None:
        try:
            return ray.get(self._ready[worker], timeout=1.0)["node_id"]
        except Exception:  # noqa: BLE001 - the worker never started, or is gone with its node
            return None

    # -- running ---------------------------------------------------------------------------------
    def submit(self, spec: TrialSpec) -> None:
        self._queue.append((spec, 1))

    @property
    def active(self) -> int:
        return len(self._queue) + len(self._running) + len(self._whole_gpu)

    def poll(self, timeout: float | None = None) -> list[TrialOutcome]:
        """Outcomes that ended, waiting in steps of ``POLL_S`` up to ``timeout`` (None: until one ends)."""
        deadline = None if timeout is None else time.time() + timeout
        while self.active:
            left = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.time()))
            outcomes = self._step(left)
            if outcomes or (deadline is not None and time.time() >= deadline):
                return outcomes
        return []

    def _step(self, wait_s: float) -> list[TrialOutcome]:
        """One turn of the pool: start workers, hand queued trials to idle ones, collect what ended.

        Trials go to started workers only: a worker Ray cannot place (its node is gone, the cluster
        shrank) waits in ``_starting`` and never holds a trial hostage."""
        out: list[TrialOutcome] = []
        queue = self._queue
        self._promote_started()
        out += self._start_whole_gpu_trials()
        if self._whole_gpu:
            # A whole GPU is wanted: idle pool workers hold GPU fractions, so let them go (the
            # pool grows back afterwards) and give them no new trial until it has started.
            while self._idle:
                self._retire(self._idle.pop())
        while queue and not self._whole_gpu and len(self._workers) < min(self._slots, len(queue) + len(self._running)):
            self._spawn()  # the pool grows to what is queued, and back after whole-GPU retries
        while queue and self._idle and not self._whole_gpu:
            spec, attempt = queue.popleft()
            worker = self._idle.pop()
            ref = worker.run.remote(self.target, spec, str(self.run_dir), self.metric, self.artifacts)
            self._running[ref] = (worker, spec, time.time(), attempt)
        if queue and not self._running and not self._idle and not self._whole_gpu:
            if not self._starting:
                self._spawn()
            self._stalled_since = self._stalled_since or time.time()
            if time.time() - self._stalled_since > self.start_timeout:
                while queue:
                    spec, attempt = queue.popleft()
                    out.append(self._failed(spec, time.time(), attempt,
                                            f"no Ray node could start a worker within {self.start_timeout:g} s"))
                return out
        else:
            self._stalled_since = None
        waiting = [*self._running, *self._starting, *self._whole_gpu]
        done, _ = ray.wait(waiting, num_returns=1, timeout=wait_s) if waiting else ([], [])
        for ref in done:
            if ref not in self._running:
                continue  # a worker finished starting: promoted at the next turn
            worker, spec, started, attempt = self._running.pop(ref)
            outcome, worker_ok = self._collect(ref, worker, spec, started, attempt)
            if outcome is None:  # node lost: retry elsewhere
                queue.append((spec, attempt + 1))
                self._retry_notes[spec.trial_id] = f"attempt {attempt} lost its node; retried"
            elif self._wants_whole_gpu(outcome, worker):
                self._retry_notes[spec.trial_id] = (
                    f"attempt {attempt} ran out of GPU memory sharing a GPU ({self.gpus_per_trial:g} GPU per "
                    f"trial): {_first_line(outcome.reason)}; retried with a whole GPU")
                self._queue_whole_gpu(spec, attempt + 1)
                outcome = None
            if worker in self._whole_gpu_workers:
                self._retire(worker)  # a whole-GPU worker runs one trial, then gives its GPU back
            elif worker_ok:
                self._idle.append(worker)
            else:
                self._replace(worker)
            if outcome is not None:
                out.append(outcome)
        now = time.time()
        for ref, (worker, spec, started, attempt) in list(self._running.items()):
            if spec.timeout and now - started > spec.timeout:
                del self._running[ref]
                if worker in self._whole_gpu_workers:
                    self._retire(worker)
                else:
                    self._replace(worker)
                out.append(self._failed(spec, started, attempt, f"timed out after {spec.timeout:g} s"))
        return out

    # -- a trial that ran out of GPU memory while sharing a GPU --------------------------------------
    def _wants_whole_gpu(self, outcome: TrialOutcome, worker: Any) -> bool:
        if outcome.status != FAILED or not 0 < self.gpus_per_trial < 1 or worker in self._whole_gpu_workers:
            return False
        return bool(GPU_OOM.search(outcome.reason or "") or GPU_OOM.search(outcome.log_tail or ""))

    def _queue_whole_gpu(self, spec: TrialSpec, attempt: int) -> None:
        worker = self._new_worker(gpus=1.0)
        self._whole_gpu_workers.add(worker)
        self._whole_gpu[self._ready[worker]] = (worker, spec, attempt, time.time())

    def _start_whole_gpu_trials(self) -> list[TrialOutcome]:
        """Hand each whole-GPU worker that has started its trial; a trial whose worker cannot start
        (within ``start_timeout``) fails with the reason."""
        failed: list[TrialOutcome] = []
        if not self._whole_gpu:
            return failed
        ready, _ = ray.wait(list(self._whole_gpu), num_returns=len(self._whole_gpu), timeout=0)
        now = time.time()
        for ref in list(self._whole_gpu):
            worker, spec, attempt, since = self._whole_gpu[ref]
            if ref not in ready and now - since <= self.start_timeout:
                continue
            del self._whole_gpu[ref]
            try:
                if ref not in ready:
                    raise GetTimeoutError(f"no Ray node freed a whole GPU within {self.start_timeout:g} s")
                ray.get(ref)
            except (RayError, GetTimeoutError) as e:
                self._retire(worker)
                failed.append(self._failed(spec, now, attempt, f"could not retry with a whole GPU: {e}"))
                continue
            run_ref = worker.run.remote(self.target, spec, str(self.run_dir), self.metric, self.artifacts)
            self._running[run_ref] = (worker, spec, time.time(), attempt)
        return failed

    def _retire(self, worker: Any) -> None:
        """Stop a worker for good (its resources go back to Ray); the pool is not refilled here."""
        if worker in self._workers:
            self._workers.remove(worker)
        self._whole_gpu_workers.discard(worker)
        self._ready.pop(worker, None)
        try:
            ray.kill(worker, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _spawn(self) -> None:
        worker = self._new_worker()
        self._workers.append(worker)
        self._starting[self._ready[worker]] = worker

    def _promote_started(self) -> None:
        if not self._starting:
            return
        ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
        for ref in ready:
            worker = self._starting.pop(ref)
            try:
                ray.get(ref)
            except RayError as e:
                self._start_failures += 1
                self._workers.remove(worker)
                self._ready.pop(worker, None)
                if self._start_failures >= 3:
                    raise ExecutorError(f"Ray workers fail to start: {e}") from None
                continue
            self._start_failures = 0
            self._idle.append(worker)

    def _collect(self, ref: Any, worker: Any, spec: TrialSpec, started: float,
                 attempt: int) -> tuple[TrialOutcome | None, bool]:
        try:
            outcome = ray.get(ref)
            outcome.attempts = attempt
            outcome.retry_note = self._retry_notes.pop(spec.trial_id, None)
            return outcome, True
        except RayActorError as e:
            lost = self._node_lost(e, self._worker_node(worker))
            if lost and attempt <= self.max_retries:
                return None, False
            reason = f"its node was lost ({attempt} attempts)" if lost else _death_reason(e)
            return self._failed(spec, started, attempt, reason), False
        except RayTaskError as e:  # autotune's own bug inside the worker; keep the search going
            return self._failed(spec, started, attempt, f"worker error: {e}"), True
        except (RayError, GetTimeoutError) as e:
            return self._failed(spec, started, attempt, f"Ray error: {type(e).__name__}: {e}"), False

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

    def _failed(self, spec: TrialSpec, started: float, attempt: int, reason: str) -> TrialOutcome:
        return TrialOutcome(
            trial_id=spec.trial_id,
            status=FAILED,
            reason=reason,
            started=started,
            ended=time.time(),
            log_tail=log_tail(self.run_dir / spec.trial_dir / LOG_FILE_NAME),
            attempts=attempt,
            retry_note=self._retry_notes.pop(spec.trial_id, None),
        )

    def _replace(self, worker: Any) -> None:
        self._retire(worker)
        self._spawn()

    def stop(self) -> list[int]:
        stopped = []
        for ref, (worker, spec, started, attempt) in list(self._running.items()):
            try:
                ray.kill(worker, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
            stopped.append(spec.trial_id)
        self._running.clear()
        self._queue.clear()  # never started: nothing to record, resume runs them
        for worker, spec, _attempt, _since in self._whole_gpu.values():  # waiting for a whole GPU
            self._retire(worker)
            stopped.append(spec.trial_id)
        self._whole_gpu.clear()
        return stopped

    def close(self) -> None:
        for w in [*self._workers, *self._whole_gpu_workers]:
            try:
                ray.kill(w, no_restart=True)
            except Exception:  # noqa: BLE001
                pass
        self._workers.clear()
        self._whole_gpu_workers.clear()
        self._whole_gpu.clear()
        self._idle.clear()
        self._starting.clear()
        self._ready.clear()
        if self._started_ray and ray.is_initialized():
            ray.shutdown()


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


def _init_ray(kwargs: dict[str, Any]) -> None:
    address = str(kwargs.get("address") or "")
    for attempt in range(1, CLIENT_START_TRIES + 1):
        try:
            ray.init(**kwargs)
            return
        except (ConnectionError, RuntimeError) as e:
            transient = address.startswith("ray://") and "client server failed" in str(e).lower()
            if not transient or attempt == CLIENT_START_TRIES:
                raise
            logging.getLogger(__name__).warning("Ray Client server did not start (attempt %d); retrying", attempt)
            time.sleep(2.0 * attempt)


def _first_line(text: str | None, limit: int = 200) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else "no reason given"
    return line[:limit]


def _death_reason(err: RayActorError) -> str:
    text = str(err)
    for line in text.splitlines():
        low = line.lower()
        if "exit" in low or "signal" in low or "killed" in low or "oom" in low or "memory" in low:
            return "worker process died: " + line.strip()[:300]
    return "worker process died: " + (text.strip().splitlines() or ["unknown cause"])[0][:300]
