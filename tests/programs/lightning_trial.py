"""A tiny Lightning regression under autotune: a Python objective (``objective``) and a script trial
(run as a program).  It writes ``lightning.json`` into the trial's folder: the global step it started
at, the learning rates the optimizer really used, and the schedulers' base rates."""

from __future__ import annotations

import argparse
import json
import os

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autotune.integrations.lightning import AutotuneCallback, ckpt_path, max_epochs
from autotune.trial import current_trial


class Regressor(pl.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        self.used_lrs: list[float] = []
        self.first_step: int | None = None

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss, sync_dist=True)
        self.log("neg_loss", -loss, sync_dist=True)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1000)]

    def on_train_start(self) -> None:
        self.first_step = self.trainer.global_step

    def on_before_optimizer_step(self, optimizer) -> None:
        self.used_lrs.append(float(optimizer.param_groups[0]["lr"]))


def loaders() -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)
    return (DataLoader(TensorDataset(x[:48], y[:48]), batch_size=16),
            DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16))


def train(config: dict, epochs: int = 4, devices: int = 1, strategy: str = "auto",
          metrics: dict | None = None) -> pl.Trainer:
    torch.manual_seed(0)
    model = Regressor(float(config["lr"]))
    trainer = pl.Trainer(max_epochs=max_epochs(epochs), callbacks=[AutotuneCallback(metrics=metrics)],
                         accelerator="cpu", devices=devices, strategy=strategy, enable_progress_bar=False,
                         logger=False, enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=1)
    train_dl, val_dl = loaders()
    trainer.fit(model, train_dl, val_dl, ckpt_path=ckpt_path())
    if trainer.is_global_zero:
        trial = current_trial()
        sched = trainer.lr_scheduler_configs[0].scheduler
        (trial.dir / "lightning.json").write_text(json.dumps({
            "first_step": model.first_step, "global_step": trainer.global_step, "used_lrs": model.used_lrs,
            "base_lrs": list(sched.base_lrs), "world_size": trainer.world_size}))
        if os.environ.get("AUTOTUNE_TEST_EXECUTIONS"):  # the kill-and-resume tests: one line per execution
            with open(os.environ["AUTOTUNE_TEST_EXECUTIONS"], "a", encoding="utf-8") as f:
                f.write(f"done {trial.id}\n")
    return trainer


def objective(config: dict, trial) -> None:
    train(config, epochs=int(config.get("epochs", 4)), metrics=config.get("rename"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--saved_params_dir", required=True)
    parser.add_argument("--model_path", default=None)
    args, _ = parser.parse_known_args()
    train({"lr": args.lr}, devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
