"""A tiny Hugging Face Trainer fine-tune (random-weight BERT, synthetic data) under autotune's callback.

As an objective (``hf_trainer.py:objective``) or as a script trial (``python hf_trainer.py --NAME=VALUE``).
Every trial writes the learning rate its optimizer used at each step, with the global step, to
``lrs.jsonl`` in its folder, so a test can see which rate a warm-started child really trained at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import transformers as tf

from autotune.integrations.transformers import AutotuneCallback, train, train_epochs, trial_config
from autotune.trial import current_trial

DEFAULTS = {"learning_rate": 1e-3, "weight_decay": 0.01, "epochs": 2, "informative": 1.0}


class Tokens(torch.utils.data.Dataset):
    """Sequences whose label is whether token 5 occurs: learnable by a 1-layer BERT in a few steps."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(6, 50, (n, 8), generator=g)
        self.y = torch.randint(0, 2, (n,), generator=g)
        self.x[self.y == 1, 0] = 5

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.x[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.y[i]}


class RecordRates(tf.TrainerCallback):
    def __init__(self, folder: Path) -> None:
        self.path = folder / "lrs.jsonl"

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, "lr": optimizer.param_groups[0]["lr"],
                                "wd": optimizer.param_groups[0]["weight_decay"]}) + "\n")


def accuracy(pred) -> dict:
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def fine_tune(config: dict) -> None:
    config = {**DEFAULTS, **config}
    torch.manual_seed(0)
    model = tf.BertForSequenceClassification(tf.BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=2))
    args = tf.TrainingArguments(
        output_dir="unused", learning_rate=float(config["learning_rate"]),
        weight_decay=float(config["weight_decay"]), num_train_epochs=train_epochs(config["epochs"]),
        lr_scheduler_type="constant", per_device_train_batch_size=16, eval_strategy="epoch",
        save_strategy="epoch", logging_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        save_total_limit=1)
    trainer = tf.Trainer(model=model, args=args, train_dataset=Tokens(64, 1), eval_dataset=Tokens(64, 2),
                         compute_metrics=accuracy,
                         callbacks=[AutotuneCallback(), RecordRates(current_trial().dir)])
    train(trainer)
    if os.environ.get("AUTOTUNE_TEST_EXECUTIONS"):  # the kill-and-resume tests: one line per finished execution
        with open(os.environ["AUTOTUNE_TEST_EXECUTIONS"], "a", encoding="utf-8") as f:
            f.write(f"done {current_trial().id}\n")


def objective(config, trial) -> None:
    fine_tune(config)


if __name__ == "__main__":  # a script trial: autotune's argv (--NAME=VALUE --saved_params_dir=...) is not parsed
    fine_tune(trial_config(DEFAULTS))
