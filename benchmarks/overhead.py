"""Driver overhead: autotune against Ray Tune's own Tuner on a no-op trial, and a real trial's cost.

    python benchmarks/overhead.py             # 1,000 no-op trials each (the committed results)
    python benchmarks/overhead.py --quick     # CI: 20 no-op trials each and a 2-trial fine-tune
    python benchmarks/overhead.py --profile --label after   # where autotune's time per trial goes

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

``--profile``: autotune alone, no Tune.  The no-op search runs ``--repeats`` times with timers around
the driver's parts (sampler ask and tell, evaluator plan, state save, each database write, ``best/``,
the executor's Ray calls, the wait for workers), each counted exclusive of the timed parts it calls,
in two settings: the no-op trial with its one report, and a trial making ``--reports`` reports under
the median early-stopping rule (every report waits for a verdict; the rule never stops these, all
values being equal).  Then the report bus's own round trip, from a Ray actor, without a rule and with
one (answered by this process as the driver answers it).  Medians over the repeats go to
``overhead_profile_LABEL.csv``.
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


def reporting_noop(config: dict[str, Any], trial: Any) -> None:
    for _ in range(int(config.get("reports", 5))):
        trial.report({"score": 0.0})


def tune_noop(config: dict[str, Any]) -> None:
    from ray import tune

    tune.report({"score": 0.0})


def autotune_noop(trials: int, popsize: int, work: Path, schedule: str = "async", name: str = "noop",
                  objective: Any = noop, **options: Any) -> dict[str, Any]:
    import autotune

    t0 = time.perf_counter()
    result = autotune.run(objective, space=NOOP_SPACE, sampler="random", evaluator="full", rounds=trials // popsize,
                          popsize=popsize, output=work, name=name, seed=0, executor="ray", schedule=schedule,
                          **options)
    wall = time.perf_counter() - t0
    frame = result.trials
    done = int((frame["status"] == "completed").sum())
    return {"tool": "autotune", "setting": f"{schedule}, {trials // popsize} x {popsize}", "trials": trials,
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


class _Timers:
    """Wall time per named part of the driver, exclusive of the timed parts it calls (main thread only:
    the heartbeat thread's writes are off the driver's path)."""

    def __init__(self) -> None:
        import threading

        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._main = threading.main_thread()
        self._stack: list[float] = []
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, name: str, fn: Any) -> Any:
        import functools
        import threading

        @functools.wraps(fn)
        def timed(*a: Any, **k: Any) -> Any:
            if threading.current_thread() is not self._main:
                return fn(*a, **k)
            self._stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                inner = self._stack.pop()
                self.ms[name] = self.ms.get(name, 0.0) + 1e3 * (dt - inner)
                self.calls[name] = self.calls.get(name, 0) + 1
                if self._stack:
                    self._stack[-1] += dt
        return timed

    def patch(self, owner: Any, attr: str, name: str) -> None:
        if not hasattr(owner, attr):  # a part this version of autotune does not have
            return
        old = owner.__dict__.get(attr, getattr(owner, attr)) if isinstance(owner, type) else getattr(owner, attr)
        self._undo.append((owner, attr, old))
        setattr(owner, attr, self.wrap(name, getattr(owner, attr)))

    def undo(self) -> None:
        for owner, attr, old in reversed(self._undo):
            setattr(owner, attr, old)
        self._undo.clear()


#: (owner, attribute, part): what the profile times; parts missing from a version are skipped
def _profile_parts() -> list[tuple[Any, str, str]]:
    import ray

    from autotune import checkpoints, driver, store
    from autotune.executors import ray_executor as rx

    D, S, X = driver.Driver, store.Store, rx.RayExecutor
    return [
        (D, "_save_async_state", "driver state save"), (D, "_save_state", "driver state save"),
        (S, "put_blob", "driver state save"), (S, "save_driver_state", "driver state save"),
        (S, "start_trial", "store.start_trial"), (S, "report_trial", "store.report_trial"),
        (S, "flush_live", "store.flush_live (live rows)"),
        (S, "record_trial", "store.record_trial"), (S, "record_trials", "store.record_trial"),
        (S, "set_attr", "store.set_attr"), (S, "mark_checkpoints_removed", "checkpoint bookkeeping"),
        (D, "_live", "driver _live (rest)"), (D, "_judge", "early-stopping rule"),
        (D, "_finish", "driver _finish (rest)"), (D, "_record", "driver _record (rest)"),
        (D, "_plan_next", "driver _plan_next (rest)"),
        (checkpoints.CheckpointFiles, "write_best", "best/ (write_best)"),
        (checkpoints.CheckpointFiles, "prune", "checkpoint bookkeeping"),
        (X, "submit", "executor submit"), (X, "_execute", "actor calls (run.remote)"),
        (X, "_drain_bus", "bus drain (ray.get)"), (X, "_observe_starts", "worker start checks"),
        (X, "_collect", "outcome (ray.get)"), (X, "verdict", "verdict to the bus"),
        (X, "_turn", "executor turn (rest)"), (X, "poll", "executor poll (rest)"),
        (ray, "wait", "ray.wait (waiting for workers)"),
    ]


def _timed_run(timers: _Timers, run: Any) -> dict[str, Any]:
    """``run()`` with the driver's parts timed, and its sampler and evaluator (made inside) too."""
    from autotune import driver

    init = driver.Driver.__init__

    def timed_init(self: Any, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        for obj, attr, name in ((self.sampler, "ask", "sampler ask"), (self.sampler, "tell", "sampler tell"),
                                (self.evaluator, "plan_next", "evaluator plan"), (self.evaluator, "plan", "evaluator plan")):
            if hasattr(obj, attr):
                setattr(obj, attr, timers.wrap(name, getattr(obj, attr)))

    for owner, attr, name in _profile_parts():
        timers.patch(owner, attr, name)
    driver.Driver.__init__ = timed_init  # type: ignore[method-assign]
    try:
        return run()
    finally:
        driver.Driver.__init__ = init  # type: ignore[method-assign]
        timers.undo()


def bus_round_trip(n: int, judging: bool) -> dict[str, float]:
    """Median ms of one report's ``ray.get(bus.put.remote(...))`` in a Ray actor, as a worker makes it;
    with ``judging``, this process answers each report as the driver does (next_reports, then release)."""
    import threading

    import ray

    from autotune.executors.ray_executor import _ReportBus

    @ray.remote(num_cpus=0)
    class Reporter:
        def go(self, bus: Any, n: int) -> list[float]:
            out = []
            for i in range(n):
                t = time.perf_counter()
                ray.get(bus.put.remote(0, {"step": i + 1, "metrics": {"score": 0.0}, "time": time.time()}), timeout=30)
                out.append(1e3 * (time.perf_counter() - t))
            return out

    bus = ray.remote(_ReportBus).options(num_cpus=0).remote(judging)
    reporter = Reporter.remote()
    ray.get(reporter.go.remote(bus, 3))  # warm both actors
    ray.get(bus.drain.remote())
    done = threading.Event()
    answered = [0]

    def answer() -> None:
        while not done.is_set():
            for tid, entry in ray.get(bus.next_reports.remote(0.2)):
                bus.release.remote(tid, int(entry["step"]))
                answered[0] += 1

    thread = threading.Thread(target=answer, daemon=True) if judging else None
    if thread:
        thread.start()
    times = ray.get(reporter.go.remote(bus, n))
    done.set()
    if thread:
        thread.join()
    for actor in (reporter, bus):
        ray.kill(actor)
    return {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * (len(times) - 1))]}


def profile(args: Any, out: Path, work: Path) -> list[dict[str, Any]]:
    """Time the parts of autotune's no-op search (see the module's docstring); one row per part."""
    settings = [("noop", {"objective": noop}, 1),
                ("reports+rule", {"objective": reporting_noop, "early_stop": "median"}, args.reports)]
    rows: list[dict[str, Any]] = []
    for label, opts, reports in settings:
        trials = args.trials if label == "noop" else max(args.popsize, args.trials // 4)
        space = {"params": {**NOOP_SPACE["params"]}, "fixed": {"reports": reports}}
        runs = []
        for rep in range(args.repeats):
            timers = _Timers()
            objective = opts["objective"]
            extra = {k: v for k, v in opts.items() if k != "objective"}

            def go() -> dict[str, Any]:
                import autotune

                t0 = time.perf_counter()
                result = autotune.run(objective, space=space, sampler="random", evaluator="full",
                                      rounds=trials // args.popsize, popsize=args.popsize, output=work,
                                      name=f"profile-{label}-{rep}", seed=rep, executor="ray",
                                      schedule=args.schedule, **extra)
                frame = result.trials
                return {"wall_ms": 1e3 * (time.perf_counter() - t0),
                        "in_worker_ms": 1e3 * float(frame["duration_s"].median()),
                        "completed": int((frame["status"] == "completed").sum())}

            res = _timed_run(timers, go)
            runs.append((res, timers))
            print(f"profile {label} run {rep + 1}/{args.repeats}: {res['wall_ms'] / trials:.1f} ms per trial, "
                  f"{res['completed']}/{trials} completed", flush=True)
        parts = sorted({p for _, t in runs for p in t.ms})

        def med(values: list[float]) -> float:
            return statistics.median(values)

        for part in parts:
            ms = [t.ms.get(part, 0.0) for _, t in runs]
            calls = [t.calls.get(part, 0) for _, t in runs]
            rows.append({"setting": label, "part": part, "calls_per_trial": med(calls) / trials,
                         "ms_per_call": med([m / max(1, c) for m, c in zip(ms, calls)]),
                         "ms_per_trial": med(ms) / trials, "ms_per_report": med(ms) / (trials * reports)})
        walls = [r["wall_ms"] / trials for r, _ in runs]
        timed = [sum(t.ms.values()) / trials for _, t in runs]
        rows.append({"setting": label, "part": "untimed (run set-up, Ray start of workers, rest)",
                     "ms_per_trial": med([w - x for w, x in zip(walls, timed)]),
                     "ms_per_report": med([w - x for w, x in zip(walls, timed)]) / reports})
        rows.append({"setting": label, "part": "TOTAL wall per trial", "ms_per_trial": med(walls),
                     "ms_per_report": med(walls) / reports, "runs": args.repeats,
                     "min_ms_per_trial": min(walls), "max_ms_per_trial": max(walls)})
        rows.append({"setting": label, "part": "in-worker time per trial (records, median)",
                     "ms_per_trial": med([r["in_worker_ms"] for r, _ in runs])})
    for judging in (False, True):
        trip = [bus_round_trip(200, judging) for _ in range(args.repeats)]
        rows.append({"setting": "bus", "part": f"report round trip in a worker, {'rule on' if judging else 'no rule'}",
                     "ms_per_call": med([t["median_ms"] for t in trip]), "p90_ms": med([t["p90_ms"] for t in trip])})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, help="no-op trials per tool (default 1000; --quick 20)")
    p.add_argument("--tune-noreuse-trials", type=int,
                   help="trials for Tune without actor reuse (default 40; --quick 4): a new process per trial")
    p.add_argument("--popsize", type=int, default=10)
    p.add_argument("--schedule", default="async", choices=["async", "rounds"], help="autotune's schedule")
    p.add_argument("--profile", action="store_true", help="time autotune's parts instead (see above)")
    p.add_argument("--repeats", type=int, default=3, help="--profile: runs per setting (medians reported)")
    p.add_argument("--reports", type=int, default=5, help="--profile: reports per trial with the rule on")
    p.add_argument("--label", default="after", help="--profile: the CSV is overhead_profile_LABEL.csv")
    p.add_argument("--real-rounds", type=int)
    p.add_argument("--real-popsize", type=int)
    p.add_argument("--real-budget", type=int)
    args = p.parse_args(argv)
    out = _bench.out_dir(args)
    trials = args.trials or (20 if args.quick else 300 if args.profile else 1000)
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
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if args.profile:
            args.trials = trials
            prows = profile(args, out, work / "profile")
            _bench.write_csv(out / f"overhead_profile_{args.label}.csv", prows,
                             ["setting", "part", "calls_per_trial", "ms_per_call", "ms_per_trial", "ms_per_report",
                              "p90_ms", "runs", "min_ms_per_trial", "max_ms_per_trial"])
            _bench.write_machine(out / f"overhead_profile_{args.label}_machine.csv", {
                "trials": trials, "repeats": args.repeats, "seeds": f"0-{args.repeats - 1}", "schedule": args.schedule,
                "loadavg_start": load, "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                "elapsed_s": round(time.time() - started, 1)})
            print(_bench.table([(r["setting"], r["part"], _fmt(r.get("calls_per_trial")), _fmt(r.get("ms_per_call")),
                                 _fmt(r.get("ms_per_trial")), _fmt(r.get("ms_per_report"))) for r in prows],
                               ["setting", "part", "calls/trial", "ms/call", "ms/trial", "ms/report"]))
            print(f"\nresults in {out}")
            return 0
        rows = [autotune_noop(trials, min(args.popsize, trials), work / "autotune", args.schedule),
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
                                                             "seed": 0, "schedule": args.schedule,
                                                             "loadavg_start": load,
                                                             "loadavg_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
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


def _fmt(v: Any) -> str:
    return "" if v is None or v == "" else f"{v:.3g}"


if __name__ == "__main__":
    sys.exit(main())
