"""What a trial program sees: the :class:`Trial` handle and the reporting calls.

A Python objective ``def objective(config, trial)`` gets a :class:`Trial`; a script trial (run as
``python train.py --NAME=VALUE ... --saved_params_dir=DIR``) calls the module-level
:func:`report` / :func:`report_final_result`, which find the trial through environment variables
and append to the trial's private report file.  Either way a report is a dict of metrics plus an
optional checkpoint, and every report is kept.

A Python objective may also *continue in place*: :meth:`Trial.keep` leaves the trial's live training
state (model, optimizer, ...) in this worker process, bound to the trial's last checkpoint, and a
Population-Based child that runs in the same process gets it from :meth:`Trial.parent_state` instead of
loading that checkpoint from disk.  Checkpoints are still written at every step, so lineage and resume
do not depend on it; the states live in :data:`KEPT` (a few per process, each handed out once).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import TrialError

# Environment variables through which a script trial finds its trial.
ENV_TRIAL_DIR = "AUTOTUNE_TRIAL_DIR"
ENV_REPORT_FILE = "AUTOTUNE_REPORT_FILE"
ENV_TRIAL_ID = "AUTOTUNE_TRIAL_ID"
ENV_ROUND = "AUTOTUNE_ROUND"
ENV_BUDGET = "AUTOTUNE_BUDGET"
ENV_METRIC = "AUTOTUNE_METRIC"
ENV_PARENT_CHECKPOINT = "AUTOTUNE_PARENT_CHECKPOINT"
ENV_START_STEP = "AUTOTUNE_START_STEP"
ENV_CONFIG = "AUTOTUNE_CONFIG"
ENV_KEEP_STATES = "AUTOTUNE_KEEP_STATES"  # how many live states a worker process keeps (0: none)
KEEP_STATES_DEFAULT = 2

REPORT_FILE_NAME = "reports.jsonl"
STOP_FILE_NAME = "STOP"  # written into a script trial's folder when the run stops it early


def _clean_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """Metrics as plain floats; non-finite values become None but are remembered by the caller."""
    if not isinstance(metrics, Mapping):
        raise TrialError(f"report() takes a dict of metric name -> number, got {type(metrics).__name__}")
    out: dict[str, float | None] = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise TrialError(f"metric names must be strings, got {k!r}")
        try:
            if isinstance(v, (str, bytes)):  # "0.5" is text read from somewhere, not a measurement
                raise TypeError
            f = float(v)
        except (TypeError, ValueError):
            raise TrialError(f"metric {k!r} must be a number, got {v!r}") from None
        out[k] = f
    return out


def _json_metrics(metrics: Mapping[str, float]) -> dict[str, Any]:
    """JSON has no NaN: keep non-finite values as strings so 'nan' stays visible, never a 0."""
    return {k: (v if math.isfinite(v) else repr(v)) for k, v in metrics.items()}


def parse_metric_value(v: Any) -> float:
    """Inverse of :func:`_json_metrics` for one value."""
    if isinstance(v, str):
        return float(v)
    return float(v)


# --------------------------------------------------------------------------------------------
# Continue in place: live states kept in this process, keyed by the checkpoint they equal
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateKey:
    """The checkpoint a kept state equals: its trial, path (relative to the run folder), step and sha256,
    within one run folder.  A child gets the state only for exactly the parent checkpoint it is to load."""

    run: str
    trial_id: int
    checkpoint: str
    step: int | None
    hash: str


def keep_limit() -> int:
    """How many kept states a process holds: ``AUTOTUNE_KEEP_STATES`` (0: none), else 2."""
    try:
        return max(0, int(os.environ.get(ENV_KEEP_STATES, KEEP_STATES_DEFAULT)))
    except ValueError:
        return KEEP_STATES_DEFAULT


class KeptStates:
    """The live states this process keeps: at most ``limit`` (the newest; an older one is dropped when
    a new one comes), and each is handed out at most once, so two children never share one model."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = keep_limit() if limit is None else max(0, int(limit))
        self._states: OrderedDict[StateKey, Any] = OrderedDict()

    def put(self, key: StateKey, state: Any) -> bool:
        """Keep ``state`` under ``key``; False (nothing kept) when the limit is 0."""
        self._states.pop(key, None)
        if self.limit <= 0:
            return False
        self._states[key] = state
        while len(self._states) > self.limit:
            self._states.popitem(last=False)
        return True

    def holds(self, key: StateKey) -> bool:
        return key in self._states

    def take(self, key: StateKey) -> Any | None:
        """The state kept under ``key``, removed from here (None when there is none)."""
        return self._states.pop(key, None)

    def keys(self) -> list[StateKey]:
        """The keys held, oldest first."""
        return list(self._states)

    def clear(self) -> None:
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


#: this process's kept states (a reused Ray worker keeps them between trials)
KEPT = KeptStates()


class TrialPruned(Exception):
    """Raised by ``report`` when the run's early-stopping rule stops the trial.  User code needs nothing:
    the trial runner records the trial as pruned, with its reports and last checkpoint; a trial may
    catch it to clean up (``trial.should_stop`` is then True) and should let it propagate."""


class Trial:
    """The handle a Python objective receives.

    Attributes: ``id``, ``round``, ``budget`` (training units this trial should add), ``dir`` (a
    private folder only this trial writes into), ``parent_checkpoint`` (path or None),
    ``parent_id``, ``start_step`` (the parent checkpoint's training step, 0 from scratch),
    ``config`` and ``metric`` (the run's metric name); ``in_place`` is True once :meth:`parent_state`
    has handed this trial its parent's live state.

    Continue in place (optional): end a trial with :meth:`keep` and begin its children with
    :meth:`parent_state`; a child that gets None loads ``parent_checkpoint`` as usual.
    """

    def __init__(
        self,
        id: int,
        round: int,
        budget: float | None,
        dir: str | os.PathLike[str],
        config: Mapping[str, Any],
        metric: str,
        parent_checkpoint: str | None = None,
        parent_id: int | None = None,
        start_step: int = 0,
        on_report: Callable[[dict[str, Any]], bool | None] | None = None,
    ) -> None:
        self.id = id
        self.round = round
        self.budget = budget
        self.dir = Path(dir)
        self.config = dict(config)
        self.metric = metric
        self.parent_checkpoint = parent_checkpoint
        self.parent_id = parent_id
        self.start_step = int(start_step or 0)
        self.reports: list[dict[str, Any]] = []
        self.checkpoint: str | None = None
        self.checkpoint_step: int | None = None
        self._on_report = on_report  # the live channel to the driver (None: reports reach it at the end)
        self.should_stop = False  # set when the run's early-stopping rule stops this trial
        self.in_place = False  # parent_state() handed this trial its parent's live state
        self._checkpoints = 0  # reports that named a checkpoint
        self._kept: tuple[Any, int] | None = None  # (state, self._checkpoints when keep() was called)
        self._offer: Callable[[], Any] | None = None  # the runner's hand-out of the parent's kept state

    @property
    def budget_steps(self) -> int | None:
        """The whole reports (evaluations, epochs) this trial adds: ``budget`` rounded up, at least 1;
        None without a budget.  The one rule the Trainer and Lightning callbacks share."""
        if not self.budget:
            return None
        return max(1, math.ceil(float(self.budget) - 1e-9))

    @property
    def resumed_step(self) -> int:
        """The step a training loop restored from ``parent_checkpoint`` starts at: ``start_step`` for a
        warm-started child, 0 from scratch."""
        return self.start_step if self.parent_checkpoint else 0

    def keep(self, state: Any) -> None:
        """Keep ``state`` (any live object: model, optimizer, data loaders' positions...) in this worker
        process for a child that continues from this trial's last checkpoint.

        Call it after the last report that names a checkpoint; ``state`` must be what that checkpoint
        holds.  It is kept only if the trial completes with that checkpoint (a later checkpoint report,
        or any failure, drops it), at most a few per process (``AUTOTUNE_KEEP_STATES``, default 2, 0:
        none), and each is handed to one child only.  Script trials run in their own process: there it
        does nothing."""
        if self.checkpoint is None:
            raise TrialError(f"trial {self.id}: keep() binds the state to a reported checkpoint; report one first")
        self._kept = (state, self._checkpoints)

    def parent_state(self, accept: Callable[[Any], bool] | None = None) -> Any | None:
        """The live state the parent trial kept (see :meth:`keep`) when this process holds it for exactly
        the checkpoint this trial is to load (same trial, step and hash); None otherwise, and then the
        trial loads :attr:`parent_checkpoint` as usual.

        Handed out once: a second call returns None.  ``accept(state)`` may refuse a state this trial
        cannot continue (another model or device, say): it is dropped and None returned.  The record
        shows the parent exactly as a load from disk would, with ``in_place`` True."""
        offer, self._offer = self._offer, None
        state = offer() if offer is not None else None
        if state is None or (accept is not None and not accept(state)):
            return None
        self.in_place = True
        return state

    def _kept_state(self) -> Any | None:
        """What :meth:`keep` left, if it is bound to the last checkpoint reported."""
        if self._kept is None or self._kept[1] != self._checkpoints:
            return None
        return self._kept[0]

    def report(
        self,
        metrics: Mapping[str, Any] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        step: int | None = None,
        **more: Any,
    ) -> None:
        """Record metrics (and optionally a checkpoint) for this point of training.

        ``step`` is the training step the report (and its checkpoint) stand at; by default it
        counts reports on from the parent's step.  A checkpoint outside :attr:`dir` is copied in, so
        a trial's checkpoint always lives in its own folder.
        """
        if self.submit(metrics, checkpoint=checkpoint, step=step, **more):
            raise TrialPruned(f"trial {self.id} stopped early at step {self.reports[-1]['step']} by the run's "
                              "early-stopping rule")

    def submit(
        self,
        metrics: Mapping[str, Any] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        step: int | None = None,
        **more: Any,
    ) -> bool:
        """:meth:`report` without the exception: True when the run's early-stopping rule stops this trial
        (then :attr:`should_stop` is True too).  For training loops that end themselves cleanly, such as
        a Trainer or Lightning callback: the trial is recorded as pruned however it then ends."""
        values = _clean_metrics({**(metrics or {}), **more})
        if step is None:
            step = (self.reports[-1]["step"] if self.reports else self.start_step) + 1
        entry = {"step": int(step), "time": time.time(), "metrics": _json_metrics(values)}
        if checkpoint is not None:
            entry["checkpoint"] = self._adopt_checkpoint(Path(checkpoint), int(step))
            self.checkpoint, self.checkpoint_step = entry["checkpoint"], int(step)
            self._checkpoints += 1
        self.reports.append(entry)
        if self._send(entry):
            self.should_stop = True
        return self.should_stop

    def _send(self, entry: dict[str, Any]) -> bool:
        """Forward a report to the driver while the trial runs; True when the driver says stop.  The
        channel failing never fails the trial (the report is kept here and reaches the driver with the
        outcome)."""
        if self._on_report is not None:
            try:
                return bool(self._on_report(entry))
            except Exception:  # noqa: BLE001
                self._on_report = None
        return False

    def _adopt_checkpoint(self, path: Path, step: int) -> str:
        if not path.exists():
            raise TrialError(f"trial {self.id}: reported checkpoint {str(path)!r} does not exist")
        path = path.resolve()
        own = self.dir.resolve()
        if own == path or own in path.parents:
            return str(path)
        dest = own / "checkpoint"
        tmp = own / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if path.is_dir():
            shutil.copytree(path, tmp)
        else:
            tmp.mkdir(parents=True)
            shutil.copy2(path, tmp / path.name)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return str(dest)

    def __repr__(self) -> str:
        return f"Trial(id={self.id}, round={self.round}, budget={self.budget}, parent={self.parent_id})"


# --------------------------------------------------------------------------------------------
# Module-level reporting, for Python objectives (current trial) and script trials (env vars)
# --------------------------------------------------------------------------------------------
_current: Trial | None = None


def _set_current(trial: Trial | None) -> None:
    global _current
    _current = trial


def current_trial() -> Trial:
    """The running trial: the in-process one, or one rebuilt from a script trial's environment."""
    if _current is not None:
        return _current
    if ENV_REPORT_FILE not in os.environ:
        raise TrialError("not inside an autotune trial: run this program through `autotune run`")
    return _ScriptTrial.from_env()


def running_trial() -> Trial | None:
    """The running trial as :func:`current_trial` finds it, or None outside autotune (a script run on its
    own): what callbacks for other training loops use to do nothing there."""
    try:
        return current_trial()
    except TrialError:
        return None


def report(
    metrics: Mapping[str, Any] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    step: int | None = None,
    **more: Any,
) -> None:
    """Report metrics (and optionally a checkpoint) from inside a trial."""
    current_trial().report(metrics, checkpoint=checkpoint, step=step, **more)


def report_final_result(value: float) -> None:
    """PaddleHub AutoDL Finetuner's call: report the run metric's final value."""
    trial = current_trial()
    trial.report({trial.metric: value})


class _ScriptTrial(Trial):
    """A Trial inside a script process: reports go to the trial's report file, line by line."""

    @classmethod
    def from_env(cls) -> "_ScriptTrial":
        env = os.environ
        budget = env.get(ENV_BUDGET)
        parent = env.get(ENV_PARENT_CHECKPOINT) or None
        t = cls(
            id=int(env.get(ENV_TRIAL_ID, "0")),
            round=int(env.get(ENV_ROUND, "0")),
            budget=float(budget) if budget not in (None, "") else None,
            dir=env[ENV_TRIAL_DIR],
            config=json.loads(env.get(ENV_CONFIG, "{}")),
            metric=env.get(ENV_METRIC, "score"),
            parent_checkpoint=parent,
            start_step=int(env.get(ENV_START_STEP, "0") or 0),
        )
        t.reports = read_reports(Path(env[ENV_REPORT_FILE]))
        return t

    def keep(self, state: Any) -> None:
        """A script is its own process, gone when it ends: nothing to keep a state in."""

    def parent_state(self, accept: Callable[[Any], bool] | None = None) -> Any | None:
        """Always None in a script: it loads ``parent_checkpoint``."""
        return None

    def report(self, metrics=None, checkpoint=None, step=None, **more):  # type: ignore[override]
        if self.submit(metrics, checkpoint=checkpoint, step=step, **more):
            print(f"[autotune] trial {self.id} stopped early by the run's early-stopping rule", flush=True)
            raise SystemExit(0)

    def submit(self, metrics=None, checkpoint=None, step=None, **more):  # type: ignore[override]
        n = len(self.reports)
        super().submit(metrics, checkpoint=checkpoint, step=step, **more)
        path = Path(os.environ[ENV_REPORT_FILE])
        with open(path, "a", encoding="utf-8") as f:
            for entry in self.reports[n:]:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
        if (self.dir / STOP_FILE_NAME).exists():  # the early-stopping rule stopped this trial: end cleanly
            self.should_stop = True
        return self.should_stop


def read_reports(path: Path) -> list[dict[str, Any]]:
    """Reports a script trial wrote, skipping a torn last line (a process killed mid-write)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
