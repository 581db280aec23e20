"""Asynchronous scheduling against synchronous rounds: busy slots, wall time, best value, driver cost.

    python benchmarks/scheduling.py            # the committed results
    python benchmarks/scheduling.py --quick    # CI: small runs of every part
    python benchmarks/scheduling.py --parts simulated,driver   # only some parts

Part ``real``: the default workload (``search_spaces/lr_bs.yaml``, pbt) and ``image_finetune.yaml``
(full), 10 rounds x 5 each, with ``--schedule rounds`` and ``async``, sampler seeds 0-2, on a local
Ray (one slot per core).  Reported: busy fraction (trial-seconds / (slots x (last end - first start))),
wall time, best val_accuracy.

Part ``simulated``: the simulated executor (fake clock, nothing trains).  A trial model with learning
curves (accuracy rises with epochs toward an asymptote set by the config; a Population-Based child
continues its parent's curve) and durations that vary 4x with the config (log-normal, 5th-95th
percentile ratio 4).  Every sampler, both evaluators, 8, 64 and 512 slots, both schedules, seed 0;
``max(100, 2 x slots)`` trials (the Optuna and GP-based samplers, whose proposals cost seconds at a
thousand trials, run at 8 and 64 slots only).  Reported: busy fraction, simulated makespan, best value, and
the best value the rounds schedule had reached when the asynchronous run ended.

Part ``driver``: the driver's own CPU time per trial (``time.process_time``; database writes
included) over one asynchronous run of 10,000 no-op simulated trials on 64 slots (pbt, random
sampler, ``keep_checkpoints``), per block of 1,000 trials: flat means the cost does not grow with
the trials so far.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

import autotune  # noqa: E402
from autotune.events import TrialEnd  # noqa: E402
from autotune.executors.simulated import SimTrial, SimulatedExecutor  # noqa: E402
from autotune.samplers import sampler_names  # noqa: E402

DIM = 4
SPACE = {"metric": "acc", "mode": "max",
         "params": {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(DIM)}}
OPTIMUM = [0.2, 0.7, 0.4, 0.55]
SIGMA = math.log(4.0) / (2 * 1.645)  # log-normal: the 95th percentile is 4x the 5th
SLOW_AT_SCALE = {"bayes", "bayes-gp", "pshe3"}  # their proposals cost seconds at a thousand trials
EPOCHS = 3  # reports per trial


def noop(config: dict[str, Any], trial: Any) -> float:
    return 0.0


def _unit(key: str) -> float:
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16**12


def make_model(seed: int):
    """Accuracy after e epochs: asymptote(config) x (1 - exp(-e / 3)); a warm-started child continues
    its parent's epochs.  Duration: log-normal in the config, median 2 s per trial."""

    def model(config: dict[str, Any], budget: float | None, parent: Any) -> SimTrial:
        xs = [config[f"x{i}"] for i in range(DIM)]
        asym = 1.0 - 0.6 * sum((x - o) ** 2 for x, o in zip(xs, OPTIMUM)) / DIM
        start = (parent.step or 0) if parent else 0
        curve = tuple(asym * (1 - math.exp(-(start + e + 1) / 3.0)) for e in range(EPOCHS))
        u = _unit(f"{seed}:" + ":".join(f"{x:.9f}" for x in xs))
        z = statistics.NormalDist().inv_cdf(min(max(u, 1e-6), 1 - 1e-6))
        return SimTrial(curve=curve, duration=2.0 * math.exp(SIGMA * z))
    return model


def best_by(records: list[Any], t: float) -> float | None:
    done = [r.value for r in records if r.value is not None and r.ended is not None and r.ended <= t + 1e-9]
    return max(done) if done else None


def simulated(sampler: str, evaluator: str, slots: int, schedule: str, trials: int, seed: int,
              work: Path) -> tuple[dict[str, Any], list[Any]]:
    ex = SimulatedExecutor(make_model(seed), slots=slots)
    popsize = 8 if slots <= 8 else 16
    rounds = max(1, trials // popsize)
    opts = {"bayes-gp": {"n_startup_trials": 10}}.get(sampler)
    t0 = time.process_time()
    result = autotune.run(noop, space=SPACE, sampler=sampler, evaluator=evaluator, rounds=rounds, popsize=popsize,
                          seed=seed, output=work, name=f"sim-{sampler}-{evaluator}-{slots}-{schedule}", executor=ex,
                          schedule=schedule, sampler_options=opts)
    cpu = time.process_time() - t0
    recs = result.records
    return ({"part": "simulated", "sampler": sampler, "evaluator": evaluator, "slots": slots, "schedule": schedule,
             "seed": seed, "trials": len(recs), "popsize": popsize, "busy_fraction": ex.busy_fraction(),
             "makespan_s": (ex.last_end or 0) - (ex.first_start or 0), "best": result.best_value,
             "driver_cpu_ms_per_trial": 1e3 * cpu / max(1, len(recs))}, recs)


def driver_cost(trials: int, block: int, work: Path) -> list[dict[str, Any]]:
    marks: list[tuple[float, float]] = []

    def progress(event: Any) -> None:
        if isinstance(event, TrialEnd) and event.done % block == 0:
            marks.append((time.process_time(), time.perf_counter()))

    start = (time.process_time(), time.perf_counter())
    autotune.run(noop, space=SPACE, sampler="random", evaluator="pbt", rounds=trials // 16, popsize=16, seed=0,
                 output=work, name="scale", executor=SimulatedExecutor(make_model(0), slots=64),
                 keep_checkpoints=16, progress=progress)
    rows, last = [], start
    for i, mark in enumerate(marks):
        rows.append({"part": "driver", "trials_done": (i + 1) * block,
                     "cpu_ms_per_trial": 1e3 * (mark[0] - last[0]) / block,
                     "wall_ms_per_trial": 1e3 * (mark[1] - last[1]) / block})
        last = mark
    return rows


def real(space: str, evaluator: str, schedule: str, rounds: int, popsize: int, seed: int, work: Path,
         extra: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = autotune.run(space=str(_bench.ROOT / "search_spaces" / space), evaluator=evaluator, rounds=rounds,
                          popsize=popsize, seed=seed, output=work, name=f"real-{Path(space).stem}-{schedule}-{seed}",
                          schedule=schedule, **extra)
    wall = time.perf_counter() - t0
    recs = [r for r in result.records if r.started and r.ended]
    slots = min(_bench.os.cpu_count() or 1, popsize)  # a local Ray: one trial slot per core
    span = max(r.ended for r in recs) - min(r.started for r in recs)
    return {"part": "real", "space": space, "evaluator": evaluator, "schedule": schedule, "seed": seed,
            "slots": slots, "trials": len(result.records),
            "busy_fraction": sum(r.ended - r.started for r in recs) / (slots * span),
            "wall_s": wall, "best": result.best_value}


def main() -> int:
    p = _bench.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="real,simulated,driver", help="comma-separated: real, simulated, driver")
    p.add_argument("--seeds", type=int, default=3, help="sampler seeds of the real part (default 3: 0, 1, 2)")
    p.add_argument("--first-seed", type=int, default=0, help="the real part's first seed (to add seeds to a run)")
    p.add_argument("--spaces", default="lr_bs.yaml,image_finetune.yaml", help="the real part's space files")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    out = _bench.out_dir(args)
    quick = args.quick
    sim_rows: list[dict[str, Any]] = []
    real_rows: list[dict[str, Any]] = []
    cost: list[dict[str, Any]] = []
    real_file = "scheduling_real.csv" if args.first_seed == 0 else f"scheduling_real_seeds{args.first_seed}.csv"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "simulated" in parts:
            samplers = ["random"] if quick else sampler_names()
            for slots in ((8, 64) if quick else (8, 64, 512)):
                trials = 32 if quick else max(100, 2 * slots)
                for sampler in samplers:
                    if sampler in SLOW_AT_SCALE and slots > 64:
                        continue
                    for evaluator in ("full", "pbt"):
                        pair = {}
                        for schedule in ("rounds", "async"):
                            row, recs = simulated(sampler, evaluator, slots, schedule, trials, 0, work)
                            pair[schedule] = (row, recs)
                        t_async = pair["async"][0]["makespan_s"]
                        for schedule, (row, _) in pair.items():
                            row["rounds_best_at_async_end"] = best_by(pair["rounds"][1], t_async)
                            sim_rows.append(row)
                        _bench.write_csv(out / "scheduling_simulated.csv", sim_rows)  # as it goes
                        print(f"{sampler} {evaluator} {slots} slots: busy rounds "
                              f"{pair['rounds'][0]['busy_fraction']:.2f} async {pair['async'][0]['busy_fraction']:.2f}",
                              flush=True)
        if "driver" in parts:
            cost = driver_cost(400 if quick else 10_000, 100 if quick else 1000, work)
        if "real" in parts:
            seeds = [0] if quick else list(range(args.first_seed, args.first_seed + args.seeds))
            rounds, popsize = (2, 2) if quick else (10, 5)
            evaluators = {"lr_bs.yaml": "pbt", "image_finetune.yaml": "full"}
            names = ["lr_bs.yaml"] if quick else args.spaces.split(",")
            spaces = tuple((name, evaluators.get(name, "full")) for name in names)
            for space, evaluator in spaces:
                extra = {"budget": 1} if quick and space == "image_finetune.yaml" else {}
                for seed in seeds:
                    for schedule in ("rounds", "async"):
                        real_rows.append(real(space, evaluator, schedule, rounds, popsize, seed, work, extra))
                        print(real_rows[-1], flush=True)
                        _bench.write_csv(out / real_file, real_rows)  # as it goes
    if sim_rows:
        _bench.write_csv(out / "scheduling_simulated.csv", sim_rows)
    if real_rows:
        _bench.write_csv(out / real_file, real_rows)
    if cost:
        _bench.write_csv(out / "scheduling_driver.csv", cost)
    _bench.write_machine(out / f"scheduling_machine_{'_'.join(sorted(parts))}.csv", {"parts": args.parts})
    report(sim_rows, real_rows, cost)
    print(f"written to {out}")
    return 0


def report(sim_rows: list[dict[str, Any]], real_rows: list[dict[str, Any]], cost: list[dict[str, Any]]) -> None:
    if real_rows:
        keys = sorted({(r["space"], r["schedule"]) for r in real_rows})
        rows = []
        for space, schedule in keys:
            sel = [r for r in real_rows if r["space"] == space and r["schedule"] == schedule]
            rows.append([space, schedule, len(sel), f"{statistics.mean(r['busy_fraction'] for r in sel):.3f}",
                         f"{statistics.mean(r['wall_s'] for r in sel):.1f}",
                         f"{statistics.mean(r['best'] for r in sel):.4f}"])
        print(_bench.table(rows, ["space", "schedule", "seeds", "busy (mean)", "wall s (mean)", "best (mean)"]))
    if sim_rows:
        rows = []
        for slots in sorted({r["slots"] for r in sim_rows}):
            for evaluator in ("full", "pbt"):
                by = {s: [r for r in sim_rows if r["slots"] == slots and r["evaluator"] == evaluator
                          and r["schedule"] == s] for s in ("rounds", "async")}
                if not by["async"]:
                    continue
                mean = lambda rs, k: statistics.mean(r[k] for r in rs)  # noqa: E731
                rows.append([slots, evaluator, len(by["async"]), f"{mean(by['rounds'], 'busy_fraction'):.3f}",
                             f"{mean(by['async'], 'busy_fraction'):.3f}", f"{mean(by['rounds'], 'makespan_s'):.1f}",
                             f"{mean(by['async'], 'makespan_s'):.1f}", f"{mean(by['rounds'], 'best'):.4f}",
                             f"{mean(by['async'], 'best'):.4f}",
                             f"{statistics.mean((r['rounds_best_at_async_end'] or 0) for r in by['async']):.4f}"])
        print(_bench.table(rows, ["slots", "evaluator", "samplers", "busy rounds", "busy async", "makespan rounds",
                                  "makespan async", "best rounds", "best async", "rounds' best at async's end"]))
    if cost:
        print(_bench.table([[r["trials_done"], f"{r['cpu_ms_per_trial']:.2f}", f"{r['wall_ms_per_trial']:.2f}"]
                            for r in cost], ["trials done", "driver CPU ms per trial", "wall ms per trial"]))


if __name__ == "__main__":
    sys.exit(main())
