"""Record learning curves of the bundled image trial on a grid of configs, for simulated benchmarks.

    python benchmarks/record_curves.py                  # the committed table (about 15 min on 2 cores)
    python benchmarks/record_curves.py --quick          # a tiny grid, to check that it works
    python benchmarks/record_curves.py --workers 1      # one process instead of two

The trial is ``trials/image_classification.py`` with its defaults (the small CNN pretrained on MNIST
fine-tuned on 100 Fashion-MNIST images per class, validated on 2,000), called in-process, on the CPU
with one torch thread per process.  Grid: ``learning_rate`` (``LRS``, log-spaced) x ``batch_size``
(``BATCH_SIZES``) x ``weight_decay`` (``WEIGHT_DECAYS``), each with seeds ``SEEDS`` (the trial's
seed: head initialisation, data order, augmentation), ``EPOCHS`` epochs from scratch.

Written: ``benchmarks/data/image_curves.csv`` in long format, one row per (config, seed, epoch):
``learning_rate, batch_size, weight_decay, seed, epoch, val_accuracy, val_loss, train_loss, seconds,
wall_seconds``.  ``seconds`` is the CPU time the process spent on that epoch (training, evaluation and
checkpoint; epoch 1 also pays for building the model from the pretrained weights): with one thread
it is the epoch's wall time on an idle core, and unlike ``wall_seconds`` (also recorded) it does not
grow when other work shares the machine.  The simulated benchmarks charge ``seconds``.  The file
starts with ``#`` comment lines saying on what machine, when and with which command it was made.
A row whose loss diverged holds ``nan`` metrics (the trial itself would have reported them as such).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
OUT = DATA / "image_curves.csv"

LRS = [float(f"{10 ** (-5 + 4 * i / 9):.3g}") for i in range(10)]  # 1e-5 .. 1e-1, 10 values (x2.78 apart)
BATCH_SIZES = [16, 32, 64, 128]
WEIGHT_DECAYS = [1e-4, 1e-1]  # AdamW's decoupled decay: the trial's default, and one that shrinks weights
SEEDS = [0, 1, 2]
EPOCHS = 10
COLUMNS = ["learning_rate", "batch_size", "weight_decay", "seed", "epoch", "val_accuracy", "val_loss", "train_loss",
           "seconds", "wall_seconds"]


def grid(quick: bool = False) -> list[dict[str, Any]]:
    """The configs, in the order they are recorded (largest batch first: those epochs are fastest)."""
    if quick:
        return [{"learning_rate": lr, "batch_size": 64, "weight_decay": 1e-3} for lr in (1e-4, 1e-2)]
    return [{"learning_rate": lr, "batch_size": bs, "weight_decay": wd}
            for bs in BATCH_SIZES for lr in LRS for wd in WEIGHT_DECAYS]


def record_one(job: tuple[dict[str, Any], int, int]) -> list[dict[str, Any]]:
    """Train one config from scratch for ``epochs`` epochs with one seed; one row per epoch."""
    config, seed, epochs = job
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "trials"))
    import image_classification as ic  # noqa: PLC0415 - the trial, imported in the worker

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        last = [time.perf_counter(), time.process_time()]

        def report(metrics: dict[str, float], step: int, checkpoint_dir: Path) -> None:
            now = [time.perf_counter(), time.process_time()]
            rows.append({**config, "seed": seed, "epoch": int(step),
                         "val_accuracy": float(metrics["val_accuracy"]), "val_loss": float(metrics["val_loss"]),
                         "train_loss": float(metrics["train_loss"]), "seconds": now[1] - last[1],
                         "wall_seconds": now[0] - last[0]})
            last[:] = now

        cfg = {**config, "device": "cpu"}
        devnull = open(os.devnull, "w")  # the trial prints a line per epoch
        old = sys.stdout
        sys.stdout = devnull
        try:
            ic.train(cfg, float(epochs), None, Path(tmp), seed, report)
        finally:
            sys.stdout = old
            devnull.close()
    for r in rows:  # a diverged loss: the metrics mean nothing
        for k in ("val_loss", "train_loss"):
            if not math.isfinite(r[k]):
                r[k] = float("nan")
    return rows


def warm_up() -> None:
    """Import torch and the trial and load the data once per worker, so that no recorded epoch pays for it."""
    record_one(({"learning_rate": 1e-3, "batch_size": 128, "weight_decay": 1e-4, "max_batches": 1}, 0, 1))


def header_lines(args: argparse.Namespace, configs: int, wall: float) -> list[str]:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _bench  # noqa: PLC0415

    return [
        "# Learning curves of trials/image_classification.py (small CNN pretrained on MNIST -> 100 Fashion-MNIST "
        "images per class, 2,000 validation images), CPU, 1 torch thread per process",
        f"# grid: {configs} configs x seeds {','.join(map(str, SEEDS if not args.quick else [0]))} x "
        f"{args.epochs} epochs; seconds = CPU seconds of the epoch (1 thread; epoch 1 includes building the model), "
        "wall_seconds = its wall time",
        f"# machine: {_bench.cpu_model()}, {os.cpu_count()} cores, {args.workers} worker process(es); python "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"# date: {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; recording took {wall:.0f} s",
        f"# command: python benchmarks/record_curves.py {' '.join(sys.argv[1:])}".rstrip(),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 configs x 1 seed x 2 epochs (a check)")
    p.add_argument("--out", type=Path, default=None, help=f"the CSV (default {OUT.relative_to(ROOT)}; "
                                                          "--quick: a temporary file)")
    p.add_argument("--workers", type=int, default=2, help="processes (each with one torch thread)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    args = p.parse_args()
    if args.quick:
        args.epochs = min(args.epochs, 2)
    out = args.out or (Path(tempfile.mkdtemp(prefix="autotune-curves-")) / "image_curves.csv" if args.quick else OUT)
    configs = grid(args.quick)
    seeds = [0] if args.quick else SEEDS
    jobs = [(c, s, args.epochs) for c in configs for s in seeds]
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, args.workers), initializer=warm_up) as pool:
        for i, part in enumerate(pool.imap(record_one, jobs, chunksize=1)):
            rows += part
            if (i + 1) % 10 == 0 or i + 1 == len(jobs):
                print(f"{i + 1}/{len(jobs)} runs, {time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        for line in header_lines(args, len(configs), wall):
            f.write(line + "\n")
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"{len(rows)} rows written to {out} in {wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
