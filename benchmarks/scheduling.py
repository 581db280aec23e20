"""Asynchronous scheduling against synchronous rounds: busy slots, wall time, and the driver's cost.

    python benchmarks/schedule.py            # the committed results
    python benchmarks/schedule.py --quick    # CI: small runs of every part

Part 1, simulated (fake clock, nothing trains): trial durations vary 4x with the config (uniform
1-4 s, as the bundled text trial's 22-89 s do), pbt with the random sampler, ``rounds x popsize``
trials on 2, 8 and 64 slots, each schedule, seeds 0-2.  Reported: the busy fraction (trial-seconds /
(slots x (last end - first start))) and the simulated makespan.

Part 2, the driver's own cost at scale: one asynchronous run of many no-op simulated trials on 64
slots (pbt, ``keep_checkpoints``), timed in real seconds per block of trials, so growth with the
number of trials so far would show.

Part 3, the real default workload (``search_spaces/lr_bs.yaml``: pbt, 10 x 5, local Ray with one
slot per core), once per schedule: wall time, busy fraction from the records, best val_accuracy.
"""

from __future__ import annotations

import random
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

SPACE = {"metric": "score", "mode": "max",
         "params": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                    "y": {"type": "float", "low": 0.0, "high": 1.0}}}


def noop(config: dict[str, Any], trial: Any) -> float:
    return 0.0


def make_model(seed: int):
    def model(config, budget, parent):
        x, y = config["x"], config["y"]
        rng = random.Random(f"{seed}:{x:.12f}:{y:.12f}")
        return SimTrial(curve=(-((x - 0.3) ** 2 + (y - 0.7) ** 2),), duration=1.0 + 3.0 * rng.random())
    return model


def simulated(slots: int, schedule: str, rounds: int, popsize: int, seed: int, work: Path) -> dict[str, Any]:
    ex = SimulatedExecutor(make_model(seed), slots=slots)
    name = f"sim-{schedule}-{slots}-{seed}"
    result = autotune.run(noop, space=SPACE, sampler="random", evaluator="pbt", rounds=rounds, popsize=popsize,
                          seed=seed, output=work, name=name, executor=ex, schedule=schedule)
    return {"part": "simulated", "schedule": schedule, "slots": slots, "rounds": rounds, "popsize": popsize,
            "seed": seed, "trials": len(result.records), "busy_fraction": ex.busy_fraction(),
            "makespan_s": (ex.last_end or 0) - (ex.first_start or 0), "best": result.best_value}


def driver_cost(trials: int, block: int, work: Path) -> list[dict[str, Any]]:
    """Real seconds per block of trials of one long asynchronous run (no-op trials, 64 slots)."""
    marks: list[float] = []

    def progress(event: Any) -> None:
        if isinstance(event, TrialEnd) and event.done % block == 0:
            marks.append(time.perf_counter())

    t0 = time.perf_counter()
    autotune.run(noop, space=SPACE, sampler="random", evaluator="pbt", rounds=trials // 8, popsize=8, seed=0,
                 output=work, name="scale", executor=SimulatedExecutor(make_model(0), slots=64),
                 keep_checkpoints=8, progress=progress)
    rows, last = [], t0
    for i, t in enumerate(marks):
        rows.append({"part": "driver", "trials_done": (i + 1) * block, "ms_per_trial": 1e3 * (t - last) / block})
        last = t
    return rows


def real(schedule: str, rounds: int, popsize: int, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    result = autotune.run(space=str(_bench.ROOT / "search_spaces" / "lr_bs.yaml"), evaluator="pbt", rounds=rounds,
                          popsize=popsize, seed=0, output=work, name=f"real-{schedule}", schedule=schedule)
    wall = time.perf_counter() - t0
    recs = [r for r in result.records if r.started and r.ended]
    slots = _bench.os.cpu_count() or 1  # a local Ray: one trial slot per core
    span = max(r.ended for r in recs) - min(r.started for r in recs)
    busy = sum(r.ended - r.started for r in recs) / (min(slots, popsize) * span)
    return {"part": "real", "schedule": schedule, "slots": min(slots, popsize), "rounds": rounds, "popsize": popsize,
            "seed": 0, "trials": len(result.records), "busy_fraction": busy, "makespan_s": span, "wall_s": wall,
            "best": result.best_value}


def main() -> int:
    p = _bench.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--skip-real", action="store_true", help="only the simulated parts")
    args = p.parse_args()
    out = _bench.out_dir(args)
    seeds = [0] if args.quick else [0, 1, 2]
    rounds, popsize = (3, 5) if args.quick else (20, 5)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for slots in (2, 8, 64):
            for schedule in ("rounds", "async"):
                for seed in seeds:
                    rows.append(simulated(slots, schedule, rounds, popsize, seed, work))
        cost = driver_cost(200 if args.quick else 4000, 50 if args.quick else 500, work)
        if not args.skip_real:
            r_rounds, r_pop = (2, 2) if args.quick else (10, 5)
            for schedule in ("rounds", "async"):
                rows.append(real(schedule, r_rounds, r_pop, work))
    _bench.write_csv(out / "schedule_runs.csv", rows, ["part", "schedule", "slots", "rounds", "popsize", "seed",
                                                       "trials", "busy_fraction", "makespan_s", "wall_s", "best"])
    _bench.write_csv(out / "schedule_driver.csv", cost, ["part", "trials_done", "ms_per_trial"])
    _bench.write_machine(out / "schedule_machine.csv", {"seeds": " ".join(map(str, seeds))})
    summary = []
    for slots in (2, 8, 64):
        for schedule in ("rounds", "async"):
            sel = [r for r in rows if r["part"] == "simulated" and r["slots"] == slots and r["schedule"] == schedule]
            summary.append([slots, schedule, f"{statistics.mean(r['busy_fraction'] for r in sel):.3f}",
                            f"{statistics.mean(r['makespan_s'] for r in sel):.1f}"])
    print(_bench.table(summary, ["slots", "schedule", "busy fraction", "makespan (simulated s)"]))
    print(_bench.table([[r["trials_done"], f"{r['ms_per_trial']:.2f}"] for r in cost], ["trials done", "ms per trial"]))
    for r in rows:
        if r["part"] == "real":
            print(f"real {r['schedule']}: {r['trials']} trials, busy {r['busy_fraction']:.3f}, "
                  f"wall {r['wall_s']:.1f} s, best {r['best']:.4f}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
