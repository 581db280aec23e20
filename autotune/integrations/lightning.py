"""Lightning under autotune: one callback, and warm starts from the parent's checkpoint.

An existing Lightning script needs three changes::

    from autotune.integrations.lightning import AutotuneCallback, ckpt_path, max_epochs

    trainer = L.Trainer(max_epochs=max_epochs(10), callbacks=[AutotuneCallback()])
    trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path())

What the callback does inside a trial (outside one it does nothing, so the script still runs alone):

* every validation of ``fit`` (not the sanity check) is a report of the scalar
  ``trainer.callback_metrics`` as logged (``self.log("val_acc", ...)``; ``metrics={"val_acc":
  "accuracy"}`` renames), at step = validations so far, the parent's included (``start_step + k``), so
  early stopping's ``grace_period`` counts validations and a trial's ``budget`` is the validations it
  adds: the callback stops training after them.  It warns once when the run's metric is not logged;
* each validation is saved with ``trainer.save_checkpoint`` as ``checkpoint/validation-STEP.ckpt`` in
  the trial's folder (the older one is removed), and named in that report;
* a trial the run's early-stopping rule stops ends cleanly (``trainer.should_stop``) at the judged
  validation, and is recorded as pruned (``min_epochs``/``min_steps`` can delay that, as for any stop);
* a Population-Based child passes :func:`ckpt_path` to ``fit``: Lightning restores the parent's model,
  optimizer, schedulers and loop position (the global step and epoch go on from the parent's), and the
  callback then puts the CHILD's optimizer hyperparameters back (ray#36660: the restored optimizer state
  holds the parent's learning rate, so a perturbation would be silently lost).  ``on_fit_start`` runs
  after the child's ``configure_optimizers`` and before ``restore_training_state``; the callback copies
  every param-group setting there (lr, initial_lr, weight_decay, betas, momentum, ...) and re-applies it
  in ``on_train_start``, after the restore.  A scheduler with ``base_lrs`` gets the child's base rates
  and the learning rate stays at the restored schedule's factor (rate / base rate); without one the
  rate is the child's as configured.

Epochs: the restored loop counts the parent's epochs, so ``max_epochs`` must reach past them;
:func:`max_epochs` gives ``start_step + budget`` for one validation per epoch (``max_epochs=-1`` works
too: the budget ends the trial).  Without a budget a child trains until its ``max_epochs``, counted
from its parent's epoch.

Multi-process training (DDP launched as a script trial, ``strategy="ddp"``: every rank finds the trial
through the environment): every rank saves (``save_checkpoint`` is collective), only rank 0 reports,
and its stop decision reaches every rank through ``trainer.strategy.broadcast``.  Log the metric with
``sync_dist=True`` for rank 0 to report the mean over ranks.  ``ddp_spawn`` from a Python objective is
not supported: the spawned ranks do not hold the trial.

Needs the ``lightning`` extra (``lightning.pytorch``; ``pytorch_lightning`` is used when only it is
installed).
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Any, Mapping

from ..errors import MissingExtraError, TrialError
from ..trial import Trial, running_trial

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the lightning extra is not installed
    try:
        from pytorch_lightning.callbacks import Callback
    except ImportError:  # neither: the names below say which extra to install when used
        Callback = None  # type: ignore[assignment,misc]

CHECKPOINT_DIR = "checkpoint"  # inside the trial's folder: a script trial's --saved_params_dir too
_CKPT = re.compile(r"validation-(\d+)\.ckpt$")




def ckpt_path(trial: Trial | None = None) -> str | None:
    """The parent's ``.ckpt`` file for ``trainer.fit(..., ckpt_path=...)``: a Population-Based child's,
    else None (training from scratch, or outside autotune).  The parent's checkpoint may be the file
    itself or a folder holding it (a script trial's); a folder without one is an error."""
    trial = trial if trial is not None else running_trial()
    if trial is None or not trial.parent_checkpoint:
        return None
    path = Path(trial.parent_checkpoint)
    if path.is_file():
        return str(path)
    found = sorted(path.glob("*.ckpt"), key=_ckpt_order) if path.is_dir() else []
    if not found:
        raise TrialError(f"trial {trial.id}: the parent checkpoint {str(path)!r} holds no Lightning .ckpt file")
    return str(found[-1])


def _ckpt_order(path: Path) -> tuple[int, float]:
    """Newest last: by the validation number in the name, then by modification time."""
    m = _CKPT.search(path.name)
    return (int(m.group(1)) if m else -1, path.stat().st_mtime)


def max_epochs(epochs: int) -> int:
    """``Trainer(max_epochs=...)`` for a loop that validates once per epoch: inside a trial with a budget,
    the parent's epochs plus the budget (a restored loop counts its parent's); inside one without a
    budget, the parent's plus ``epochs``; outside autotune ``epochs``."""
    trial = running_trial()
    if trial is None:
        return epochs
    return trial.resumed_step + (trial.budget_steps or epochs)


def _callback_base() -> type:
    if Callback is None:
        raise MissingExtraError("autotune.integrations.lightning (Lightning)", "lightning")
    return Callback


# -- a child's optimizer hyperparameters ---------------------------------------------------------------
def snapshot_hyperparameters(optimizers: list[Any]) -> list[list[dict[str, Any]]]:
    """Every param-group setting but the parameters, per optimizer and group (deep copies)."""
    return [[{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
            for opt in optimizers]


def apply_hyperparameters(optimizers: list[Any], schedulers: list[Any], fresh: list[list[dict[str, Any]]]) -> None:
    """Put ``fresh`` (from :func:`snapshot_hyperparameters`) back into ``optimizers`` after a checkpoint
    restore.  A scheduler with ``base_lrs`` gets the fresh base rates and the rate keeps the restored
    schedule's factor; an optimizer without one gets the fresh rate itself.  A group count that differs
    from the snapshot's (a different model) is left as restored, with a warning."""
    by_optimizer: dict[int, list[Any]] = {}
    for s in schedulers:
        if isinstance(getattr(s, "base_lrs", None), list) and getattr(s, "optimizer", None) is not None:
            by_optimizer.setdefault(id(s.optimizer), []).append(s)
    for opt, groups in zip(optimizers, fresh):
        if len(opt.param_groups) != len(groups):
            warnings.warn(f"autotune: the restored optimizer has {len(opt.param_groups)} parameter groups, the "
                          f"trial's own {len(groups)}: its hyperparameters were left as restored", stacklevel=2)
            continue
        scheds = by_optimizer.get(id(opt), [])
        for i, (group, mine) in enumerate(zip(opt.param_groups, groups)):
            restored = group.get("lr")
            for k, v in mine.items():
                if k not in ("lr", "initial_lr"):
                    group[k] = copy.deepcopy(v)
            if "lr" not in mine:
                continue
            base = mine.get("initial_lr", mine["lr"])
            factor = 1.0
            for s in scheds:
                old = s.base_lrs[i] if i < len(s.base_lrs) else None
                if s is scheds[0] and old and restored is not None:
                    factor = float(restored) / float(old)
                if old is not None:
                    s.base_lrs[i] = base
            group["lr"] = base * factor if scheds else mine["lr"]
            if "initial_lr" in group or "initial_lr" in mine:
                group["initial_lr"] = base
        for s in scheds:
            s._last_lr = [g["lr"] for g in opt.param_groups]


# -- the callback --------------------------------------------------------------------------------------
class AutotuneCallback(Callback if Callback is not None else object):  # type: ignore[misc]
    """Reports validations, saves and names their checkpoints, stops pruned trials (all ranks), and
    re-applies a warm-started child's own optimizer hyperparameters (see the module's docstring)."""

    def __init__(self, metrics: Mapping[str, str] | None = None, save_checkpoints: bool = True,
                 trial: Trial | None = None) -> None:
        _callback_base()
        self.rename = dict(metrics or {})
        self.save_checkpoints = save_checkpoints
        self.trial = trial
        self.validations = 0  # in this fit, i.e. past the parent's
        self._fresh: list[list[dict[str, Any]]] | None = None
        self._warned = False
        self._last: Path | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.trial is None:
            self.trial = running_trial()  # a script trial's ranks each find it through the environment

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        """The child's fresh optimizers exist; its parent's state is not restored yet."""
        self.validations = 0
        self._fresh = snapshot_hyperparameters(list(trainer.optimizers)) if self.trial is not None else None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """After ``restore_training_state``: the child's hyperparameters go back in."""
        fresh, self._fresh = self._fresh, None
        if self.trial is not None and fresh is not None and trainer.ckpt_path:
            schedulers = [c.scheduler for c in trainer.lr_scheduler_configs]
            apply_hyperparameters(list(trainer.optimizers), schedulers, fresh)

    def _metrics(self, trainer: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for k, v in trainer.callback_metrics.items():
            if hasattr(v, "numel") and v.numel() != 1:
                continue
            try:
                out[self.rename.get(k, k)] = float(v)
            except (TypeError, ValueError):
                continue
        assert self.trial is not None
        if self.trial.metric not in out and not self._warned:
            self._warned = True
            warnings.warn(f"autotune: the run's metric {self.trial.metric!r} is not among the logged metrics "
                          f"{sorted(out)}; log it with self.log(...) or rename with AutotuneCallback(metrics={{...}})",
                          stacklevel=2)
        return out

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        trial = self.trial
        if trial is None or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.validations += 1
        step = trial.resumed_step + self.validations
        path = None
        if self.save_checkpoints:
            path = trial.dir / CHECKPOINT_DIR / f"validation-{step}.ckpt"
            trainer.save_checkpoint(str(path))  # every rank: the save is collective
        stop = False
        if trainer.is_global_zero:
            stop = trial.submit(self._metrics(trainer), checkpoint=path, step=step)
            if path is not None:
                if self._last is not None and self._last != path:
                    self._last.unlink(missing_ok=True)  # the trial's checkpoint is now this one
                self._last = path
        stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop or (trial.budget_steps is not None and self.validations >= trial.budget_steps):
            trainer.should_stop = True
