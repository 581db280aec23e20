"""Runs one trial in the current process and turns whatever happens into a :class:`TrialOutcome`.

Executors call :func:`run_trial` (in-process, or inside a reused Ray worker).  Everything a trial can
do wrong -- raise, exit, report NaN, report nothing, fail to write its checkpoint -- ends here as a
failed outcome with a reason and the tail of the trial's log; nothing escapes to stop the search.
A planned parent checkpoint is verified against the hash recorded when its trial finished; a missing
or corrupt one falls back to the next parent (or to scratch) and the outcome says so.

Continue in place: a Python objective's :meth:`~autotune.trial.Trial.keep` is committed here, once the
trial has completed and its checkpoint is hashed, under that checkpoint's key (run, trial, path, step,
hash).  A child whose parent's state this process keeps is offered it by ``trial.parent_state()``; the
parent's file is then not read again (its hash is the one recorded, which the kept state was keyed by),
unless the child loads the file after all, when it is hashed after the trial as a load would have been.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

from .artifacts import Artifacts, scratch_root
from .parents import ParentChoice, choose_parent, hash_path
from .records import LOG_FILE_NAME, ParentRef, TrialOutcome, TrialSpec, write_outcome
from .statuses import COMPLETED, FAILED, PRUNED, STOPPED, FailureKind
from .targets import CALLABLE, FUNCTION, SCRIPT, TrialTarget
from .trial import (
    ENV_BUDGET,
    ENV_CONFIG,
    ENV_METRIC,
    ENV_PARENT_CHECKPOINT,
    ENV_REPORT_FILE,
    ENV_ROUND,
    ENV_START_STEP,
    ENV_TRIAL_DIR,
    ENV_TRIAL_ID,
    KEPT,
    REPORT_FILE_NAME,
    STOP_FILE_NAME,
    StateKey,
    Trial,
    TrialPruned,
    _set_current,
    parse_metric_value,
    read_reports,
)

ReportSink = Callable[[dict[str, Any]], "bool | None"]  # True: the trial should stop (early stopping)


#: the reason recorded beside ``FailureKind.PRUNED_BY_RULE`` when the run's early-stopping rule stopped a trial
PRUNED_BY_RULE = "stopped early by the run's early-stopping rule"
#: how a trial's run went wrong, if it did: the kind and the human message
Fault = Optional[Tuple[FailureKind, str]]


class WorkerTerminated(BaseException):
    """The worker process was told to end (SIGTERM: its driver died or was stopped).  Not the trial's
    fault: no outcome is written, so ``resume`` runs the trial again."""


def raise_worker_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler for worker processes (see :class:`WorkerTerminated`)."""
    raise WorkerTerminated(f"worker received signal {signum}")
LOG_TAIL_LINES = 40
CHECKPOINT_DIR_NAME = "checkpoint"


def is_disk_full(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) is 'no space left on device'."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_chars: int = 8000) -> str | None:
    """The last lines of a trial's log, for failed trials' records."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_chars * 2))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]


@dataclass(frozen=True)
class WorkerContext:
    """Where a trial runs: the node's name and Ray id, the GPUs given to it, and the live report channel."""

    node: str | None = None
    gpu_ids: tuple[Any, ...] = ()
    node_id: str | None = None
    on_report: ReportSink | None = None


@dataclass(frozen=True)
class TrialRun:
    """One run of one trial as the function and script runners take it: what to run, where its files go,
    the parent it loads (resolved), the live report channel and, for a Python objective, the hand-out
    of a parent's kept state."""

    target: TrialTarget
    spec: TrialSpec
    trial_dir: Path
    log_path: Path
    metric: str
    parent: ParentChoice
    on_report: ReportSink | None = None
    offer: Callable[[], Any] | None = None

    @property
    def parent_path(self) -> Path | None:
        return self.parent.path  # None when no parent was chosen

    @property
    def start_step(self) -> int:
        ref = self.parent.parent
        return (ref.step or 0) if ref is not None else 0


@contextlib.contextmanager
def _redirect_output(log_path: Path) -> Iterator[None]:
    """Send this process's output to the trial log while it runs: the file descriptors (C code,
    child processes) and Python's ``sys.stdout``/``sys.stderr`` (which a host such as pytest may
    have replaced)."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1, encoding="utf-8", errors="replace") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                log.flush()
            sys.stdout, sys.stderr = saved_streams
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_trial(
    target: TrialTarget,
    spec: TrialSpec,
    run_dir: str | os.PathLike[str],
    metric: str,
    node: str | None = None,
    gpu_ids: list[Any] | None = None,
    node_id: str | None = None,
    artifacts: str | None = None,
    on_report: ReportSink | None = None,
) -> TrialOutcome:
    """Run ``spec`` with ``target`` and return its outcome; never raises for a trial's own faults.

    ``on_report(entry)`` receives each report as the trial makes it (a Python objective's
    ``trial.report``, a script's ``autotune.report``), so the driver sees it live.

    With ``artifacts`` (an object-store URI) the trial runs in this node's scratch folder, parents
    are downloaded from the store and the trial folder is uploaded to it at the end.
    A full disk is not the trial's fault: the outcome is ``stopped`` with the kind ``DISK_FULL``,
    so the driver halts the run and ``resume`` runs the trial again."""
    started = time.time()
    where = WorkerContext(node=node, gpu_ids=tuple(gpu_ids or ()), node_id=node_id, on_report=on_report)
    try:
        if artifacts:
            return _run_trial_with_artifacts(target, spec, Path(run_dir), metric, where, Artifacts(artifacts))
        return _run_trial(target, spec, Path(run_dir), metric, where)
    except OSError as e:
        if not is_disk_full(e):
            raise
        return TrialOutcome(trial_id=spec.trial_id, status=STOPPED, kind=FailureKind.DISK_FULL,
                            reason=f"disk full: {e}", started=started, ended=time.time(),
                            node=node or socket.gethostname(), node_id=node_id)


def _run_trial_with_artifacts(
    target: TrialTarget, spec: TrialSpec, run_dir: Path, metric: str, where: WorkerContext, store: Artifacts,
) -> TrialOutcome:
    """Run in scratch, parents fetched from ``store``; upload the trial folder; leave no scratch behind."""
    local = scratch_root(run_dir.name)
    parents_dir = local / ".parents" / str(spec.trial_id)  # this trial's own copies: no sharing races

    def fetch(parent: ParentRef) -> Path | None:
        dest = parents_dir / parent.checkpoint
        return dest if store.download(parent.checkpoint, dest) else None

    try:
        outcome = _run_trial(target, spec, local, metric, where, fetch=fetch)
        trial_dir = local / spec.trial_dir
        try:
            store.upload(trial_dir, spec.trial_dir)
        except OSError as e:
            if is_disk_full(e):
                raise
            outcome.end(FAILED, FailureKind.CHECKPOINT, f"could not upload the trial folder to {store.uri}: {e}")
            outcome.log_tail = log_tail(trial_dir / LOG_FILE_NAME)
        return outcome
    finally:
        shutil.rmtree(parents_dir, ignore_errors=True)
        shutil.rmtree(local / spec.trial_dir, ignore_errors=True)


def _run_trial(
    target: TrialTarget,
    spec: TrialSpec,
    run_dir: Path,
    metric: str,
    where: WorkerContext,
    fetch: Callable[[ParentRef], Path | None] | None = None,
) -> TrialOutcome:
    trial_dir = run_dir / spec.trial_dir
    shutil.rmtree(trial_dir, ignore_errors=True)  # a re-run after an interruption starts clean
    trial_dir.mkdir(parents=True, exist_ok=True)
    log_path = trial_dir / LOG_FILE_NAME
    outcome = TrialOutcome(
        trial_id=spec.trial_id,
        status=FAILED,
        started=time.time(),
        node=where.node or socket.gethostname(),
        gpu_ids=list(where.gpu_ids),
        node_id=where.node_id,
    )

    def state_key(p: ParentRef) -> StateKey:
        return StateKey(str(run_dir), p.trial_id, p.checkpoint, p.step, p.hash or "")

    choice = choose_parent(spec, run_dir, fetch, held=lambda p: KEPT.holds(state_key(p)))
    parent, parent_path, parent_hash, note, in_memory = choice
    offer = (lambda: KEPT.take(state_key(parent))) if in_memory and parent is not None else None
    run = TrialRun(target, spec, trial_dir, log_path, metric, choice, where.on_report, offer)
    outcome.parent_note = note
    if parent is not None:
        outcome.parent_id = parent.trial_id
        outcome.parent_checkpoint = parent.checkpoint
        outcome.parent_step = parent.step
        outcome.parent_hash = parent_hash
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"[autotune] trial {spec.trial_id} round {spec.round} config {json.dumps(spec.config)}\n")
        if note:
            log.write(f"[autotune] parent: {note}\n")
    trial: Trial | None = None
    try:
        if target.kind in (FUNCTION, CALLABLE):
            reports, checkpoint, error, trial = _run_function(run)
        elif target.kind == SCRIPT:
            reports, checkpoint, error = _run_script(run)
        else:
            raise ValueError(f"unknown target kind {target.kind!r}")
    except Exception as e:  # autotune's own fault while running the trial: still a recorded failure
        if is_disk_full(e):
            raise
        reports, checkpoint, error = [], None, (FailureKind.ERROR, f"{type(e).__name__}: {e}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(traceback.format_exc())
    outcome.reports = reports
    outcome.ended = time.time()
    _judge(outcome, metric, error)
    outcome.in_place = trial is not None and trial.in_place
    if in_memory and not outcome.in_place and parent_path is not None:
        _verify_loaded_parent(outcome, parent_path, log_path)
    if checkpoint is not None and outcome.status in (COMPLETED, PRUNED):  # a pruned trial keeps its last one
        try:
            outcome.checkpoint = os.path.relpath(checkpoint, run_dir)
            outcome.checkpoint_hash = hash_path(checkpoint)
            outcome.checkpoint_step = next(
                (r["step"] for r in reversed(reports) if r.get("checkpoint")), reports[-1]["step"] if reports else None
            )
        except OSError as e:
            outcome.end(FAILED, FailureKind.CHECKPOINT, f"checkpoint unreadable: {e}")
    kept = trial._kept_state() if trial is not None else None
    if kept is not None and outcome.status == COMPLETED and outcome.checkpoint and outcome.checkpoint_hash:
        outcome.kept_state = KEPT.put(StateKey(str(run_dir), spec.trial_id, outcome.checkpoint,
                                               outcome.checkpoint_step, outcome.checkpoint_hash), kept)
    if outcome.status != COMPLETED:
        outcome.log_tail = log_tail(log_path)
    write_outcome(trial_dir, outcome)
    return outcome


def _verify_loaded_parent(outcome: TrialOutcome, path: Path, log_path: Path) -> None:
    """The parent's state was kept here but the trial loaded its file instead: hash that file now, as
    :func:`choose_parent` would have before the load; a file that no longer matches fails the trial."""
    try:
        digest = hash_path(path)
    except OSError as e:
        digest, problem = None, f"unreadable ({e})"
    else:
        problem = None if digest == outcome.parent_hash else "corrupt (hash mismatch)"
    if problem is None:
        return
    outcome.parent_hash = digest
    reason = f"parent trial {outcome.parent_id}: checkpoint {problem}, and the trial loaded it"
    outcome.parent_note = "; ".join(n for n in (outcome.parent_note, reason) if n)
    outcome.end(FAILED, FailureKind.CHECKPOINT, reason)
    outcome.value = None
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"[autotune] {reason}\n")


def _judge(outcome: TrialOutcome, metric: str, fault: Fault) -> None:
    """Completed only with a finite value of the run metric and no fault."""
    values = [(r["step"], r["metrics"][metric]) for r in outcome.reports if metric in r.get("metrics", {})]
    if values:
        outcome.value = parse_metric_value(values[-1][1])
    if fault is not None and fault[0] == FailureKind.PRUNED_BY_RULE:
        last = f" at step {outcome.reports[-1]['step']}" if outcome.reports else ""
        outcome.end(PRUNED, FailureKind.PRUNED_BY_RULE, fault[1] + last)
    elif fault is not None:
        outcome.end(FAILED, *fault)
    elif not outcome.reports:
        outcome.end(FAILED, FailureKind.NO_REPORTS, "the trial reported no metrics")
    elif not values:
        seen = sorted({k for r in outcome.reports for k in r.get("metrics", {})})
        outcome.end(FAILED, FailureKind.METRIC_MISSING,
                    f"metric {metric!r} was never reported (reported: {', '.join(seen) or 'nothing'})")
    elif outcome.value is None or not math.isfinite(outcome.value):
        outcome.end(FAILED, FailureKind.NOT_FINITE, f"metric {metric!r} was {outcome.value} at step {values[-1][0]}")
        outcome.value = None
    else:
        outcome.end(COMPLETED, FailureKind.NONE, None)


def _run_function(run: TrialRun) -> tuple[list[dict[str, Any]], Path | None, Fault, Trial]:
    spec, metric, log_path, target = run.spec, run.metric, run.log_path, run.target
    parent = run.parent.parent
    trial = Trial(
        id=spec.trial_id,
        round=spec.round,
        budget=spec.budget,
        dir=run.trial_dir,
        config=spec.config,
        metric=metric,
        parent_checkpoint=str(run.parent_path) if run.parent_path else None,
        parent_id=parent.trial_id if parent else None,
        start_step=run.start_step,
        on_report=run.on_report,
    )
    trial._offer = run.offer  # the parent's live state, when this process keeps it (Trial.parent_state)
    error: Fault = None
    _set_current(trial)
    try:
        with _redirect_output(log_path):
            try:
                fn = target.load_function()
                result = fn(dict(spec.config), trial)
                if result is not None and not any(metric in r["metrics"] for r in trial.reports):
                    if isinstance(result, dict):
                        trial.report(result)
                    else:
                        trial.report({metric: result})
                if trial.should_stop:  # told to stop (Trial.submit) and ended cleanly: pruned, not completed
                    error = (FailureKind.PRUNED_BY_RULE, PRUNED_BY_RULE)
            except TrialPruned as e:
                print(f"[autotune] {e}")
                error = (FailureKind.PRUNED_BY_RULE, PRUNED_BY_RULE)
            except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt in a trial are its failure
                if isinstance(e, (KeyboardInterrupt, WorkerTerminated)) or is_disk_full(e):
                    raise
                traceback.print_exc()
                error = (FailureKind.ERROR, f"{type(e).__name__}: {e}")
    finally:
        _set_current(None)
    checkpoint = Path(trial.checkpoint) if trial.checkpoint else None
    return trial.reports, checkpoint, error, trial


def _run_script(run: TrialRun) -> tuple[list[dict[str, Any]], Path | None, Fault]:
    target, spec, trial_dir, log_path, metric = run.target, run.spec, run.trial_dir, run.log_path, run.metric
    parent_path, on_report = run.parent_path, run.on_report
    saved = trial_dir / CHECKPOINT_DIR_NAME
    saved.mkdir(exist_ok=True)
    report_file = trial_dir / REPORT_FILE_NAME
    argv = [target.python, target.ref, *target.args]
    argv += [f"--{k}={v}" for k, v in spec.config.items()]
    argv.append(f"--saved_params_dir={saved}")
    if parent_path is not None:
        argv.append(f"--model_path={parent_path}")
    env = dict(os.environ)
    env.update(
        {
            ENV_TRIAL_DIR: str(trial_dir),
            ENV_REPORT_FILE: str(report_file),
            ENV_TRIAL_ID: str(spec.trial_id),
            ENV_ROUND: str(spec.round),
            ENV_BUDGET: "" if spec.budget is None else str(spec.budget),
            ENV_METRIC: metric,
            ENV_PARENT_CHECKPOINT: str(parent_path or ""),
            ENV_START_STEP: str(run.start_step),
            ENV_CONFIG: json.dumps(spec.config),
            "PYTHONUNBUFFERED": "1",
        }
    )
    error: Fault = None
    with open(log_path, "ab") as log:
        log.write(("[autotune] $ " + " ".join(argv) + "\n").encode())
        log.flush()
        # The launch directory when this node has it (a shared file system, or the driver's own machine),
        # so that `--data=relative/path` works; else the trial's own folder.
        workdir = target.workdir if target.workdir and os.path.isdir(target.workdir) else str(trial_dir)
        log.write(f"[autotune] cwd {workdir}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                start_new_session=True)
        watcher = _ReportWatcher(report_file, on_report, trial_dir / STOP_FILE_NAME) if on_report else None
        try:
            code = proc.wait(timeout=spec.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            error = (FailureKind.TIMEOUT, f"timed out after {spec.timeout:g} s")
            code = None
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            if watcher is not None:
                watcher.stop()
    if (trial_dir / STOP_FILE_NAME).exists():
        error = (FailureKind.PRUNED_BY_RULE, PRUNED_BY_RULE)  # it was told to stop; how it ended after that is no failure of its own
    elif code is not None and code != 0:
        message = f"script exited with code {code}" if code > 0 else f"script killed by {_signal_name(code)}"
        last = _last_output_line(log_path)
        if last:
            message += f": {last}"
        error = (FailureKind.ERROR, message)
    reports = read_reports(report_file)
    checkpoint = saved if any(saved.iterdir()) else None
    named = [r["checkpoint"] for r in reports if r.get("checkpoint")]
    if checkpoint is None and named and Path(named[-1]).exists():  # a report named its own (a Trainer's)
        checkpoint = Path(named[-1])
    if checkpoint is not None and reports and not named:
        reports[-1]["checkpoint"] = str(saved)
    return reports, checkpoint, error


class _ReportWatcher:
    """Forwards a script's reports, as it appends them to its report file, to ``on_report``."""

    def __init__(self, path: Path, on_report: ReportSink, stop_file: Path, period: float = 0.25) -> None:
        self.path, self.on_report, self.period, self.stop_file = path, on_report, period, stop_file
        self._offset = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.period):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only: the script may be mid-write
        for line in data[:end].splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            try:
                stop = self.on_report(entry)
            except Exception:  # noqa: BLE001 - the channel failing never fails the trial
                return
            if stop:  # the script sees this at its next report and ends cleanly
                self.stop_file.touch()
        self._offset += end

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._read()


def _last_output_line(log_path: Path, limit: int = 300) -> str:
    """The script's last line of output (its error, usually), for the failure reason."""
    for line in reversed((log_tail(log_path) or "").splitlines()):
        if line.strip() and not line.startswith("[autotune]"):
            return line.strip()[:limit]
    return ""
