"""Image-classification fine-tune trial: a pretrained CNN -> a new labelled image set.

Default workload: the small CNN pretrained on MNIST digits (``weights/mnist_cnn.pt``) fine-tuned on
100 labelled Fashion-MNIST images per class (bundled, ``data/fashion_mnist_small.npz``), validated on a
fixed 2,000-image set.  Runs offline on a CPU in seconds per epoch; on a GPU with mixed precision.

Two ways to run it:

* as an objective: ``trial: trials/image_classification.py:objective`` (see search_spaces/lr_bs.yaml);
* as a script (PaddleHub AutoDL Finetuner protocol)::

      python trials/image_classification.py --learning_rate=0.001 --batch_size=32 \\
          --saved_params_dir=DIR [--model_path=PARENT_DIR] [--epochs=3] [--model=small_cnn] ...

Every epoch reports ``val_accuracy`` and ``val_loss`` (and ``train_loss``) at step = the cumulative
epoch count, parent's epochs included, with a checkpoint (``state.pt``: model, optimizer, LR schedule,
cumulative epoch) that a Population-Based child resumes exactly.  A child's learning rate, weight
decay and momentum come from its own config; its batch size simply takes effect.

Continue in place (as an objective): a child that runs in the worker process that ran its parent takes
the parent's model, optimizer and schedule state from memory (``trial.parent_state()``) instead of
reading ``state.pt``, and then applies its own hyperparameters exactly as after a load; the result is
the same as from the file.  A trial keeps its state for a child (``trial.keep``) when its final
checkpoint is that state (patience off, or its best epoch was its last).  The prepared data set is
cached per process, keyed by its settings.

Within a trial (both off by default; a search can tune or fix them like any setting):

* ``patience: N`` stops training once the validation accuracy has not improved (by more than
  ``min_delta``) for N epochs in a row, and makes the trial's best epoch its result.  While it trains,
  the best epoch's checkpoint is kept beside the last one (``best-state.pt``: one extra file, never one
  per epoch) and every report carries ``best_epoch``.  When training ends -- patience reached or budget
  spent -- ``best-state.pt`` replaces ``state.pt`` and the trial reports the best epoch's metrics once
  more, with ``best_epoch`` and ``last_epoch``, *at the best epoch's step*, with the checkpoint.
  autotune takes a trial's value from its last report and its checkpoint (and the step a child starts
  from) from the last report that names one, so the trial's value is its best epoch's accuracy and a
  Population-Based child continues from the best epoch.  Repeating a step breaks no learning curve:
  the database keeps one intermediate value per step and this one is unchanged, and the run's
  early-stopping rule judges each step once.  A trial stopped by that rule keeps its last epoch.
* ``lr_schedule: plateau`` multiplies the learning rate by ``plateau_factor`` (default 0.5) each time
  the validation accuracy has not improved (by more than ``plateau_threshold``) for
  ``plateau_patience`` (default 2) epochs in a row, never below ``min_lr_factor`` x the configured
  rate; the count restarts after each reduction.

Both travel in ``state.pt`` (``since_best``: best accuracy, its epoch, epochs since; ``plateau``: the
scale and its own count) and a child resumes them exactly, so patience counts along the lineage.  A
child whose config changes these settings applies its own from its first epoch on to the counts it
inherited, and the inherited plateau scale multiplies its own learning rate; a child on another
schedule drops the scale (a later plateau trial starts again at 1).  A trial's best epoch is one it
trained itself (a child's first epoch is its first candidate), while patience counts from the
lineage's best: a child that inherits N-1 epochs without improvement stops after its first epoch
unless that epoch improves.  In script mode: ``--patience=3 --lr_schedule=plateau ...``.

Settings (config keys, all optional; see ``DEFAULTS``): learning_rate, batch_size, epochs (used when
the trial has no budget), model (small_cnn | efficientnet_lite0 | any torchvision classifier name),
weights (DEFAULT | none | PATH to a state_dict), data (fashion-mnist-small | fashion-mnist | mnist |
an ImageFolder dir with train/ and val/), data_root, labels_per_class, val_size, data_seed,
image_size, head_lr_mult, freeze_epochs, weight_decay, optimizer (adamw | adam | sgd), momentum,
label_smoothing, lr_schedule (constant | cosine | step | plateau), schedule_epochs, step_size, gamma,
min_lr_factor, plateau_factor, plateau_patience, plateau_threshold, patience, min_delta, augment, seed,
max_batches, device (auto | cpu | cuda), amp.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import _harness  # noqa: E402
from _harness import budget_epochs, pick_device, set_threads  # noqa: E402

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = "autotune-image-classification/1"

DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "batch_size": 32,
    "epochs": 3,
    "model": "small_cnn",
    "weights": "DEFAULT",
    "data": "fashion-mnist-small",
    "data_root": None,
    "labels_per_class": 100,
    "val_size": 2000,
    "data_seed": 0,
    "image_size": None,  # None: 28 for small_cnn, 64 for ImageNet models
    "head_lr_mult": 1.0,
    "freeze_epochs": 0,
    "weight_decay": 1e-4,
    "optimizer": "adamw",
    "momentum": 0.9,
    "label_smoothing": 0.0,
    "lr_schedule": "constant",
    "schedule_epochs": None,
    "step_size": 5,
    "gamma": 0.5,
    "min_lr_factor": 0.05,
    **_harness.WITHIN_TRIAL_DEFAULTS,  # patience, min_delta, plateau_factor, plateau_patience, plateau_threshold
    "augment": True,
    "seed": None,
    "max_batches": None,
    "device": "auto",
    "amp": True,
}
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "step", "plateau")


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------
def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and values checked; unknown keys are kept but named in a warning."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        print(f"[image_classification] ignoring unknown settings: {', '.join(unknown)}", file=sys.stderr)
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    for k in ("learning_rate", "head_lr_mult", "weight_decay", "momentum", "label_smoothing", "gamma",
              "min_lr_factor"):
        cfg[k] = float(cfg[k])
    for k in ("batch_size", "epochs", "freeze_epochs", "data_seed", "step_size"):
        cfg[k] = int(round(float(cfg[k])))
    for k in ("labels_per_class", "val_size", "image_size", "schedule_epochs", "seed", "max_batches"):
        cfg[k] = None if cfg[k] in (None, "", "none", "None") else int(round(float(cfg[k])))
    for k in ("augment", "amp"):
        if isinstance(cfg[k], str):
            cfg[k] = cfg[k].strip().lower() in ("1", "true", "yes", "on")
    cfg["optimizer"] = str(cfg["optimizer"]).lower()
    cfg["lr_schedule"] = str(cfg["lr_schedule"]).lower()
    problems = []
    if not (cfg["learning_rate"] > 0 and math.isfinite(cfg["learning_rate"])):
        problems.append(f"learning_rate must be > 0, got {cfg['learning_rate']}")
    if cfg["batch_size"] < 1:
        problems.append(f"batch_size must be >= 1, got {cfg['batch_size']}")
    if cfg["optimizer"] not in OPTIMIZERS:
        problems.append(f"optimizer must be one of {OPTIMIZERS}, got {cfg['optimizer']!r}")
    if cfg["lr_schedule"] not in SCHEDULES:
        problems.append(f"lr_schedule must be one of {SCHEDULES}, got {cfg['lr_schedule']!r}")
    if not 0 <= cfg["label_smoothing"] < 1:
        problems.append(f"label_smoothing must be in [0, 1), got {cfg['label_smoothing']}")
    problems += _harness.resolve_within_trial(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


# ----------------------------------------------------------------------------------------------
# Data, prepared once per process
# ----------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    train_x: torch.Tensor  # float [0, 1], on the device
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: list[str]


_PREPARED: dict[tuple[Any, ...], Prepared] = {}


def prepare_data(cfg: dict[str, Any], pre: _common.Preprocess, device: torch.device) -> Prepared:
    key = (cfg["data"], cfg["data_root"], cfg["labels_per_class"], cfg["val_size"], cfg["data_seed"],
           pre.channels, pre.size, str(device))
    if key not in _PREPARED:
        data = _common.load_data(cfg["data"], cfg["data_root"], pre.size)
        tx, ty, vx, vy = _common.select_subset(data, cfg["labels_per_class"], cfg["val_size"], cfg["data_seed"])
        _PREPARED.clear()  # one prepared set per worker is plenty
        _PREPARED[key] = Prepared(pre.prepare(tx).to(device), ty.to(device), pre.prepare(vx).to(device),
                                  vy.to(device), data.classes)
    return _PREPARED[key]


# ----------------------------------------------------------------------------------------------
# Training state: model, optimizer, schedule, cumulative epoch
# ----------------------------------------------------------------------------------------------
@dataclass
class Schedule:
    """A per-epoch multiplier on the base learning rate, a function of the cumulative epoch only.

    Because the multiplier is applied on top of whatever base lr the config gives, a child restored
    with a new learning rate follows the same curve scaled to its own lr.
    """

    kind: str = "constant"
    horizon: int | None = None
    step_size: int = 5
    gamma: float = 0.5
    min_factor: float = 0.05

    def factor(self, epoch: int) -> float:
        if self.kind == "cosine":
            h = max(1, self.horizon or 1)
            t = min(epoch, h) / h
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        if self.kind == "step":
            return self.gamma ** (epoch // max(1, self.step_size))
        return 1.0

    def state_dict(self) -> dict[str, Any]:
        return dict(kind=self.kind, horizon=self.horizon, step_size=self.step_size, gamma=self.gamma,
                    min_factor=self.min_factor)


@dataclass
class TrainState:
    model: nn.Module
    head: nn.Linear
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    epoch: int
    pre: _common.Preprocess
    scaler: Any = None
    note: str | None = None
    plateau: _harness.PlateauLR = field(default_factory=_harness.PlateauLR)  # lr_schedule: plateau
    since_best: _harness.Improvement = field(default_factory=_harness.Improvement)  # patience's count
    model_name: str = ""  # the config's model, optimizer and schedule this state was trained with
    optimizer_name: str = ""
    lr_schedule: str = ""


def _param_groups(model: nn.Module, head: nn.Linear) -> list[dict[str, Any]]:
    head_ids = {id(p) for p in head.parameters()}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return [{"params": backbone, "name": "backbone"}, {"params": list(head.parameters()), "name": "head"}]


def make_optimizer(cfg: dict[str, Any], model: nn.Module, head: nn.Linear) -> torch.optim.Optimizer:
    groups = _param_groups(model, head)
    lr, wd = cfg["learning_rate"], cfg["weight_decay"]
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    if cfg["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    return torch.optim.SGD(groups, lr=lr, weight_decay=wd, momentum=cfg["momentum"])


def apply_hparams(state: TrainState, cfg: dict[str, Any]) -> None:
    """The config's lr (times the schedule's factor at the current epoch), weight decay and momentum."""
    f = state.schedule.factor(state.epoch)
    if cfg["lr_schedule"] == "plateau":
        f *= state.plateau.scale
    for group in state.optimizer.param_groups:
        mult = cfg["head_lr_mult"] if group.get("name") == "head" else 1.0
        group["lr"] = cfg["learning_rate"] * mult * f
        group["weight_decay"] = cfg["weight_decay"]
        if "momentum" in group:
            group["momentum"] = cfg["momentum"]


def _schedule_from(cfg: dict[str, Any], saved: dict[str, Any] | None, end_epoch: int) -> Schedule:
    horizon = cfg["schedule_epochs"]
    if horizon is None and saved and saved.get("kind") == cfg["lr_schedule"]:
        horizon = saved.get("horizon")  # keep the parent's horizon so a child does not restart the curve
    if horizon is None:
        horizon = end_epoch
    return Schedule(cfg["lr_schedule"], horizon, cfg["step_size"], cfg["gamma"], cfg["min_lr_factor"])


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (a folder holding state.pt, or the file)."""
    return _harness.load_checkpoint(path, CHECKPOINT_FILE, CHECKPOINT_FORMAT, "image_classification")


def make_state(cfg: dict[str, Any], num_classes: int, device: torch.device, parent_checkpoint: str | None,
               epochs: int, seed: int, ckpt: dict[str, Any] | None = None, kept: TrainState | None = None) -> TrainState:
    """A fresh state (pretrained backbone, new head) or the parent's, with this config's hyperparameters.

    The parent's state comes from ``kept`` (its live state, continuing in place), else from ``ckpt`` (its
    checkpoint, already loaded), else from ``parent_checkpoint``."""
    if kept is not None:
        return continue_state(kept, cfg, num_classes, device, epochs)
    torch.manual_seed(seed)  # the new head's initial weights
    if ckpt is None and parent_checkpoint:
        ckpt = load_checkpoint(parent_checkpoint)
    if ckpt is not None:
        if ckpt["model_name"] != cfg["model"] or ckpt["num_classes"] != num_classes:
            raise ValueError(f"parent checkpoint holds {ckpt['model_name']} with {ckpt['num_classes']} classes, "
                             f"this trial wants {cfg['model']} with {num_classes}")
    image_size = cfg["image_size"] or (ckpt or {}).get("image_size")
    model, pre = _common.build_model(cfg["model"], num_classes, cfg["weights"], image_size, pretrained=ckpt is None)
    head = _common.head_module(model)
    start = 0
    note = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        start = int(ckpt["epoch"])
    model.to(device)
    optimizer = make_optimizer(cfg, model, head)
    scaler = None
    if device.type == "cuda" and cfg["amp"] and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    if ckpt is not None:
        if ckpt["optimizer_name"] == cfg["optimizer"]:
            optimizer.load_state_dict(ckpt["optimizer"])
            if scaler is not None and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
        else:
            note = f"optimizer changed from {ckpt['optimizer_name']} to {cfg['optimizer']}: its state starts fresh"
    schedule = _schedule_from(cfg, (ckpt or {}).get("schedule"), start + epochs)
    state = TrainState(model, head, optimizer, schedule, start, pre, scaler, note, model_name=cfg["model"],
                       optimizer_name=cfg["optimizer"], lr_schedule=cfg["lr_schedule"])
    if ckpt is not None:
        state.since_best.load_state_dict(ckpt.get("since_best"))
        if cfg["lr_schedule"] == "plateau":  # a parent on another schedule leaves none: it starts at 1
            state.plateau.load_state_dict(ckpt.get("plateau"))
    apply_hparams(state, cfg)  # the NEW lr / weight decay replace the ones stored with the optimizer
    return state


def can_continue(kept: Any, cfg: dict[str, Any], device: torch.device) -> bool:
    """Whether a child with ``cfg`` can continue in place from ``kept`` (else it loads the checkpoint)."""
    return (isinstance(kept, TrainState) and kept.model_name == cfg["model"]
            and cfg["image_size"] in (None, kept.pre.size) and _harness.on_device(kept.model, device))


def continue_state(kept: TrainState, cfg: dict[str, Any], num_classes: int, device: torch.device,
                   epochs: int) -> TrainState:
    """What :func:`make_state` makes of the parent's checkpoint, made of its live state instead: the same
    model, optimizer moments, schedule and counts, then this config's hyperparameters."""
    if kept.model_name != cfg["model"] or kept.head.out_features != num_classes:
        raise ValueError(f"parent state holds {kept.model_name} with {kept.head.out_features} classes, "
                         f"this trial wants {cfg['model']} with {num_classes}")
    model, head = kept.model.to(device), kept.head
    optimizer, scaler, note = kept.optimizer, kept.scaler, None
    if kept.optimizer_name != cfg["optimizer"]:
        optimizer, scaler = make_optimizer(cfg, model, head), None
        note = f"optimizer changed from {kept.optimizer_name} to {cfg['optimizer']}: its state starts fresh"
    if device.type == "cuda" and cfg["amp"] and not torch.cuda.is_bf16_supported():
        scaler = scaler if scaler is not None else torch.amp.GradScaler("cuda")
    else:
        scaler = None
    schedule = _schedule_from(cfg, kept.schedule.state_dict(), kept.epoch + epochs)
    state = TrainState(model, head, optimizer, schedule, kept.epoch, kept.pre, scaler, note, model_name=cfg["model"],
                       optimizer_name=cfg["optimizer"], lr_schedule=cfg["lr_schedule"])
    state.since_best.load_state_dict(kept.since_best.state_dict())
    if cfg["lr_schedule"] == "plateau":  # as from a checkpoint: a parent on another schedule leaves no scale
        state.plateau.load_state_dict(kept.plateau.state_dict() if kept.lr_schedule == "plateau" else None)
    apply_hparams(state, cfg)  # the NEW lr / weight decay replace the parent's, as after a load
    return state


def save_checkpoint(state: TrainState, folder: Path, cfg: dict[str, Any], classes: list[str]) -> Path:
    """Atomically write ``folder/state.pt``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model_name": cfg["model"],
        "num_classes": state.head.out_features,
        "classes": classes,
        "image_size": state.pre.size,
        "epoch": state.epoch,
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "optimizer_name": cfg["optimizer"],
        "optimizer": state.optimizer.state_dict(),
        "schedule": state.schedule.state_dict(),
        "plateau": state.plateau.state_dict() if cfg["lr_schedule"] == "plateau" else None,
        "since_best": state.since_best.state_dict(),
        "scaler": state.scaler.state_dict() if state.scaler is not None else None,
        "config": cfg,
    }
    tmp = folder / (CHECKPOINT_FILE + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, folder / CHECKPOINT_FILE)
    return folder


# ----------------------------------------------------------------------------------------------
# One epoch, evaluation
# ----------------------------------------------------------------------------------------------
def _set_frozen(state: TrainState, frozen: bool) -> None:
    head_ids = {id(p) for p in state.head.parameters()}
    for p in state.model.parameters():
        if id(p) not in head_ids:
            p.requires_grad_(not frozen)
    if frozen:  # frozen batch-norm statistics too
        for m in state.model.modules():
            if m is not state.head and isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def train_epoch(state: TrainState, data: Prepared, cfg: dict[str, Any], seed: int) -> float:
    """One epoch at cumulative epoch ``state.epoch``; its data order and augmentation depend only on
    (seed, epoch), so resuming from a checkpoint replays exactly what an uninterrupted run would do."""
    device = data.train_x.device
    g = torch.Generator().manual_seed(seed * 100_003 + state.epoch)
    torch.manual_seed(seed * 100_003 + state.epoch)
    apply_hparams(state, cfg)
    state.model.train()
    frozen = state.epoch < cfg["freeze_epochs"]
    _set_frozen(state, frozen)
    pad = max(1, round(state.pre.size / 14)) if cfg["augment"] else 0
    perm = torch.randperm(len(data.train_y), generator=g)
    bs = cfg["batch_size"]
    total, count = 0.0, 0
    for i, start in enumerate(range(0, len(perm), bs)):
        if cfg["max_batches"] is not None and i >= cfg["max_batches"]:
            break
        idx = perm[start:start + bs].to(device)
        x = _common.random_shift(data.train_x[idx], pad, g) if pad else data.train_x[idx]
        x = state.pre.normalize(x)
        y = data.train_y[idx]
        with _harness.autocast(device, cfg["amp"]):
            loss = F.cross_entropy(state.model(x), y, label_smoothing=cfg["label_smoothing"])
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            loss.backward()
            state.optimizer.step()
        total += loss.item() * len(idx)
        count += len(idx)
    if frozen:
        _set_frozen(state, False)
    state.epoch += 1
    return total / max(count, 1)


@torch.no_grad()
def evaluate(state: TrainState, data: Prepared, cfg: dict[str, Any]) -> dict[str, float]:
    state.model.eval()
    device = data.val_x.device
    loss_sum, correct = 0.0, 0
    bs = 1000 if device.type == "cuda" else 100  # small batches are faster on a CPU (cache-sized)
    for start in range(0, len(data.val_y), bs):
        x = state.pre.normalize(data.val_x[start:start + bs])
        y = data.val_y[start:start + bs]
        with _harness.autocast(device, cfg["amp"]):
            logits = state.model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    n = max(len(data.val_y), 1)
    return {"val_accuracy": correct / n, "val_loss": loss_sum / n}


# ----------------------------------------------------------------------------------------------
# The trial
# ----------------------------------------------------------------------------------------------
def train(config: dict[str, Any], budget: float | None, parent_checkpoint: str | None, checkpoint_dir: Path,
          seed: int, report: Callable[[dict[str, float], int, Path], None], start_step: int | None = None,
          in_place: _harness.Continuation | None = None) -> TrainState:
    """Train ``budget`` epochs on from ``parent_checkpoint`` (or from the pretrained model), checkpoint and
    report after every epoch.  Shared by the objective and the script mode.  With ``in_place`` (an
    objective), continue from the parent's live state when this process keeps it, and keep this trial's."""
    cfg = resolve_config(config)
    set_threads()
    device = pick_device(cfg["device"])
    epochs = budget_epochs(budget, cfg["epochs"])
    if cfg["seed"] is not None:
        seed = cfg["seed"]
    kept = _harness.continued("image_classification", in_place, parent_checkpoint,
                              lambda s: can_continue(s, cfg, device))
    ckpt = load_checkpoint(parent_checkpoint) if parent_checkpoint and kept is None else None
    # The preprocessing depends only on the model, so build it once to know how to prepare the data.
    size = cfg["image_size"] or (kept.pre.size if kept is not None else (ckpt or {}).get("image_size"))
    data_pre = _common.preprocess_for(cfg["model"], size)
    data = prepare_data(cfg, data_pre, device)
    state = make_state(cfg, len(data.classes), device, parent_checkpoint, epochs, seed, ckpt=ckpt, kept=kept)
    print(f"[image_classification] {cfg['model']} on {cfg['data']} ({len(data.train_y)} train / {len(data.val_y)} val "
          f"images), {device.type}" + (f" {torch.get_num_threads()} threads" if device.type == "cpu" else "")
          + f", from epoch {state.epoch}, {epochs} epochs", flush=True)
    if state.note:
        print(f"[image_classification] {state.note}", flush=True)
    if parent_checkpoint and start_step is not None and start_step != state.epoch:
        print(f"[image_classification] parent checkpoint is at epoch {state.epoch}, the trial said {start_step}; "
              f"continuing from {state.epoch}", flush=True)

    def one_epoch() -> dict[str, float]:
        train_loss = train_epoch(state, data, cfg, seed)
        return {**evaluate(state, data, cfg), "train_loss": train_loss}

    exact = _harness.train_epochs("image_classification", state, cfg, epochs, checkpoint_dir, CHECKPOINT_FILE,
                                  one_epoch, lambda: save_checkpoint(state, checkpoint_dir, cfg, data.classes), report)
    _harness.keep_state(in_place, state, exact)
    return state


def objective(config: dict[str, Any], trial: Any) -> None:
    """autotune objective: trains ``trial.budget`` epochs on from the parent's checkpoint, if any."""
    _harness.run_objective(train, config, trial)


# ----------------------------------------------------------------------------------------------
# Script mode (AutoDL Finetuner protocol)
# ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    _harness.run_script(train, sys.argv[1:] if argv is None else argv, __doc__)


if __name__ == "__main__":
    main()
