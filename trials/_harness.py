"""What every bundled trial shares: device and threads, checkpoint files, the two ways to run, and the
settings that act within a trial (``patience`` and ``lr_schedule: plateau``, with their checkpointed state).

A trial module defines ``train(config, budget, parent_checkpoint, checkpoint_dir, seed, report,
start_step)``.  :func:`run_objective` runs it as an autotune objective, :func:`run_script` as an
AutoDL Finetuner style script (``--name=value`` flags, ``--saved_params_dir``, ``--model_path``),
reporting to autotune when ``autotune run`` started it and printing its results when run by hand.

As an objective, ``train`` also gets a :class:`Continuation` (``in_place``): a Population-Based child
that runs in the worker process that ran its parent continues from the parent's live training state
(``trial.parent_state()``) instead of loading its checkpoint, and a trial whose final checkpoint is its
state in memory leaves that state for a child (``trial.keep``).  Checkpoints are written as always.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

HERE = Path(__file__).resolve().parent

Report = Callable[[dict[str, float], int, Path], None]


@dataclass(frozen=True)
class Continuation:
    """A Python objective's continue-in-place channel: autotune's ``Trial.parent_state`` and ``Trial.keep``.
    Script trials and runs by hand have none (a child always loads its parent's checkpoint)."""

    parent_state: Callable[[Callable[[Any], bool] | None], Any | None]
    keep: Callable[[Any], None]


class TrainFn(Protocol):
    def __call__(self, config: dict[str, Any], budget: float | None, parent_checkpoint: str | None,
                 checkpoint_dir: Path, seed: int, report: Report, start_step: int | None = None,
                 in_place: Continuation | None = None) -> Any: ...


# ----------------------------------------------------------------------------------------------
# Device, threads, budget
# ----------------------------------------------------------------------------------------------
def budget_epochs(budget: float | None, default: int) -> int:
    """Epochs this trial adds: the trial's budget rounded (at least 1), else the config's ``epochs``."""
    if budget is None:
        return max(1, int(default))
    return max(1, int(round(float(budget))))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def on_device(module: torch.nn.Module, device: torch.device) -> bool:
    """Whether ``module``'s parameters live on ``device`` (``cuda`` matches any GPU index)."""
    p = next(module.parameters(), None)
    if p is None:
        return True
    return p.device.type == device.type and (device.index is None or p.device.index == device.index)


def set_threads() -> None:
    """torch uses the threads Ray granted the trial (``OMP_NUM_THREADS``), not every core."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))


def autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on a GPU that has it (fp16 otherwise) when ``amp``; full precision elsewhere."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


# ----------------------------------------------------------------------------------------------
# Checkpoint files
# ----------------------------------------------------------------------------------------------
def checkpoint_file(path: str | os.PathLike[str], filename: str) -> Path:
    """A checkpoint is a folder holding ``filename``, or that file itself."""
    p = Path(path)
    return p / filename if p.is_dir() else p


def load_checkpoint(path: str | os.PathLike[str], filename: str, fmt: str, kind: str) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt``; plain containers and tensors only (``weights_only``)."""
    f = checkpoint_file(path, filename)
    if not f.exists():
        raise FileNotFoundError(f"no checkpoint at {f}")
    ckpt = torch.load(f, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{f} is not a {kind} checkpoint")
    return ckpt


# ----------------------------------------------------------------------------------------------
# Reporting from a script trial
# ----------------------------------------------------------------------------------------------
def _import_autotune() -> Any:
    try:
        import autotune.trial  # noqa: F401
    except ImportError:  # run from a checkout that is not installed: the repository root is our parent
        sys.path.append(str(HERE.parent))
        import autotune.trial  # noqa: F401
    import autotune

    return autotune


def missing_extra(what: str, extra: str) -> ImportError:
    """The one-line error for a bundled trial's feature that needs one of autotune's extras."""
    _import_autotune()
    from autotune.errors import MissingExtraError

    return MissingExtraError(what, extra)


def script_trial() -> Any | None:
    """The autotune trial of a script run by ``autotune run``, or None when run by hand."""
    try:
        autotune = _import_autotune()
    except ImportError:
        return None
    from autotune.errors import TrialError

    try:
        return autotune.trial.current_trial()
    except TrialError:
        return None


def script_report(metrics: dict[str, float], step: int, checkpoint: str | None = None) -> None:
    """``autotune.report`` when run by autotune; a printed line when run by hand."""
    if script_trial() is None:
        print(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
        return
    autotune = _import_autotune()
    report = getattr(autotune, "report", None) or autotune.trial.report
    report(metrics, checkpoint=checkpoint, step=step)


# ----------------------------------------------------------------------------------------------
# The two ways to run a trial
# ----------------------------------------------------------------------------------------------
def trial_seed(trial_id: int | str | None) -> int:
    """Each trial's own seed: 1000 + its id (0 for a script run by hand)."""
    return 1000 + (int(trial_id) if trial_id is not None else 0)


def run_objective(train: TrainFn, config: dict[str, Any], trial: Any) -> None:
    """Run ``train`` as an autotune objective: ``trial.budget`` epochs on from the parent, if any."""

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        trial.report(metrics, checkpoint=ckpt, step=step)

    in_place = Continuation(trial.parent_state, trial.keep) if hasattr(trial, "keep") else None
    train(config, trial.budget, trial.parent_checkpoint, Path(trial.dir) / "checkpoint",
          seed=trial_seed(trial.id), report=report, start_step=trial.start_step, in_place=in_place)


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_flags(argv: list[str], doc: str | None = None) -> tuple[dict[str, Any], str | None, str | None]:
    """``--name=value`` / ``--name value`` flags -> (config, saved_params_dir, model_path)."""
    config: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(doc or "")
            raise SystemExit(0)
        if not arg.startswith("--"):
            raise SystemExit(f"unexpected argument {arg!r}: flags are --name=value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SystemExit(f"flag --{name} needs a value")
            value = argv[i + 1]
            i += 1
        config[name.replace("-", "_")] = _parse_value(value)
        i += 1
    saved = config.pop("saved_params_dir", None)
    parent = config.pop("model_path", None)
    return config, (str(saved) if saved else None), (str(parent) if parent else None)


def run_script(train: TrainFn, argv: list[str], doc: str | None = None) -> None:
    """Run ``train`` as a script: flags override the trial's config; results go to autotune or stdout."""
    config, saved, parent = parse_flags(argv, doc)
    trial = script_trial()
    if trial is not None:
        config = {**{k: v for k, v in trial.config.items() if k not in config}, **config}
    budget = trial.budget if trial is not None else None
    parent = parent or (trial.parent_checkpoint if trial is not None else None)
    if saved is None:
        saved = str(Path(trial.dir) / "checkpoint") if trial is not None else "saved_params"
    start_step = trial.start_step if trial is not None and parent else None

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        if trial is not None and trial.metric not in metrics:
            # A PaddleHub hparam file names no metric, so the run's is 'score': like AutoDL's
            # report_final_result(acc), give the run's metric the validation accuracy.
            metrics = {**metrics, trial.metric: metrics["val_accuracy"]}
        script_report(metrics, step, checkpoint=str(ckpt) if trial is not None else None)

    train(config, budget, parent, Path(saved), seed=trial_seed(trial.id if trial is not None else None),
          report=report, start_step=start_step)


# ----------------------------------------------------------------------------------------------
# Within a trial: early stopping on a plateau (patience) and a learning rate lowered on one
# ----------------------------------------------------------------------------------------------
WITHIN_TRIAL_DEFAULTS: dict[str, Any] = {
    "patience": None,  # None or 0: off
    "min_delta": 0.0,
    "plateau_factor": 0.5,
    "plateau_patience": 2,
    "plateau_threshold": 0.0,
}


def resolve_within_trial(cfg: dict[str, Any]) -> list[str]:
    """Convert the settings of :data:`WITHIN_TRIAL_DEFAULTS` (and ``min_lr_factor``, the plateau's floor) in
    place; returns the problems found, each naming its setting.  ``patience`` becomes an int, 0 when off."""
    problems: list[str] = []
    if cfg["patience"] in (None, "", "none", "None", False):
        cfg["patience"] = 0
    for k, kind in (("patience", int), ("plateau_patience", int), ("min_delta", float), ("plateau_factor", float),
                    ("plateau_threshold", float), ("min_lr_factor", float)):
        try:
            v = float(cfg[k])
            if not math.isfinite(v):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{k} must be a {'whole ' if kind is int else ''}number, got {cfg[k]!r}")
            return problems
        cfg[k] = int(round(v)) if kind is int else v
    if cfg["patience"] < 0:
        problems.append(f"patience must be >= 0 epochs (0 or none: off), got {cfg['patience']}")
    if not cfg["min_delta"] >= 0:
        problems.append(f"min_delta must be >= 0, got {cfg['min_delta']}")
    if not 0 < cfg["plateau_factor"] < 1:
        problems.append(f"plateau_factor must be in (0, 1), got {cfg['plateau_factor']}")
    if cfg["plateau_patience"] < 1:
        problems.append(f"plateau_patience must be >= 1 epoch, got {cfg['plateau_patience']}")
    if not cfg["plateau_threshold"] >= 0:
        problems.append(f"plateau_threshold must be >= 0, got {cfg['plateau_threshold']}")
    if not 0 <= cfg["min_lr_factor"] <= 1:
        problems.append(f"min_lr_factor must be in [0, 1], got {cfg['min_lr_factor']}")
    return problems


class Improvement:
    """Counts the epochs since a value that should grow (validation accuracy) last improved.

    An epoch improves when its value beats the best so far by more than ``min_delta``; the first
    epoch seen always does.  ``state_dict`` / ``load_state_dict`` carry it through a checkpoint.
    """

    def __init__(self, min_delta: float = 0.0) -> None:
        self.min_delta = float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        """Account for ``epoch``'s value; True when it is an improvement."""
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = float(value), int(epoch), 0
            return True
        self.bad_epochs += 1
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        best = state.get("best")
        self.best = None if best is None else float(best)
        epoch = state.get("best_epoch")
        self.best_epoch = None if epoch is None else int(epoch)
        self.bad_epochs = int(state.get("bad_epochs", 0))


class PlateauLR:
    """``lr_schedule: plateau``: a multiplier on the base learning rates (``scale``, starting at 1) that is
    multiplied by ``factor`` once the validation accuracy has not improved (by more than ``threshold``)
    for ``patience`` epochs in a row, never below ``min_scale``.  After a reduction the count restarts.

    The settings are passed at every :meth:`step`, so a Population-Based child that changes them applies
    its own from then on; the state (scale, best value, epochs without improvement) comes from the parent.
    """

    def __init__(self) -> None:
        self.scale = 1.0
        self.reductions = 0
        self.tracker = Improvement()

    def step(self, value: float, epoch: int, factor: float, patience: int, threshold: float = 0.0,
             min_scale: float = 0.0) -> bool:
        """Account for ``epoch``'s value; True when the learning rate was lowered."""
        self.tracker.min_delta = float(threshold)
        if self.tracker.update(value, epoch) or self.tracker.bad_epochs < patience:
            return False
        self.tracker.bad_epochs = 0
        new = max(self.scale * factor, min_scale)
        if new >= self.scale:
            return False  # already at the floor
        self.scale, self.reductions = new, self.reductions + 1
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "reductions": self.reductions, **self.tracker.state_dict()}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        state = state or {}
        self.scale = float(state.get("scale", 1.0))
        self.reductions = int(state.get("reductions", 0))
        self.tracker.load_state_dict(state)


class KeepBest:
    """With ``patience`` on: the best epoch of this trial, its metrics and a copy of its checkpoint file.

    Call :meth:`update` after each epoch's checkpoint is written (``folder/filename``); an improving epoch's
    file is kept as ``best-<filename>`` (a hard link where the file system has them, else a copy): one
    extra file at most, never one per epoch.  :meth:`finish` puts the best epoch's file back in place of the
    last one and reports the best epoch's metrics again, at the best epoch's step, with the checkpoint:
    autotune takes a trial's value from its last report and its checkpoint from the last one reported,
    so the trial's result and the checkpoint a Population-Based child starts from are the best epoch's.
    """

    def __init__(self, folder: Path, filename: str, min_delta: float = 0.0) -> None:
        self.folder = Path(folder)
        self.filename = filename
        self.tracker = Improvement(min_delta)
        self.metrics: dict[str, float] | None = None
        self.last_epoch: int | None = None

    @property
    def best_file(self) -> Path:
        return self.folder / f"best-{self.filename}"

    @property
    def best_epoch(self) -> int | None:
        return self.tracker.best_epoch

    def update(self, metrics: dict[str, float], epoch: int, metric: str = "val_accuracy") -> dict[str, float]:
        """Account for ``epoch`` (whose checkpoint is on disk); returns its metrics plus ``best_epoch``."""
        self.last_epoch = int(epoch)
        improved = self.tracker.update(metrics[metric], epoch)
        out = {**metrics, "best_epoch": float(self.tracker.best_epoch)}  # type: ignore[arg-type]
        if improved:
            self.metrics = dict(out)
            tmp = self.folder / (self.best_file.name + ".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(self.folder / self.filename, tmp)
            except OSError:
                shutil.copyfile(self.folder / self.filename, tmp)
            os.replace(tmp, self.best_file)
        return out

    def finish(self, report: Report) -> dict[str, float] | None:
        """Training ended (patience or budget): the best epoch's file becomes the checkpoint and its metrics
        (with ``best_epoch`` and ``last_epoch``) the trial's last report.  Returns those metrics."""
        if self.metrics is None or self.last_epoch is None:
            return None
        if self.best_epoch != self.last_epoch:
            os.replace(self.best_file, self.folder / self.filename)
        self.discard()
        final = {**self.metrics, "last_epoch": float(self.last_epoch)}
        report(final, int(self.best_epoch), self.folder)  # type: ignore[arg-type]
        return final

    def discard(self) -> None:
        """Remove the extra file (a trial that ends otherwise, e.g. stopped by the run's rule)."""
        self.best_file.unlink(missing_ok=True)


def after_epoch(state: Any, cfg: dict[str, Any], value: float) -> str:
    """Account for the validation accuracy of the epoch ``state`` just finished (``state.epoch``), before its
    checkpoint is written: patience's count (``state.since_best``, kept whether patience is on or not) and,
    under ``lr_schedule: plateau``, the learning-rate scale (``state.plateau``).  Returns a note for the log."""
    notes = []
    state.since_best.min_delta = cfg["min_delta"]
    if not state.since_best.update(value, state.epoch) and cfg["patience"]:
        notes.append(f"no improvement for {state.since_best.bad_epochs}/{cfg['patience']} epochs")
    if cfg["lr_schedule"] == "plateau":
        if state.plateau.step(value, state.epoch, cfg["plateau_factor"], cfg["plateau_patience"],
                              cfg["plateau_threshold"], cfg["min_lr_factor"]):
            notes.append(f"plateau: learning rate now x{state.plateau.scale:.4g}")
    return "".join(f"; {n}" for n in notes)


def train_epochs(name: str, state: Any, cfg: dict[str, Any], epochs: int, checkpoint_dir: Path, checkpoint_file: str,
                 one_epoch: Callable[[], dict[str, float]], save: Callable[[], None], report: Report) -> bool:
    """The epoch loop both bundled trials share: ``one_epoch`` trains and evaluates (its metrics include
    ``val_accuracy``), then patience and the plateau schedule are accounted (:func:`after_epoch`), ``save``
    writes the checkpoint and the epoch is reported; with ``patience`` on, the loop stops after that many
    epochs without improvement and the best epoch's checkpoint and metrics become the trial's result.

    Returns True when the trial's final checkpoint is ``state`` as it is in memory (patience off, or its
    best epoch was the last), so that the state may be kept for a child (:func:`keep_state`)."""
    keep = KeepBest(checkpoint_dir, checkpoint_file, cfg["min_delta"]) if cfg["patience"] else None
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            metrics = one_epoch()
            notes = after_epoch(state, cfg, metrics["val_accuracy"])
            save()
            if keep is not None:
                metrics = keep.update(metrics, state.epoch)
            print(f"[{name}] epoch {state.epoch}: val_accuracy {metrics['val_accuracy']:.4f} "
                  f"val_loss {metrics['val_loss']:.4f} ({time.perf_counter() - t0:.2f} s)" + notes, flush=True)
            report(metrics, state.epoch, checkpoint_dir)
            if cfg["patience"] and state.since_best.bad_epochs >= cfg["patience"]:
                break
        if keep is not None:
            stopped = keep.last_epoch
            final = keep.finish(report)
            if final is not None:
                print(f"[{name}] best epoch {keep.best_epoch} (val_accuracy {final['val_accuracy']:.4f}) of epochs "
                      f"up to {stopped}: its checkpoint and metrics are the trial's result", flush=True)
            return keep.best_epoch == stopped
        return True
    finally:
        if keep is not None:
            keep.discard()


def continued(name: str, in_place: Continuation | None, parent_checkpoint: str | None,
              accept: Callable[[Any], bool]) -> Any | None:
    """The parent's live state when this trial continues in place (``accept`` says whether it can), else
    None: the trial then loads ``parent_checkpoint``."""
    if in_place is None or not parent_checkpoint:
        return None
    state = in_place.parent_state(accept)
    if state is not None:
        print(f"[{name}] continuing in place from the parent's state in this worker (its checkpoint is not read)",
              flush=True)
    return state


def keep_state(in_place: Continuation | None, state: Any, exact: bool) -> None:
    """Leave ``state`` in this worker for a child when it is what the final checkpoint holds (``exact``)."""
    if in_place is not None and exact:
        in_place.keep(state)
