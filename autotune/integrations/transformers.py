"""Hugging Face ``Trainer`` under autotune: one callback, and resuming from the parent's checkpoint.

An existing Trainer script needs three changes::

    from autotune.integrations.transformers import AutotuneCallback, train, train_epochs

    args = TrainingArguments(..., num_train_epochs=train_epochs(3), eval_strategy="epoch")
    trainer = Trainer(..., callbacks=[AutotuneCallback()])
    train(trainer)  # = trainer.train(resume_from_checkpoint=parent_checkpoint())

Or, for a Trainer built with ``model_init``, :func:`hyperparameter_search` replaces
``trainer.hyperparameter_search(...)`` (same arguments, returns ``BestRun``).  Under pbt give the space a
``budget`` (evaluations per pbt step) and the Trainer enough epochs (``train_epochs``) to go on.

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

import inspect
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import MissingExtraError
from ..trial import STOP_FILE_NAME, Trial, running_trial

try:
    from transformers import TrainerCallback
    from transformers.trainer_utils import BestRun, default_compute_objective, default_hp_space_optuna
except ImportError:  # the hf extra is not installed: the names below say so when used
    TrainerCallback = None  # type: ignore[assignment,misc]

HF_DIR = "hf"  # the Trainer's output folder inside a trial's folder




def parent_checkpoint() -> str | None:
    """The parent's Trainer checkpoint folder for ``trainer.train(resume_from_checkpoint=...)``: a
    Population-Based child's, else None (a fresh fine-tune, or outside autotune)."""
    trial = running_trial()
    return trial.parent_checkpoint if trial is not None and trial.parent_checkpoint else None


def train_epochs(default: float) -> float:
    """``num_train_epochs`` for a Trainer that evaluates once per epoch: inside a trial, the parent's
    epochs (the resumed Trainer counts them) plus the budget, or plus ``default`` when the trial has
    none; outside autotune ``default``.  The rule of :func:`autotune.integrations.lightning.max_epochs`
    (a fractional budget is rounded up: :attr:`autotune.trial.Trial.budget_steps`)."""
    trial = running_trial()
    if trial is None:
        return default
    return trial.resumed_step + (trial.budget_steps or default)


def trial_config(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The trial's hyperparameters over ``defaults`` (just ``defaults`` outside autotune)."""
    trial = running_trial()
    return {**(defaults or {}), **(trial.config if trial is not None else {})}


def decayed_groups(optimizer: Any, model: Any) -> list[bool]:
    """Which of the optimizer's groups the Trainer gives weight decay: those holding the parameters its
    ``get_decay_parameter_names`` names (not biases, not norms), whatever decay the checkpoint restored
    (a parent trained with decay 0 has 0 in every group).  Without the model: groups with decay now."""
    groups = optimizer.param_groups
    names = None
    if model is not None:
        try:
            from transformers import Trainer

            names = set(Trainer.get_decay_parameter_names(None, model))  # it reads only the model
        except (ImportError, AttributeError, TypeError):
            names = None
    if not names:
        return [bool(g.get("weight_decay", 0.0)) for g in groups]
    decay_ids = {id(p) for n, p in model.named_parameters() if n in names}
    return [any(id(p) in decay_ids for p in g["params"]) for g in groups]


def apply_rates(optimizer: Any, scheduler: Any, learning_rate: float, weight_decay: float | None,
                model: Any = None) -> None:
    """Set ``learning_rate`` as the optimizer's base rate at the schedule's current factor (the rates a
    checkpoint restored are replaced); groups keep their ratios to the largest.  The groups the Trainer
    decays (:func:`decayed_groups`) get ``weight_decay``."""
    groups = optimizer.param_groups
    bases = [float(g.get("initial_lr", g["lr"])) for g in groups]
    top = max(bases) if bases else 0.0
    if top <= 0:
        return
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate wraps the scheduler
    new_bases = []
    for g, base, decayed in zip(groups, bases, decayed_groups(optimizer, model)):
        factor = float(g["lr"]) / base if base > 0 else 1.0
        new_base = learning_rate * base / top
        g["initial_lr"], g["lr"] = new_base, new_base * factor
        if weight_decay is not None and decayed:
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

    def __init__(self, metrics: Mapping[str, str] | None = None,
                 objective: Callable[[dict[str, float]], float] | None = None) -> None:
        _callback_base()
        self.rename = dict(metrics or {})
        self.objective = objective  # adds metric "objective" = objective(eval metrics), as HF's search computes
        self.trial = running_trial()
        self.evaluations = 0
        self.training = False
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
        self.trial = running_trial()
        self._redirect(args)
        return control

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None,
                       lr_scheduler: Any = None, model: Any = None, **kwargs: Any) -> Any:
        # on_train_begin runs after Trainer._load_optimizer_and_scheduler restored the checkpoint's rates
        self.trial = running_trial()
        self._redirect(args)
        self.evaluations, self.training, self.pending = 0, True, None
        if self.trial is not None and self.trial.parent_checkpoint and state.global_step > 0 and optimizer is not None:
            apply_rates(optimizer, lr_scheduler, float(args.learning_rate), float(args.weight_decay), model)
        return control

    # -- reports ---------------------------------------------------------------------------------
    def _metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        out = {self.rename.get(k, k): float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.objective is not None:
            out["objective"] = float(self.objective(dict(metrics)))
        if self.trial is not None and self.trial.metric not in out and not self._warned:
            self._warned = True
            warnings.warn(f"autotune: the run's metric {self.trial.metric!r} is not among the evaluation's "
                          f"metrics {sorted(out)}; set the space's metric to one of them or rename with "
                          "AutotuneCallback(metrics={...})", stacklevel=2)
        return out

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Mapping[str, Any] | None = None,
                    **kwargs: Any) -> Any:
        if not self.training:  # trainer.evaluate() after train(): a report of its own, no checkpoint
            self.trial = self.trial or running_trial()
        if self.trial is None or not metrics:
            return control
        # one evaluation may be several calls (a dict of eval datasets): they merge into one report
        self.pending = {**(self.pending or {}), **self._metrics(metrics)}
        if not self.training:
            self._send(control, None)
            return control
        control.should_save = True  # Trainer saves right after on_evaluate (_maybe_log_save_evaluate)
        return control

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.trial is not None and self.pending is not None:  # evaluated without a save (save_strategy="best")
            self._send(control, None)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        # a script trial hears of its stop through a file the driver writes shortly after its report
        if self.trial is not None and (self.trial.should_stop or (self.trial.dir / STOP_FILE_NAME).exists()):
            control.should_training_stop = True
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
        self.training = False
        return control

    def _send(self, control: Any, checkpoint: Path | None) -> None:
        assert self.trial is not None and self.pending is not None
        self.evaluations += 1
        metrics, self.pending = self.pending, None
        if self.trial.submit(metrics, checkpoint=checkpoint, step=self.trial.resumed_step + self.evaluations):
            control.should_training_stop = True  # pruned: end at the judged evaluation
        elif self.trial.budget_steps and self.evaluations >= self.trial.budget_steps:
            control.should_training_stop = True  # this trial's share of the run is done


def train(trainer: Any, **kwargs: Any) -> Any:
    """``trainer.train(resume_from_checkpoint=parent_checkpoint(), **kwargs)``: a Population-Based child
    resumes its parent's Trainer checkpoint, any other run starts fresh."""
    kwargs.setdefault("resume_from_checkpoint", parent_checkpoint())
    return trainer.train(**kwargs)


# -- the drop-in for Trainer.hyperparameter_search ---------------------------------------------------
class _SpaceRecorder:
    """Stands in for an ``optuna.Trial`` in an Optuna-style ``hp_space``: each ``suggest_*`` becomes an
    autotune parameter (and returns a value inside its range, so the function runs on)."""

    def __init__(self) -> None:
        self.params: dict[str, dict[str, Any]] = {}

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float:
        if step is not None:
            raise ValueError(f"hp_space: suggest_float({name!r}, step=...) has no autotune form; use suggest_int "
                             "or suggest_categorical")
        self.params[name] = {"type": "float", "low": float(low), "high": float(high), "log": bool(log)}
        return float(low)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.params[name] = {"type": "int", "low": int(low), "high": int(high), "step": int(step), "log": bool(log)}
        return int(low)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.params[name] = {"type": "categorical", "choices": list(choices)}
        return list(choices)[0]


def autotune_space(hp_space: Callable[[Any], Mapping[str, Any]] | Mapping[str, Any] | None) -> dict[str, Any]:
    """An autotune space (``{"params": {...}}``) from an Optuna-style ``hp_space(trial)`` (called once with
    a recorder), an autotune space dict (returned as is), or None (HF's default Optuna space)."""
    if isinstance(hp_space, Mapping):
        return dict(hp_space) if "params" in hp_space else {"params": dict(hp_space)}
    if hp_space is None:
        _callback_base()
        hp_space = default_hp_space_optuna
    recorder = _SpaceRecorder()
    hp_space(recorder)
    if not recorder.params:
        raise ValueError("hp_space suggested no parameter (expected trial.suggest_float/_int/_categorical calls)")
    return {"params": recorder.params}


def _set_args(trainer: Any, config: Mapping[str, Any]) -> None:
    """Set a trial's hyperparameters on ``trainer.args`` as ``Trainer._hp_search_setup`` does (cast to the
    field's type; names TrainingArguments lacks are skipped with a warning; the model_init may read them),
    except that a fractional value is never truncated to an int field's type: ``warmup_steps=0.1`` is a
    ratio, which Hugging Face's own search turns into 0."""
    for key, value in config.items():
        if not hasattr(trainer.args, key):
            warnings.warn(f"autotune: {key!r} is not a TrainingArguments field; passed to model_init only",
                          stacklevel=3)
            continue
        old = getattr(trainer.args, key)
        fractional = (isinstance(old, int) and not isinstance(old, bool) and isinstance(value, float)
                      and not value.is_integer())
        setattr(trainer.args, key, value if old is None or fractional else type(old)(value))
    trainer._train_batch_size = trainer.args.train_batch_size
    trainer.create_accelerator_and_postprocess()


def hyperparameter_search(
    trainer: Any,
    hp_space: Callable[[Any], Mapping[str, Any]] | Mapping[str, Any] | None = None,
    compute_objective: Callable[[dict[str, float]], float] | None = None,
    n_trials: int = 20,
    direction: str = "minimize",
    backend: Any = None,
    hp_name: Any = None,
    **options: Any,
) -> Any:
    """``trainer.hyperparameter_search(...)`` on autotune: the same arguments and ``BestRun``, so moving is
    ``trainer.hyperparameter_search(`` -> ``hyperparameter_search(trainer, `` (``backend`` and ``hp_name``
    are accepted and ignored: autotune is the backend, trial folders are named by autotune).

    The trainer needs ``model_init`` (a 1-argument one gets the trial's config dict, as with Ray).  Each
    trial: the config set on ``trainer.args``, a fresh model, the callback attached (every evaluation a
    report of ``objective`` = ``compute_objective(metrics)``, HF's default: eval_loss alone, else the sum of
    the metrics), :func:`train` (pbt children warm-start), and ``trainer.evaluate()`` if training made no
    evaluation.  ``options`` go to :func:`autotune.run`; defaults here: ``executor="local"`` (the trainer
    lives in this process, so trials run one at a time in it), ``sampler="bayes"`` (TPE, Optuna's
    default), ``evaluator="full"``, ``output=trainer.args.output_dir``, ``name="hp_search"``.  ``n_trials``
    becomes ``rounds x popsize``: n_trials x 1 under ``full``, popsize min(4, n_trials) and rounds rounded
    up under ``pbt``; explicit ``rounds``/``popsize`` win.  ``run_summary`` is autotune's Result.
    """
    import autotune

    _callback_base()  # MissingExtraError without the hf extra
    if trainer.model_init is None:
        raise RuntimeError("To use hyperparameter search, you need to pass your model through a model_init function.")
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize' (one objective), got {direction!r}")
    space = {**autotune_space(hp_space), "metric": "objective", "mode": "max" if direction == "maximize" else "min"}
    options.setdefault("evaluator", "full")
    popsize = options.setdefault("popsize", 1 if options["evaluator"] == "full" else max(1, min(4, n_trials)))
    options.setdefault("rounds", max(1, -(-n_trials // popsize)))
    options.setdefault("sampler", "bayes")
    options.setdefault("executor", "local")
    options.setdefault("output", trainer.args.output_dir)
    options.setdefault("name", "hp_search")
    callback = next((c for c in trainer.callback_handler.callbacks if isinstance(c, AutotuneCallback)), None)
    added = callback is None
    if callback is None:
        callback = AutotuneCallback()
        trainer.add_callback(callback)
    callback.objective = compute_objective or default_compute_objective
    model_init, output_dir = trainer.model_init, trainer.args.output_dir
    searched = list(space["params"])

    def objective(config: dict[str, Any], trial: Trial) -> None:
        try:
            _set_args(trainer, config)
            if len(inspect.signature(model_init).parameters) == 1:
                trainer.model_init = lambda: model_init(dict(config))
            train(trainer)
            if callback.evaluations == 0 and not trial.should_stop:
                trainer.evaluate()  # nothing evaluated during training: one report at the end, as HF does
        finally:
            trainer.model_init, trainer.args.output_dir, callback.trial = model_init, output_dir, None

    try:
        result = autotune.run(objective, space=space, **options)
    finally:
        trainer.model_init, trainer.args.output_dir = model_init, output_dir
        if added:
            trainer.remove_callback(callback)
    best = result.best
    if best is None:
        raise RuntimeError(f"no trial of the search completed; see {result.path}")
    return BestRun(str(best.trial_id), float(best.value), {k: best.config[k] for k in searched if k in best.config},
                   result)
