"""Driver overhead: autotune against Ray Tune's own Tuner on a no-op trial, and a real trial's cost.

    python benchmarks/overhead.py             # 1,000 no-op trials each (the committed results)
    python benchmarks/overhead.py --quick     # CI: 20 no-op trials each and a 2-trial fine-tune

Part 1, no-op objective.  One local Ray (``num_cpus`` = the machine's cores) serves both tools in
this one process:
  * autotune: ``autotune.run(noop, executor="ray", sampler="random", evaluator="full")`` with
    rounds x popsize = N trials (its database, trial folders and per-round barrier included);
  * Ray Tune: ``Tuner(noop, TuneConfig(num_samples=N))`` with ``reuse_actors=True``, and with Tune's
    default ``reuse_actors=False`` (Ray 2.60: a new actor process per trial), which is so slow on a
    loaded 2-core machine (tens of seconds per trial) that it runs fewer trials (``--tune-noreuse-trials``).
Reported: wall seconds per trial for each, and autotune's as a ratio of Tune's.

Part 2, the real default trial (``search_spaces/lr_bs.yaml``: MNIST CNN -> Fashion-MNIST) run by
``autotune.run(executor="ray")``: the time per trial from the records (ended - started, inside the
worker) and wall time / trials, against the pure training time of the same configs measured in this
process by calling the trial's ``train`` function directly (one thread, like a 1-CPU worker).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402  (not "_common": trials/_common.py owns that name)

NOOP_SPACE = {"params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


def noop(config: dict[str, Any], trial: Any) -> float:
    return 0.0


def tune_noop(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"score": 0.0})


def autotune_noop(trials: int, popsize: int, work: Path) -> dict[str, Any]:
    import autotune

    t0 = time.perf_counter()
    result = autotune.run(noop, space=NOOP_SPACE, sampler="random", evaluator="full", rounds=trials // popsize,
                          popsize=popsize, output=work, name="noop", seed=0, executor="ray")
    wall = time.perf_counter() - t0
    frame = result.trials
    done = int((frame["status"] == "completed").sum())
    return {"tool": "autotune", "setting": f"{trials // popsize} rounds x {popsize}", "trials": trials,
            "completed": done, "wall_s": wall, "per_trial_ms": 1e3 * wall / trials,
            "in_worker_ms": 1e3 * float(frame["duration_s"].median())}


def tune_run(trials: int, work: Path, reuse: bool) -> dict[str, Any]:
    from ray import tune

    tuner = tune.Tuner(
        tune_noop,
        param_space={"x": tune.uniform(0.0, 1.0)},
        tune_config=tune.TuneConfig(num_samples=trials, metric="score", mode="max", reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=str(work), name=f"tune-reuse{int(reuse)}", verbose=0),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    wall = time.perf_counter() - t0
    done = sum(1 for r in grid if r.error is None)
    return {"tool": "ray-tune", "setting": f"Tuner, num_samples={trials}, reuse_actors={reuse}", "trials": trials,
            "completed": done, "wall_s": wall, "per_trial_ms": 1e3 * wall / trials, "in_worker_ms": float("nan")}


def real_trial(rounds: int, popsize: int, budget: int, work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import autotune

    space = _bench.ROOT / "search_spaces" / "lr_bs.yaml"
    t0 = time.perf_counter()
    result = autotune.run(space=str(space), sampler="random", evaluator="full", rounds=rounds, popsize=popsize,
                          budget=budget, output=work, name="real", seed=0, executor="ray")
    wall = time.perf_counter() - t0
    frame = result.trials
    # Pure training: the same configs, the trial's own train() called here, one thread, after a warm-up.
    spec = importlib.util.spec_from_file_location("bench_image_trial", _bench.ROOT / "trials" / "image_classification.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["bench_image_trial"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    import torch

    torch.set_num_threads(1)
    space_obj = autotune.api._as_space(str(space))
    fixed = dict(space_obj.fixed)
    ckpt = work / "pure"

    def train(cfg: dict[str, Any]) -> float:
        t = time.perf_counter()
        module.train({**fixed, **cfg}, budget, None, ckpt, seed=0, report=lambda *a: None)
        return time.perf_counter() - t

    first = train({"learning_rate": 1e-3, "batch_size": 32})  # data loading, allocator warm-up
    rows = []
    for _, r in frame.iterrows():
        cfg = {"learning_rate": r["config.learning_rate"], "batch_size": int(r["config.batch_size"])}
        pure = train(cfg)
        rows.append({"trial_id": int(r["trial_id"]), "batch_size": cfg["batch_size"], "budget_epochs": budget,
                     "in_worker_s": float(r["duration_s"]), "pure_train_s": pure,
                     "ratio": float(r["duration_s"]) / pure})
    slots = min(popsize, os.cpu_count() or 1)
    n = len(rows)
    summary = {
        "trials": n, "rounds": rounds, "popsize": popsize, "slots": slots, "budget_epochs": budget,
        "wall_s": wall, "wall_per_trial_s": wall / n,
        "in_worker_median_s": statistics.median(r["in_worker_s"] for r in rows),
        "pure_train_median_s": statistics.median(r["pure_train_s"] for r in rows),
        "ideal_wall_per_trial_s": sum(r["pure_train_s"] for r in rows) / slots / n,
        "first_call_s": first,
    }
    summary["in_worker_over_pure"] = summary["in_worker_median_s"] / summary["pure_train_median_s"]
    summary["wall_over_ideal"] = summary["wall_per_trial_s"] / summary["ideal_wall_per_trial_s"]
    return rows, summary


def main(argv: list[str] | None = None) -> int:
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, help="no-op trials per tool (default 1000; --quick 20)")
    p.add_argument("--tune-noreuse-trials", type=int,
                   help="trials for Tune without actor reuse (default 40; --quick 4): a new process per trial")
    p.add_argument("--popsize", type=int, default=10)
    p.add_argument("--real-rounds", type=int)
    p.add_argument("--real-popsize", type=int)
    p.add_argument("--real-budget", type=int)
    args = p.parse_args(argv)
    out = _bench.out_dir(args)
    trials = args.trials or (20 if args.quick else 1000)
    noreuse = args.tune_noreuse_trials or (4 if args.quick else 40)
    real = (args.real_rounds or (1 if args.quick else 3), args.real_popsize or (2 if args.quick else 4),
            args.real_budget or (1 if args.quick else 2))
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    import logging

    import ray

    work = Path(tempfile.mkdtemp(prefix="autotune-overhead-"))
    started = time.time()
    try:
        t0 = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
        ray_start = time.perf_counter() - t0
        rows = [autotune_noop(trials, min(args.popsize, trials), work / "autotune"),
                tune_run(trials, work / "tune", reuse=True),
                tune_run(noreuse, work / "tune", reuse=False)]
        for r in rows:
            r["ratio_to_autotune"] = r["per_trial_ms"] / rows[0]["per_trial_ms"]
        _bench.write_csv(out / "overhead_noop.csv", rows,
                          ["tool", "setting", "trials", "completed", "wall_s", "per_trial_ms", "in_worker_ms",
                           "ratio_to_autotune"])
        trial_rows, summary = real_trial(*real, work / "real")
        _bench.write_csv(out / "overhead_real_trials.csv", trial_rows)
        _bench.write_csv(out / "overhead_real.csv", [summary])
        _bench.write_machine(out / "overhead_machine.csv", {"ray_start_s": round(ray_start, 2),
                                                             "elapsed_s": round(time.time() - started, 1)})
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print(_bench.table([(r["tool"], r["setting"], r["completed"], f"{r['wall_s']:.1f}", f"{r['per_trial_ms']:.1f}",
                          f"{r['ratio_to_autotune']:.2f}") for r in rows],
                        ["tool", "setting", "completed", "wall s", "ms per trial", "x autotune's"]))
    print()
    print(_bench.table([(k, f"{v:.3g}" if isinstance(v, float) else v) for k, v in summary.items()], ["real trial", "value"]))
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
