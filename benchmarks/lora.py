"""The bundled LoRA fine-tune searched by autotune and by ``Trainer.hyperparameter_search``, side by side.

    python benchmarks/lora.py                       # 4 tools x seeds 0-2, 150 s each (about 36 min on 2 cores)
    python benchmarks/lora.py --quick               # CI: every tool for 20 s on a tiny data set, 1 seed

The trial is ``trials/lora_classification.py`` (peft LoRA adapters on the offline MiniLM encoder, BBC News),
the same code for every tool, each tool in a process of its own with the machine to itself for the same
wall budget (the tools in turn, their order rotated per seed), counted from the moment its Ray is up.  Every evaluation any tool makes is appended
(wall time, eval_accuracy) to one log by a Trainer callback (:class:`LogEvaluations`), so the best-so-far
curves are measured at the same point for all.  The tools (``TOOLS``):

* ``autotune-pbt``: ``autotune.run`` on a local Ray, ``evaluator="pbt"`` with explore ``perturb``, population
  4, one epoch per trial, 2 trials at a time with one thread each; a child resumes its parent's Trainer
  checkpoint (or re-ranks its adapter when its ``r`` or ``lora_alpha`` differs) at its own learning rate;
* ``autotune-asha``: ``evaluator="full"`` with ``early_stop="asha"`` (grace 1, reduction factor 3), sampler
  ``bayes`` (Optuna's TPE), 3 epochs a trial, 2 at a time;
* ``hf-optuna``: ``trainer.hyperparameter_search(backend="optuna")`` with ``TPESampler(seed)`` and
  ``HyperbandPruner(1, 3, 3)``, 3 epochs a trial: the backend runs one trial at a time in the calling
  process (its ``n_jobs`` threads would share one Trainer), so that trial gets both threads;
* ``hf-ray-pbt``: ``trainer.hyperparameter_search(backend="ray")`` with Ray Tune's
  ``PopulationBasedTraining`` (population 4, a decision every epoch, ``learning_rate`` and ``lora_dropout``
  mutated; ``r`` and ``lora_alpha`` cannot change under a restored checkpoint, so they follow the cloned
  trial), 2 trials at a time with one thread each.  Ray Tune's PBT takes no seed: the driver's ``random``
  and ``numpy`` are seeded.

Searched by all: ``learning_rate`` (log 1e-4..1e-2), ``r`` (2..16), ``lora_alpha`` (log 4..64) and
``lora_dropout`` (0..0.3), the ranges of ``search_spaces/lora.yaml``.  Its ``warmup`` is left out, at a
constant learning rate: warmup is a share of a Trainer's steps, which are one epoch under autotune's pbt
and the whole run under Ray Tune's trainable, so it would not mean the same thing for every tool.  The
data: 24 training articles per class, 40 validation articles per class, 48 tokens (``FIXED``), so that a
trial's epoch takes seconds on a CPU thread and every tool makes tens of evaluations in its budget.

Writes ``lora_runs.csv`` (a row per tool and seed: final best, epochs, trials), ``lora_curves.csv`` (best so
far every 10 s), ``lora_summary.csv`` (per tool: median final best, median time to the best peer's median
final, epochs) and ``lora_machine.csv``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import _bench  # noqa: E402

LOG_ENV = "AUTOTUNE_BENCH_LORA_LOG"  # the JSON-lines file every evaluation is appended to
FIXED_ENV = "AUTOTUNE_BENCH_LORA_FIXED"  # the trial's fixed settings (JSON), for every tool's workers
TOOLS = {
    "autotune-pbt": "autotune: pbt (explore perturb, exploit quantile), population 4, 1 epoch a step, 2 at a time",
    "autotune-asha": "autotune: full + asha (grace 1, factor 3), sampler bayes (TPE), 3 epochs, 2 at a time",
    "hf-optuna": "Trainer.hyperparameter_search(backend='optuna'): TPE + HyperbandPruner, 3 epochs, 1 at a time",
    "hf-ray-pbt": "Trainer.hyperparameter_search(backend='ray'): Ray Tune PopulationBasedTraining, population 4",
}
POPULATION, EPOCHS, SLOTS = 4, 3, 2
MANY = 100_000  # trials: the wall budget, not the count, ends every search
FIXED: dict[str, Any] = {"lr_scheduler_type": "constant", "warmup": 0.0, "docs_per_class": 24, "val_per_class": 40,
                         "max_length": 48, "batch_size": 16, "device": "cpu"}
QUICK_FIXED = {**FIXED, "docs_per_class": 6, "val_per_class": 6, "max_length": 32}
SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "r": {"type": "int", "low": 2, "high": 16},
    "lora_alpha": {"type": "float", "low": 4.0, "high": 64.0, "log": True},
    "lora_dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


def _lora() -> Any:
    """trials/lora_classification.py as a module (it puts trials/ on the path for its helpers)."""
    name = "lora_classification"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "trials" / "lora_classification.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _fixed() -> dict[str, Any]:
    return json.loads(os.environ.get(FIXED_ENV) or json.dumps(FIXED))


def _callback_type() -> type:
    from transformers import TrainerCallback

    class LogEvaluations(TrainerCallback):
        """Appends every evaluation (wall time, eval_accuracy) to the benchmark's log."""

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any) -> Any:
            if metrics and "eval_accuracy" in metrics:
                with open(os.environ[LOG_ENV], "a", encoding="utf-8") as f:
                    f.write(json.dumps({"t": time.time(), "acc": float(metrics["eval_accuracy"]), "pid": os.getpid()})
                            + "\n")
            return control

    return LogEvaluations


# -- autotune ---------------------------------------------------------------------------------------
def autotune_objective(config: dict[str, Any], trial: Any) -> None:
    """The LoRA trial's own fine_tune, with the evaluation log attached."""
    _lora().fine_tune({**_fixed(), **config}, callbacks=[_callback_type()()])


def _start_ray() -> None:
    """Ray started before the clock, for autotune and Ray Tune alike (Optuna has none to start)."""
    import logging

    import ray

    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)


def run_autotune(tool: str, seed: int, budget_s: float, work: Path) -> dict[str, Any]:
    import autotune

    _start_ray()

    space = {"metric": "eval_accuracy", "mode": "max", "params": SPACE, "fixed": _fixed()}
    opts: dict[str, Any] = dict(seed=seed, output=work, name=tool, executor="ray", resources={"cpu": 1},
                                time_budget=budget_s)
    if tool == "autotune-pbt":
        opts.update(evaluator="pbt", sampler="random", pbt_explore="perturb", pbt_exploit="quantile", budget=1,
                    popsize=POPULATION, rounds=MANY // POPULATION)
    else:
        opts.update(evaluator="full", sampler="bayes", budget=EPOCHS, popsize=POPULATION, rounds=MANY // POPULATION,
                    early_stop="asha", early_stop_options={"grace_period": 1, "reduction_factor": 3, "max_t": EPOCHS})
    t0 = time.time()
    result = autotune.run(f"{Path(__file__).resolve()}:autotune_objective", space=space, **opts)
    return {"t0": t0, "trials": len(result.records), "pruned": sum(r.status == "pruned" for r in result.records)}


# -- Trainer.hyperparameter_search --------------------------------------------------------------------
def _params(trial: Any) -> dict[str, Any]:
    if trial is None:
        return {}
    return dict(trial.params) if hasattr(trial, "params") else dict(trial)


def peer_trainer(epochs: float, seed: int) -> Any:
    """A Trainer built with ``model_init``, as ``hyperparameter_search`` needs: the trial's ``r``,
    ``lora_alpha`` and ``lora_dropout`` shape the model, its ``learning_rate`` goes to the arguments."""
    import transformers as tf

    lora = _lora()
    base = lora.settings({**_fixed(), "seed": seed, "output_dir": os.environ.get("AUTOTUNE_BENCH_LORA_OUT", "out")})
    train_set, val_set = lora.data(base)

    def model_init(trial: Any) -> Any:
        return lora.build_model(lora.settings({**base, **_params(trial)}))

    args = lora.training_args(base, epochs)
    args.save_total_limit = 1
    return tf.Trainer(model_init=model_init, args=args, train_dataset=train_set, eval_dataset=val_set,
                      compute_metrics=lora.accuracy, callbacks=[_callback_type()()])


def optuna_space(trial: Any) -> dict[str, Any]:
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "r": trial.suggest_int("r", 2, 16),
            "lora_alpha": trial.suggest_float("lora_alpha", 4.0, 64.0, log=True),
            "lora_dropout": trial.suggest_float("lora_dropout", 0.0, 0.3)}


def ray_space(_: Any) -> dict[str, Any]:
    from ray import tune

    return {"learning_rate": tune.loguniform(1e-4, 1e-2), "r": tune.randint(2, 17),
            "lora_alpha": tune.loguniform(4.0, 64.0), "lora_dropout": tune.uniform(0.0, 0.3)}


def accuracy_objective(metrics: dict[str, float]) -> float:
    return float(metrics["eval_accuracy"])


def run_hf(tool: str, seed: int, budget_s: float, work: Path) -> dict[str, Any]:
    import numpy as np

    os.environ["AUTOTUNE_BENCH_LORA_OUT"] = str(work / "out")
    random.seed(seed)
    np.random.seed(seed)
    if tool == "hf-optuna":
        import optuna
        import torch

        torch.set_num_threads(SLOTS)  # one trial at a time: it has the machine
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        trainer = peer_trainer(EPOCHS, seed)
        t0 = time.time()
        best = trainer.hyperparameter_search(
            hp_space=optuna_space, compute_objective=accuracy_objective, n_trials=MANY, direction="maximize",
            backend="optuna", sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=EPOCHS, reduction_factor=3),
            timeout=budget_s)
        return {"t0": t0, "best_reported": best.objective}
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    _start_ray()
    trainer = peer_trainer(1000, seed)  # epochs without end: the budget ends it, PBT decides every epoch
    pbt = PopulationBasedTraining(time_attr="training_iteration", metric="objective", mode="max",
                                  perturbation_interval=1,
                                  hyperparam_mutations={"learning_rate": tune.loguniform(1e-4, 1e-2),
                                                        "lora_dropout": tune.uniform(0.0, 0.3)})
    t0 = time.time()
    best = trainer.hyperparameter_search(
        hp_space=ray_space, compute_objective=accuracy_objective, n_trials=POPULATION, direction="maximize",
        backend="ray", scheduler=pbt, resources_per_trial={"cpu": 1}, time_budget_s=budget_s,
        storage_path=str(work / "ray"), verbose=0, keep_checkpoints_num=2,
        raise_on_failed_trial=False)  # a trial that fails (see the docs) ends; the search goes on
    return {"t0": t0, "best_reported": best.objective}


# -- one tool, in its own process ------------------------------------------------------------------
def worker_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description="one tool of the LoRA benchmark (run by benchmarks/lora.py)")
    p.add_argument("--tool", choices=list(TOOLS), required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--budget-s", type=float, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--result", type=Path, required=True)
    a = p.parse_args(argv)
    _lora()  # torch, transformers and peft imported before the clock starts
    run = run_autotune if a.tool.startswith("autotune") else run_hf
    res = run(a.tool, a.seed, a.budget_s, a.work)
    a.result.write_text(json.dumps({"tool": a.tool, "seed": a.seed, **res}))
    return 0


def run_tool(tool: str, seed: int, budget_s: float, work: Path, fixed: dict[str, Any],
             reuse: bool = False) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    log, result = work / "evaluations.jsonl", work / "result.json"
    if reuse and result.exists():  # this tool and seed finished in an earlier invocation
        return _collect(work, budget_s)
    for stale in (log, result):
        stale.unlink(missing_ok=True)
    paths = [str(ROOT), str(HERE), str(ROOT / "trials"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, LOG_ENV: str(log), FIXED_ENV: json.dumps(fixed), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join(x for x in paths if x), "RAY_AIR_NEW_OUTPUT": "0",
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, __file__, "--worker", "--tool", tool, "--seed", str(seed), "--budget-s", repr(budget_s),
           "--work", str(work), "--result", str(result)]
    with open(work / "output.log", "w") as output:
        proc = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=budget_s + 240)
        except subprocess.TimeoutExpired:  # a last trial past the budget: what it reported within it counts
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if not result.exists():
        raise RuntimeError(f"{tool} (seed {seed}) exited with {proc.returncode}:\n"
                           f"{(work / 'output.log').read_text()[-3000:]}")
    return _collect(work, budget_s)


def _collect(work: Path, budget_s: float) -> dict[str, Any]:
    """A finished tool run: its result, and its evaluations within the budget (times from its start)."""
    log, result = work / "evaluations.jsonl", work / "result.json"
    res = json.loads(result.read_text())
    entries = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        e["t"] -= res["t0"]
        if 0 <= e["t"] <= budget_s:
            entries.append(e)
    res["evaluations"] = sorted(entries, key=lambda e: e["t"])
    return res


def best_at(evals: list[dict[str, Any]], t: float) -> float | None:
    seen = [e["acc"] for e in evals if e["t"] <= t]
    return max(seen) if seen else None


def time_to(evals: list[dict[str, Any]], target: float) -> float | None:
    best = None
    for e in evals:
        best = e["acc"] if best is None else max(best, e["acc"])
        if best >= target - 1e-12:
            return e["t"]
    return None


def summarise(runs: list[dict[str, Any]], tools: list[str]) -> list[dict[str, Any]]:
    """Per tool: the median final best, the median epochs, and the median time to the best peer's median
    final best (a seed that never reaches it counts as the budget, and is counted apart)."""
    finals = {t: [r["final"] for r in runs if r["tool"] == t and r["final"] is not None] for t in tools}
    medians = {t: statistics.median(v) for t, v in finals.items() if v}
    peers = [t for t in medians if not t.startswith("autotune")]
    target = max((medians[t] for t in peers), default=None)
    rows = []
    for t in tools:
        mine = [r for r in runs if r["tool"] == t]
        times = [r["time_to_target"] for r in mine]
        rows.append({
            "tool": t, "seeds": len(mine), "median_final_best": medians.get(t),
            "median_epochs": statistics.median([r["epochs"] for r in mine]) if mine else None,
            "target": target, "reached": sum(x is not None for x in times),
            "median_time_to_target_s": statistics.median([x if x is not None else r["budget_s"]
                                                          for x, r in zip(times, mine)]) if mine else None,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--worker" in argv:
        return worker_main([a for a in argv if a != "--worker"])
    p = _bench.base_parser("LoRA fine-tune: autotune (pbt; full + asha) against Trainer.hyperparameter_search "
                           "(optuna with a pruner; ray with Ray Tune's PBT), same trial, same wall budget")
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    p.add_argument("--budget-s", type=float, default=None, help="wall seconds per tool and seed (default 150; --quick 20)")
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of: {', '.join(TOOLS)}")
    p.add_argument("--reuse", action="store_true",
                   help="keep each tool and seed that finished under OUT/lora_work in an earlier invocation "
                        "(one cut short goes on where it stopped); same budget and seeds")
    a = p.parse_args(argv)
    out = _bench.out_dir(a).resolve()  # absolute: Ray Tune takes its storage path as a URI
    seeds = [int(s) for s in (a.seeds or ("0" if a.quick else "0,1,2")).split(",")]
    budget = a.budget_s or (20.0 if a.quick else 150.0)
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        p.error(f"unknown tools {unknown}; the tools are {', '.join(TOOLS)}")
    fixed = QUICK_FIXED if a.quick else FIXED
    runs, curves = [], []
    for seed in seeds:
        order = tools[seed % len(tools):] + tools[:seed % len(tools)]  # rotated: no tool always goes first
        for tool in order:
            work = out / "lora_work" / f"{tool}-{seed}"
            res = run_tool(tool, seed, budget, work, fixed, reuse=a.reuse)
            evals = res["evaluations"]
            final = best_at(evals, budget)
            runs.append({"tool": tool, "seed": seed, "budget_s": budget, "final": final, "epochs": len(evals),
                         "trials": res.get("trials"), "pruned": res.get("pruned"),
                         "first_evaluation_s": evals[0]["t"] if evals else None, "time_to_target": None})
            for t in range(10, int(budget) + 1, 10):
                curves.append({"tool": tool, "seed": seed, "t": t, "best": best_at(evals, t)})
            print(f"{tool} seed {seed}: best {final} after {len(evals)} evaluations", flush=True)
            runs[-1]["_evals"] = evals
    summary = summarise(runs, tools)
    target = summary[0]["target"] if summary else None
    for r in runs:
        r["time_to_target"] = time_to(r.pop("_evals"), target) if target is not None else None
    summary = summarise(runs, tools)
    _bench.write_csv(out / "lora_runs.csv", runs)
    _bench.write_csv(out / "lora_curves.csv", curves)
    _bench.write_csv(out / "lora_summary.csv", summary)
    _bench.write_machine(out / "lora_machine.csv", {"seeds": ",".join(map(str, seeds)), "budget_s": budget,
                                                    "fixed": json.dumps(fixed)})
    print(_bench.table([[s["tool"], s["median_final_best"], s["median_epochs"], s["reached"],
                         s["median_time_to_target_s"]] for s in summary],
                       ["tool", "median final best", "median epochs", "seeds reaching the target", "median time to it (s)"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
