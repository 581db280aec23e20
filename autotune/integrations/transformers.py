"""Hugging Face ``Trainer`` under autotune: one callback, and resuming from the parent's checkpoint.

An existing Trainer script needs three changes::

    from autotune.integrations.transformers import AutotuneCallback, parent_checkpoint, train_epochs

    args = TrainingArguments(..., num_train_epochs=train_epochs(3), eval_strategy="epoch")
    trainer = Trainer(..., callbacks=[AutotuneCallback()])
    trainer.train(resume_from_checkpoint=parent_checkpoint())

What the callback does inside a trial (outside one it does nothing, so the script still runs alone):

* every evaluation is a report of all its metrics as the Trainer names them (``eval_accuracy``,
  ``eval_loss``; ``metrics={"eval_accuracy": "accuracy"}`` renames), at step = evaluations so far, the
  parent's included, so early stopping's ``grace_period`` counts evaluations and a trial's ``budget``
  is the evaluations it adds (the callback stops training after them);
* the Trainer saves a checkpoint at every evaluation, in the trial's own folder (``args.output_dir`` is
  moved there), and that ``checkpoint-N`` folder is the report's checkpoint;
* a trial the run's early-stopping rule stops ends cleanly (``control.should_training_stop``) at the
  judged evaluation, and is recorded as pruned;
* a Population-Based child resumes its parent's checkpoint (model, optimizer, schedule, step) and then
  trains at its OWN learning rate and weight decay: the Trainer restores the parent's rates with the
  optimizer and scheduler states, which would silently undo the perturbation (ray#36660), so the
  callback puts the child's ``args.learning_rate`` back into the optimizer's groups and the scheduler's
  base rates at the schedule's current factor.  Groups with different rates keep their ratios (the
  largest gets ``args.learning_rate``).

It works the same in a Python objective and in a script trial (``autotune run train.py --space ...``):
the trial is found through :func:`autotune.trial.current_trial`.  A script gets autotune's
``--NAME=VALUE`` settings plus ``--saved_params_dir=DIR`` and, for a child, ``--model_path=DIR``;
:func:`trial_config` gives the settings without parsing them.  Needs the ``hf`` extra.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

from ..errors import MissingExtraError, TrialError
from ..trial import Trial, current_trial

try:
    from transformers import TrainerCallback
except ImportError:  # the hf extra is not installed: the names below say so when used
    TrainerCallback = None  # type: ignore[assignment,misc]

HF_DIR = "hf"  # the Trainer's output folder inside a trial's folder


def _trial() -> Trial | None:
    """The running trial, or None outside autotune."""
    try:
        return current_trial()
    except TrialError:
        return None


def parent_checkpoint() -> str | None:
    """The parent's Trainer checkpoint folder for ``trainer.train(resume_from_checkpoint=...)``: a
    Population-Based child's, else None (a fresh fine-tune, or outside autotune)."""
    trial = _trial()
    return trial.parent_checkpoint if trial is not None and trial.parent_checkpoint else None


def train_epochs(default: float) -> float:
    """``num_train_epochs`` for a Trainer that evaluates once per epoch: inside a trial with a budget, the
    parent's epochs plus the budget (the resumed Trainer counts its parent's); else ``default``."""
    trial = _trial()
    if trial is None or not trial.budget:
        return default
    return (trial.start_step if trial.parent_checkpoint else 0) + float(trial.budget)


def trial_config(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The trial's hyperparameters over ``defaults`` (just ``defaults`` outside autotune)."""
    trial = _trial()
    return {**(defaults or {}), **(trial.config if trial is not None else {})}


def apply_rates(optimizer: Any, scheduler: Any, learning_rate: float, weight_decay: float | None) -> None:
    """Set ``learning_rate`` as the optimizer's base rate at the schedule's current factor (the rates a
    checkpoint restored are replaced); groups keep their ratios to the largest.  Groups with weight
    decay get ``weight_decay``."""
    groups = optimizer.param_groups
    bases = [float(g.get("initial_lr", g["lr"])) for g in groups]
    top = max(bases) if bases else 0.0
    if top <= 0:
        return
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the scheduler
    new_bases = []
    for g, base in zip(groups, bases):
        factor = float(g["lr"]) / base if base > 0 else 1.0
        new_base = learning_rate * base / top
        g["initial_lr"], g["lr"] = new_base, new_base * factor
        if weight_decay is not None and g.get("weight_decay", 0.0):
            g["weight_decay"] = weight_decay
        new_bases.append(new_base)
    if inner is not None and hasattr(inner, "base_lrs"):
        inner.base_lrs = list(new_bases)
        inner._last_lr = [g["lr"] for g in groups]


def _callback_base() -> type:
    if TrainerCallback is None:
        raise MissingExtraError("autotune.integrations.transformers (Hugging Face transformers)", "hf")
    return TrainerCallback


class AutotuneCallback(TrainerCallback if TrainerCallback is not None else object):  # type: ignore[misc]
    """Reports evaluations, hands checkpoints to autotune, stops pruned trials, and applies a child's rates
    after its parent's checkpoint is restored (see the module's docstring)."""

    def __init__(self, metrics: Mapping[str, str] | None = None) -> None:
        _callback_base()
        self.rename = dict(metrics or {})
        self.trial = _trial()
        self.evaluations = 0
        self.pending: dict[str, float] | None = None
        self._warned = False

    # -- where the Trainer writes, and a child's rates ------------------------------------------
    def _redirect(self, args: Any) -> None:
        if self.trial is None:
            return
        own = self.trial.dir.resolve()
        out = Path(args.output_dir).resolve() if args.output_dir else None
        if out is None or (out != own and own not in out.parents):
            args.output_dir = str(own / HF_DIR)  # trials never share a folder

    def on_init_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self._redirect(args)
        return control

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                       lr_scheduler: Any = None, **kwargs: Any) -> Any:
        self._redirect(args)
        self.evaluations = 0
        if self.trial is not None and self.trial.parent_checkpoint and state.global_step > 0 and optimizer is not None:
            apply_rates(optimizer, lr_scheduler, float(args.learning_rate), float(args.weight_decay))
        return control

    # -- reports ---------------------------------------------------------------------------------
    def _metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        out = {self.rename.get(k, k): float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.trial is not None and self.trial.metric not in out and not self._warned:
            self._warned = True
            warnings.warn(f"autotune: the run's metric {self.trial.metric!r} is not among the evaluation's "
                          f"metrics {sorted(out)}; set the space's metric to one of them or rename with "
                          "AutotuneCallback(metrics={...})", stacklevel=2)
        return out

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if self.trial is None or not metrics:
            return control
        self.pending = self._metrics(metrics)
        control.should_save = True  # the checkpoint of this evaluation is the report's
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.trial is None or self.pending is None:
            return control
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self._send(control, folder if folder.is_dir() else None)
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.trial is not None and self.pending is not None:  # an evaluation the Trainer did not save after
            self._send(control, None)
        return control

    def _send(self, control: Any, checkpoint: Path | None) -> None:
        assert self.trial is not None and self.pending is not None
        self.evaluations += 1
        start = self.trial.start_step if self.trial.parent_checkpoint else 0
        metrics, self.pending = self.pending, None
        if self.trial.submit(metrics, checkpoint=checkpoint, step=start + self.evaluations):
            control.should_training_stop = True  # pruned: end at the judged evaluation
        elif self.trial.budget and self.evaluations >= round(float(self.trial.budget)):
            control.should_training_stop = True  # this trial's share of the run is done
