"""Objectives used by the tests: small, deterministic, and each misbehaving in one known way."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

TARGET = [0.7, -0.2]


def _log_execution(trial, what: str) -> None:
    """Append to a run-wide execution log (outside trial dirs) so tests can count real executions."""
    path = os.environ.get("AUTOTUNE_TEST_EXECUTIONS")
    if path:
        with open(path, "a") as f:
            f.write(f"{what} {trial.id}\n")


def quadratic(config, trial):
    """A smooth bowl in (x, lr): value is highest (0) at x=0.3, lr=1e-2."""
    _log_execution(trial, "start")
    x = float(config.get("x", 0.0))
    lr = float(config.get("lr", 1e-2))
    value = -((x - 0.3) ** 2) - (math.log10(lr) + 2.0) ** 2 / 10.0
    time.sleep(float(config.get("sleep", 0.0)))
    trial.report({"score": value, "pid": os.getpid()})
    _log_execution(trial, "done")


def returns_number(config, trial):
    return -((float(config["x"]) - 0.3) ** 2)


def weights(config, trial):
    """A toy 'fine-tune' with model and optimizer state, checkpointed as JSON.

    Warm-started trials load w and the momentum buffer from the parent; ``loaded.json`` in the
    trial folder records exactly what was loaded, for the tests to compare with the parent's file.
    """
    _log_execution(trial, "start")
    lr = float(config.get("lr", 0.1))
    time.sleep(float(config.get("sleep", 0.0)))
    w, momentum, step = [0.0, 0.0], [0.0, 0.0], 0
    if trial.parent_checkpoint:
        state = json.loads((Path(trial.parent_checkpoint) / "state.json").read_text())
        w, momentum, step = state["w"], state["momentum"], state["step"]
        (trial.dir / "loaded.json").write_text(json.dumps(state))
    for _ in range(int(trial.budget or 1)):
        grad = [wi - ti for wi, ti in zip(w, TARGET)]
        momentum = [0.5 * m + g for m, g in zip(momentum, grad)]
        w = [wi - lr * m for wi, m in zip(w, momentum)]
        step += 1
        ckpt = trial.dir / "checkpoint"
        ckpt.mkdir(exist_ok=True)
        (ckpt / "state.json").write_text(json.dumps({"w": w, "momentum": momentum, "step": step}))
        loss = sum((wi - ti) ** 2 for wi, ti in zip(w, TARGET))
        trial.report({"loss": loss, "neg_loss": -loss}, checkpoint=ckpt, step=step)
    _log_execution(trial, "done")


def raises(config, trial):
    print("about to fail")
    raise RuntimeError("boom in trial")


def reports_then_raises(config, trial):
    trial.report({"score": 100.0})  # a fine score, then a crash: the trial failed, its score is no result
    raise RuntimeError("crash after a good report")


def reports_text(config, trial):
    trial.report({"score": "0.5"})  # text, not a number: a bug in the objective, not a score of 0.5


def reports_nan(config, trial):
    trial.report({"score": float("nan")})


def reports_inf(config, trial):
    trial.report({"score": float("inf")})


def reports_nothing(config, trial):
    print("training without reporting")


def wrong_metric(config, trial):
    trial.report({"accuracy": 0.5})


def exits(config, trial):
    print("exiting hard", flush=True)
    os._exit(3)


def killed(config, trial):
    print("killed by a signal", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def hangs(config, trial):
    print("hanging", flush=True)
    time.sleep(3600)


def bad_checkpoint(config, trial):
    trial.report({"score": 1.0}, checkpoint=trial.dir / "does-not-exist")


def mixed(config, trial):
    """Fails for x < 0.2 (raising), NaN for 0.2 <= x < 0.3, else a value: a search with failures."""
    x = float(config["x"])
    if x < 0.2:
        raise ValueError(f"x={x} too small")
    if x < 0.3:
        trial.report({"score": float("nan")})
        return
    trial.report({"score": -((x - 0.6) ** 2)})


def big_checkpoint(config, trial):
    """Writes a checkpoint of ``mb`` megabytes: fills a small disk quickly."""
    ckpt = trial.dir / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    with open(ckpt / "weights.bin", "wb") as f:
        f.write(os.urandom(int(float(config.get("mb", 1.0)) * 2**20)))
    trial.report({"score": -((float(config["x"]) - 0.3) ** 2)}, checkpoint=ckpt)


def unwritable_checkpoint(config, trial):
    """Saving fails: the checkpoint folder's path is taken by a file."""
    (trial.dir / "checkpoint").write_text("not a folder")
    with open(trial.dir / "checkpoint" / "state.json", "w") as f:
        f.write("{}")
    trial.report({"score": 1.0}, checkpoint=trial.dir / "checkpoint")


FAULTS = ["ok", "raises", "exits", "killed", "hangs", "nan", "inf", "nothing", "unwritable"]


def chaos(config, trial):
    """Trial ``id`` does fault ``FAULTS[id % len(FAULTS)]``: every way a trial can go wrong, in one search."""
    fault = FAULTS[trial.id % len(FAULTS)]
    print(f"fault: {fault}", flush=True)
    if fault == "ok":
        return quadratic(config, trial)
    return {
        "raises": raises, "exits": exits, "killed": killed, "hangs": hangs, "nan": reports_nan,
        "inf": reports_inf, "nothing": reports_nothing, "unwritable": unwritable_checkpoint,
    }[fault](config, trial)


def steal_checkpoint(config, trial):
    """Reports another trial's checkpoint folder as its own, then scribbles on what it reported."""
    trial.report({"score": 0.5}, checkpoint=config["steal"])
    (trial.dir / "checkpoint" / "weights.bin").write_bytes(b"scribbled")
    trial.report({"score": 0.6}, checkpoint=trial.dir / "checkpoint")


def gpu_hungry(config, trial):
    """Runs out of GPU memory (PyTorch's own error) unless Ray granted it at least ``needs_gpu`` GPUs."""
    import ray
    import torch

    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    print(f"trial {trial.id} holds {share} GPU", flush=True)
    if share < float(config.get("needs_gpu", 0.0)):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)")
    trial.report({"score": float(config.get("x", 0.0)), "gpu_share": share})


def slow_curve(config, trial):
    """Reports a rising score ``steps`` times, then waits until the file ``gate`` exists (a test's
    go-ahead) before its last report: a trial to watch while it runs."""
    x = float(config.get("x", 0.5))
    steps = int(config.get("steps", 4))
    for step in range(1, steps):
        trial.report({"score": -((x - 0.3) ** 2) - 1.0 / step})
        time.sleep(float(config.get("pause", 0.1)))
    gate = config.get("gate")
    while gate and not os.path.exists(gate):
        time.sleep(0.1)
    trial.report({"score": -((x - 0.3) ** 2) - 1.0 / steps})


def many_reports(config, trial):
    """Reports ``steps`` times with a checkpoint each time; a trial stopped early cleans up and re-raises."""
    from autotune.trial import TrialPruned

    x = float(config.get("x", 0.5))
    ckpt = trial.dir / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    try:
        for step in range(1, int(config.get("steps", 5)) + 1):
            (ckpt / "state.json").write_text(json.dumps({"step": step}))
            trial.report({"score": (1.0 - (x - 0.3) ** 2) * (1 - math.exp(-step / 2))}, checkpoint=ckpt)
            time.sleep(float(config.get("pause", 0.0)))
    except TrialPruned:
        print(f"cleaned up after should_stop={trial.should_stop}")
        raise


def submits(config, trial):
    """``many_reports`` through ``Trial.submit``: it ends its own loop when told to stop and returns."""
    x = float(config.get("x", 0.5))
    ckpt = trial.dir / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    for step in range(1, int(config.get("steps", 5)) + 1):
        (ckpt / "state.json").write_text(json.dumps({"step": step}))
        if trial.submit({"score": (1.0 - (x - 0.3) ** 2) * (1 - math.exp(-step / 2))}, checkpoint=ckpt):
            print(f"ended its own loop at step {step}")
            break
