"""Part "real" of ``benchmarks/early_stopping.py``: every tool on a bundled trial, same wall budget.

The tools (``TOOLS``), each run in a subprocess of its own (``python benchmarks/_es_real.py --tool ...``)
so that no Ray, Optuna or torch state carries over from one to the next:

* ``autotune-asha-bayes`` / ``autotune-asha-pshe2``: ``autotune.run`` on a local Ray, ``schedule="async"``,
  evaluator ``full`` (every trial from the pretrained model, ``epochs`` epochs), ``early_stop="asha"``;
* ``autotune-pbt``: evaluator ``pbt`` with the library's defaults (sampler ``pshe2``, explore and exploit
  rules as ``autotune run`` picks them), each trial 2 epochs on from a checkpoint, population 4, no early
  stopping; ``autotune-pbt-perturb``, ``-trust-gp`` and ``-sampler`` with that explore rule and quantile
  exploit; ``autotune-pbt-autodl``: sampler explore with round-robin parents (the rules before
  2026-12-03, AutoDL Finetuner's); ``autotune-pbt-rounds``: the defaults in synchronous rounds;
* ``tune-asha-optuna``: Ray Tune ``Tuner`` with ``ASHAScheduler`` and ``OptunaSearch`` (TPE);
* ``tune-pbt``: Ray Tune ``Tuner`` with ``PopulationBasedTraining``, population 4, perturbation every
  2 epochs, a checkpoint every 2 epochs; ``tune-pb2``: the same with ``PB2`` (its GP bandit explores the
  learning rate within the bounds; PB2 takes only continuous parameters, so the batch size stays as
  first drawn, as in Ray's own PB2 examples);
* ``optuna-hyperband``: Optuna ``TPESampler`` + ``HyperbandPruner``, two worker processes sharing one
  journal-file storage, ``trial.report`` / ``trial.should_prune`` every epoch.

Every tool calls the same function, :func:`train_logged`, which runs the trial's own ``train`` and
appends each epoch's report (wall time, trial, epoch, val_accuracy) to a JSON-lines file before handing
it to the tool, so the best-so-far curves of all tools are measured at the same point.  A trial's own
seed (head initialisation, data order) is 1000 + its number, as in trials/_harness.py: autotune's trial
id, Optuna's trial number, Ray Tune's trial index (a hash of the trial id where OptunaSearch names them).

The workload (``--workload``, ``WORKLOADS``; handed to Ray's and Optuna's workers in the environment
variable ``AUTOTUNE_BENCH_WORKLOAD``): ``image`` (the default) is the bundled image trial as above;
``text`` is the bundled text trial (``trials/text_classification.py``: the MiniLM-L6 encoder + a linear
head on BBC News) under the PBT tools only (``autotune-pbt``, ``-perturb``, ``-sampler``, ``tune-pbt``,
``tune-pb2``), searching
``encoder_lr`` (log-uniform 1e-6..3e-4), ``head_lr`` (log-uniform 1e-4..1e-1) and ``batch_size`` (8, 16,
32), the ranges of ``search_spaces/text_finetune.yaml``, with a PBT decision after every epoch.  Its other
settings are that file's ``fixed:`` made cheaper (``max_length`` 32, 40 validation articles per class)
and a constant learning rate without warmup: the trial's linear schedule spans a trial's own epochs,
which are one step under autotune's pbt but a million under Ray Tune's trainable.  PB2 gets the log10 of
both learning rates as its bounds; the batch size stays as first drawn, as in the image workload.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOG_ENV = "AUTOTUNE_BENCH_REPORT_LOG"  # the JSON-lines file every report is appended to
SLOTS = 2  # trials at a time, one CPU thread each, for every tool
LR = (1e-5, 1e-1)  # log-uniform
BATCHES = [16, 32, 64, 128]
GRACE, ETA = 1, 3  # ASHA / Hyperband: first rung after 1 epoch, reduction factor 3
PBT_INTERVAL, POPULATION = 2, 4  # epochs between PBT decisions; population of both PBTs
MANY = 100_000  # trials: the wall budget, not the count, ends every search
# The trial's settings besides the two searched ones: search_spaces/lr_bs.yaml's `fixed`, on the CPU.
FIXED = {"labels_per_class": 100, "val_size": 2000, "model": "small_cnn", "weights": "DEFAULT",
         "data": "fashion-mnist-small", "optimizer": "adamw", "weight_decay": 1e-4, "lr_schedule": "constant",
         "device": "cpu"}
TOOLS = {
    "autotune-asha-bayes": "autotune: async, full + ASHA, sampler bayes (Optuna TPE)",
    "autotune-asha-pshe2": "autotune: async, full + ASHA, sampler pshe2",
    "autotune-pbt": f"autotune: async, pbt (pshe2, default rules), {PBT_INTERVAL} epochs per trial, population {POPULATION}",
    "autotune-pbt-perturb": "autotune: async, pbt, explore perturb, exploit quantile",
    "autotune-pbt-trust-gp": "autotune: async, pbt, explore trust-gp, exploit quantile",
    "autotune-pbt-sampler": "autotune: async, pbt, explore sampler (pshe2), exploit quantile",
    "autotune-pbt-autodl": "autotune: async, pbt, explore sampler (pshe2), exploit round-robin (the old rules)",
    "autotune-pbt-rounds": "autotune: rounds, pbt, default rules",
    "tune-asha-optuna": "Ray Tune: Tuner, ASHAScheduler + OptunaSearch (TPE)",
    "tune-pbt": f"Ray Tune: Tuner, PopulationBasedTraining, population {POPULATION}, every {PBT_INTERVAL} epochs",
    "tune-pb2": f"Ray Tune: Tuner, PB2, population {POPULATION}, every {PBT_INTERVAL} epochs",
    "optuna-hyperband": "Optuna: TPESampler + HyperbandPruner, 2 worker processes, journal storage",
}
ASHA_TOOLS = ("autotune-asha-bayes", "autotune-asha-pshe2", "tune-asha-optuna", "optuna-hyperband")


# ------------------------------------------------------------------------------------------------
# The one trial every tool runs
# ------------------------------------------------------------------------------------------------
WORKLOAD_ENV = "AUTOTUNE_BENCH_WORKLOAD"  # the workload, for the tool's workers (Ray's, Optuna's)
WORKLOADS: dict[str, dict[str, Any]] = {
    "image": {"module": "image_classification", "fixed": FIXED, "log": {"learning_rate": LR},
              "choices": {"batch_size": BATCHES}, "pb2": {"learning_rate": "log_lr"}, "lr": "learning_rate",
              "interval": PBT_INTERVAL, "tools": list(TOOLS)},
    # search_spaces/text_finetune.yaml's ranges and `fixed`, 40 validation articles per class instead of 100 and
    # 32 tokens an article (the cheapest that still trains); a constant rate without warmup (see above)
    "text": {"module": "text_classification",
             "fixed": {"model": "DEFAULT", "data": "bbc-news", "docs_per_class": 40, "val_per_class": 40,
                       "pooling": "mean", "lr_schedule": "constant", "warmup_ratio": 0.0, "weight_decay": 0.01,
                       "max_length": 32, "device": "cpu"},
             "log": {"encoder_lr": (1e-6, 3e-4), "head_lr": (1e-4, 1e-1)}, "choices": {"batch_size": [8, 16, 32]},
             "pb2": {"encoder_lr": "log_encoder_lr", "head_lr": "log_head_lr"}, "lr": "encoder_lr",
             "interval": 1, "tools": ["autotune-pbt", "autotune-pbt-perturb", "autotune-pbt-sampler", "tune-pbt",
                                      "tune-pb2"]},
}


def workload() -> dict[str, Any]:
    """The workload this process (a tool's driver or one of its workers) runs."""
    return WORKLOADS[os.environ.get(WORKLOAD_ENV) or "image"]


def setting(tool: str, name: str = "image") -> str:
    """``TOOLS[tool]`` with the workload's epochs between PBT decisions."""
    interval = WORKLOADS[name]["interval"]
    text = TOOLS[tool]
    if interval != PBT_INTERVAL and tool in ("autotune-pbt", "tune-pbt", "tune-pb2"):
        text = (text.replace(f"{PBT_INTERVAL} epochs per trial", f"{interval} epoch{'s' * (interval != 1)} per trial")
                .replace(f"every {PBT_INTERVAL} epochs", f"every {interval} epoch{'s' * (interval != 1)}"))
    return text


def _trial_module() -> Any:
    import importlib

    for p in (str(ROOT / "trials"), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)
    return importlib.import_module(workload()["module"])


def train_logged(config: dict[str, Any], epochs: int, parent: str | None, ckpt_dir: Path, seed: int, key: Any,
                 report: Callable[[dict[str, float], int, Path], None], in_place: Any = None) -> float:
    """The workload's bundled trial's ``train``, one torch thread; each report is logged, then given to the tool."""
    import torch

    torch.set_num_threads(1)
    log = os.environ[LOG_ENV]
    last = [math.nan]

    def logged(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        last[0] = float(metrics["val_accuracy"])
        line = json.dumps({"t": time.time(), "trial": str(key), "epoch": int(step), "acc": last[0]})
        with open(log, "a") as f:  # one short append per report: atomic between processes
            f.write(line + "\n")
        report(metrics, step, ckpt)

    _trial_module().train({**workload()["fixed"], **config}, epochs, parent, Path(ckpt_dir), seed=seed, report=logged,
                          in_place=in_place)
    return last[0]


def _note(event: dict[str, Any]) -> None:
    """A tool's own event (a trial it stopped early) into the same log."""
    with open(os.environ[LOG_ENV], "a") as f:
        f.write(json.dumps({"t": time.time(), **event}) + "\n")


def _start_ray() -> float:
    import logging

    import ray

    t = time.time()
    ray.init(num_cpus=SLOTS, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    return time.time() - t


# ------------------------------------------------------------------------------------------------
# autotune
# ------------------------------------------------------------------------------------------------
def autotune_objective(config: dict[str, Any], trial: Any) -> None:
    """What trials/_harness.run_objective does, through train_logged: a child on its parent's worker
    continues in place, as the bundled trial does under autotune."""
    _trial_module()  # puts trials/ on the path
    import _harness

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        trial.report(metrics, checkpoint=ckpt, step=step)

    train_logged(config, trial.budget, trial.parent_checkpoint, Path(trial.dir) / "checkpoint", 1000 + int(trial.id),
                 trial.id, report, in_place=_harness.Continuation(trial.parent_state, trial.keep))


def run_autotune(tool: str, seed: int, budget_s: float, epochs: int, work: Path) -> dict[str, Any]:
    import autotune

    wl = workload()
    ray_start = _start_ray()
    params: dict[str, Any] = {k: {"type": "float", "low": lo, "high": hi, "log": True}
                              for k, (lo, hi) in wl["log"].items()}
    params.update({k: {"type": "categorical", "choices": list(c)} for k, c in wl["choices"].items()})
    space = {"metric": "val_accuracy", "mode": "max", "params": params}
    opts: dict[str, Any] = dict(schedule="async", seed=seed, output=work, name=tool, executor="ray",
                                resources={"cpu": 1})
    if tool.startswith("autotune-pbt"):
        opts.update(evaluator="pbt", sampler="pshe2", budget=wl["interval"], popsize=POPULATION,
                    rounds=MANY // POPULATION)
        rule = tool[len("autotune-pbt-"):]
        if rule in ("perturb", "trust-gp", "sampler"):
            opts.update(pbt_explore=rule, pbt_exploit="quantile")
        elif rule == "autodl":
            opts.update(pbt_explore="sampler", pbt_exploit="round-robin")
        elif rule == "rounds":
            opts.update(schedule="rounds")
    else:
        opts.update(evaluator="full", sampler=tool.rsplit("-", 1)[1], budget=epochs, popsize=5, rounds=MANY // 5,
                    early_stop="asha", early_stop_options={"grace_period": GRACE, "reduction_factor": ETA,
                                                           "max_t": epochs})
    t0 = time.time()
    autotune.run(autotune_objective, space=space, time_budget=budget_s, **opts)
    stopped = time.time()
    records = autotune.load(work / tool).records
    end = t0 + budget_s
    done = [r for r in records if r.ended is not None and r.ended <= end]
    last: dict[Any, Any] = {}  # the final population: each member's last trial (the last trials, without members)
    for r in sorted(done, key=lambda r: r.trial_id):
        last[r.member if r.member is not None else r.trial_id % POPULATION] = r
    return {"t0": t0, "ray_start_s": ray_start, "stop_s": stopped - t0,
            "completed": sum(r.status == "completed" for r in done), "pruned": sum(r.status == "pruned" for r in done),
            "final_lrs": [r.config[wl["lr"]] for r in last.values()] if tool.startswith("autotune-pbt") else []}


# ------------------------------------------------------------------------------------------------
# Ray Tune
# ------------------------------------------------------------------------------------------------
def tune_trainable(config: dict[str, Any], epochs: int, interval: int, work: str) -> None:
    """A Ray Tune function trainable around train_logged; with ``interval`` a checkpoint every so many epochs."""
    from ray import tune

    wl = workload()
    for name, key in wl["pb2"].items():
        if key in config:  # PB2's coordinates (see run_tune)
            lo, hi = wl["log"][name]
            x = min(max(config[key], math.log10(lo)), math.log10(hi))
            config = {**{k: v for k, v in config.items() if k != key}, name: 10.0 ** x}
    tid = tune.get_context().get_trial_id()
    tail = tid.rsplit("_", 1)[-1]
    ordinal = int(tail) if tail.isdigit() else int(hashlib.sha256(tid.encode()).hexdigest()[:8], 16) % 100_000
    ckpt_dir = Path(tempfile.mkdtemp(prefix=f"{tid}-", dir=work))
    parent = None
    restored = tune.get_checkpoint()
    if restored is not None:  # a paused trial resumed, or a PBT exploit: continue from that checkpoint
        parent = restored.to_directory(str(ckpt_dir / "parent"))

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        with_ckpt = interval and step % interval == 0
        tune.report({"val_accuracy": metrics["val_accuracy"], "epoch": step},
                    checkpoint=tune.Checkpoint.from_directory(str(ckpt)) if with_ckpt else None)

    train_logged(config, epochs, parent, ckpt_dir / "checkpoint", 1000 + ordinal, tid, report)


def run_tune(tool: str, seed: int, budget_s: float, epochs: int, work: Path) -> dict[str, Any]:
    import numpy as np
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining, TrialScheduler
    from ray.tune.schedulers.pb2 import PB2

    random.seed(seed)  # Ray Tune's samplers, ASHA's bracket and PBT's choices draw from these
    np.random.seed(seed)
    wl = workload()
    interval = wl["interval"]
    ray_start = _start_ray()
    space = {**{k: tune.loguniform(*b) for k, b in wl["log"].items()},
             **{k: tune.choice(list(c)) for k, c in wl["choices"].items()}}
    cfg: dict[str, Any] = dict(metric="val_accuracy", mode="max", time_budget_s=budget_s, reuse_actors=True)
    if tool == "tune-pbt":
        def clip(c: dict[str, Any]) -> dict[str, Any]:  # PBT's x0.8 / x1.2 steps would leave the space
            return {**c, **{k: min(max(c[k], lo), hi) for k, (lo, hi) in wl["log"].items()}}

        cfg.update(num_samples=POPULATION, scheduler=PopulationBasedTraining(
            time_attr="training_iteration", perturbation_interval=interval, custom_explore_fn=clip,
            hyperparam_mutations={**{k: tune.loguniform(*b) for k, b in wl["log"].items()},
                                  **{k: list(c) for k, c in wl["choices"].items()}}))
        trainable = tune.with_parameters(tune_trainable, epochs=1_000_000, interval=interval, work=str(work))
        checkpoints = tune.CheckpointConfig(num_to_keep=POPULATION)  # fewer: PBT may lose a donor
    elif tool == "tune-pb2":  # PB2 searches its bounds in the log of nothing: it gets log10(lr), e.g. in [-5, -1]
        logs = {wl["pb2"][k]: (math.log10(lo), math.log10(hi)) for k, (lo, hi) in wl["log"].items()}
        space = {**{k: tune.uniform(*b) for k, b in logs.items()},
                 **{k: tune.choice(list(c)) for k, c in wl["choices"].items()}}
        cfg.update(num_samples=POPULATION, scheduler=PB2(
            time_attr="training_iteration", perturbation_interval=interval,
            hyperparam_bounds={k: list(b) for k, b in logs.items()}))
        trainable = tune.with_parameters(tune_trainable, epochs=1_000_000, interval=interval, work=str(work))
        checkpoints = tune.CheckpointConfig(num_to_keep=POPULATION)
    else:
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        class NotingASHA(ASHAScheduler):
            def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
                action = super().on_trial_result(tune_controller, trial, result)
                if action == TrialScheduler.STOP and result.get("training_iteration", epochs) < epochs:
                    _note({"pruned": trial.trial_id, "epoch": result.get("training_iteration")})
                return action

        cfg.update(num_samples=MANY, max_concurrent_trials=SLOTS,
                   scheduler=NotingASHA(time_attr="training_iteration", max_t=epochs, grace_period=GRACE,
                                        reduction_factor=ETA),
                   search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True)))
        trainable = tune.with_parameters(tune_trainable, epochs=epochs, interval=0, work=str(work))
        checkpoints = None
    tuner = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space=space,
                       tune_config=tune.TuneConfig(**cfg),
                       run_config=tune.RunConfig(storage_path=str(work / "ray_results"), name=tool, verbose=0,
                                                 checkpoint_config=checkpoints))
    t0 = time.time()
    grid = tuner.fit()
    stopped = time.time()
    reports = read_log(Path(os.environ[LOG_ENV]), t0, budget_s)
    completed = len({r["trial"] for r in reports if r.get("epoch") == epochs}) if tool not in ("tune-pbt", "tune-pb2") else 0
    pruned = sum(1 for r in reports if "pruned" in r)
    final_lrs = []
    if tool in ("tune-pbt", "tune-pb2"):  # the population's configs when the budget stopped it
        for r in grid:
            c = r.config or {}
            if wl["lr"] in c or wl["pb2"][wl["lr"]] in c:  # (none where the trial never started)
                final_lrs.append(c[wl["lr"]] if wl["lr"] in c else 10.0 ** c[wl["pb2"][wl["lr"]]])
    return {"t0": t0, "ray_start_s": ray_start, "stop_s": stopped - t0, "completed": completed, "pruned": pruned,
            "errors": sum(r.error is not None for r in grid), "final_lrs": final_lrs}


# ------------------------------------------------------------------------------------------------
# Optuna
# ------------------------------------------------------------------------------------------------
def _optuna_storage(journal: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(journal)))


def optuna_worker(journal: Path, sampler_seed: int, deadline: float, epochs: int, work: Path) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="es", storage=_optuna_storage(journal),
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed, constant_liar=True),
                              pruner=optuna.pruners.HyperbandPruner(min_resource=GRACE, max_resource=epochs,
                                                                    reduction_factor=ETA))

    def objective(trial: optuna.Trial) -> float:
        wl = workload()
        config = {**{k: trial.suggest_float(k, *b, log=True) for k, b in wl["log"].items()},
                  **{k: trial.suggest_categorical(k, list(c)) for k, c in wl["choices"].items()}}

        def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
            trial.report(metrics["val_accuracy"], step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        ckpt = Path(tempfile.mkdtemp(prefix=f"optuna-{trial.number}-", dir=work))
        return train_logged(config, epochs, None, ckpt, 1000 + trial.number, f"optuna-{trial.number}", report)

    study.optimize(objective, timeout=max(0.0, deadline - time.time()))  # no trial starts after the deadline


def run_optuna(tool: str, seed: int, budget_s: float, epochs: int, work: Path) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    journal = work / "optuna.journal"
    optuna.create_study(study_name="es", storage=_optuna_storage(journal), direction="maximize")
    t0 = time.time()
    deadline = t0 + budget_s
    procs = [subprocess.Popen([sys.executable, __file__, "--optuna-worker", str(journal), "--seed", str(seed * 10 + i),
                               "--deadline", repr(deadline), "--epochs", str(epochs), "--work", str(work),
                               "--workload", os.environ.get(WORKLOAD_ENV) or "image"])
             for i in range(SLOTS)]
    for p in procs:
        p.wait()
    stopped = time.time()
    trials = optuna.load_study(study_name="es", storage=_optuna_storage(journal)).trials
    done = [t for t in trials if t.datetime_complete is not None and t.datetime_complete.timestamp() <= deadline]
    return {"t0": t0, "ray_start_s": 0.0, "stop_s": stopped - t0,
            "completed": sum(t.state == TrialState.COMPLETE for t in done),
            "pruned": sum(t.state == TrialState.PRUNED for t in done),
            "errors": sum(p.returncode != 0 for p in procs)}


# ------------------------------------------------------------------------------------------------
# Running one tool in a subprocess, reading its log
# ------------------------------------------------------------------------------------------------
def read_log(path: Path, t0: float, budget_s: float) -> list[dict[str, Any]]:
    """The log's entries made within the budget, time made relative to ``t0``, in time order."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed process
        entry["t"] = float(entry["t"]) - t0
        if 0 <= entry["t"] <= budget_s:
            out.append(entry)
    return sorted(out, key=lambda e: e["t"])


def run_tool(tool: str, seed: int, budget_s: float, epochs: int, work: Path, workload: str = "image") -> dict[str, Any]:
    """Run one tool once in a fresh process on ``workload``; its result plus its reports (relative times)
    within the budget."""
    work.mkdir(parents=True, exist_ok=True)
    log, result = work / "reports.jsonl", work / "result.json"
    paths = [str(ROOT), str(HERE), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, LOG_ENV: str(log), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in paths if p), "RAY_AIR_NEW_OUTPUT": "0",
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "PYTHONWARNINGS": "ignore", WORKLOAD_ENV: workload}
    cmd = [sys.executable, __file__, "--tool", tool, "--seed", str(seed), "--budget-s", repr(budget_s),
           "--epochs", str(epochs), "--work", str(work), "--result", str(result), "--workload", workload]
    with open(work / "output.log", "w") as output:
        proc = subprocess.Popen(cmd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=budget_s + 300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the tool and anything it started
            proc.wait()
    if proc.returncode != 0 or not result.exists():
        tail = (work / "output.log").read_text()[-2000:]
        raise RuntimeError(f"{tool} (seed {seed}) exited with {proc.returncode}:\n{tail}")
    res = json.loads(result.read_text())
    res["reports"] = read_log(log, res["t0"], budget_s)
    return res


def worker_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one tool of the early-stopping benchmark (run by early_stopping.py)")
    p.add_argument("--tool", choices=list(TOOLS))
    p.add_argument("--optuna-worker", type=Path)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--budget-s", type=float)
    p.add_argument("--deadline", type=float)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--result", type=Path)
    p.add_argument("--workload", choices=list(WORKLOADS), default=os.environ.get(WORKLOAD_ENV) or "image",
                   help="the trial and search space (default image)")
    a = p.parse_args(argv)
    os.environ[WORKLOAD_ENV] = a.workload  # for the workers this process starts (Ray's, Optuna's)
    if a.tool is not None and a.tool not in WORKLOADS[a.workload]["tools"]:
        p.error(f"workload {a.workload} runs only {', '.join(WORKLOADS[a.workload]['tools'])}")
    _trial_module()  # torch and the trial imported before any clock starts
    if a.optuna_worker is not None:
        optuna_worker(a.optuna_worker, a.seed, a.deadline, a.epochs, a.work)
        return 0
    run = run_autotune if a.tool.startswith("autotune") else run_tune if a.tool.startswith("tune") else run_optuna
    try:
        res = run(a.tool, a.seed, a.budget_s, a.epochs, a.work)
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    a.result.write_text(json.dumps({"tool": a.tool, "seed": a.seed, **res}))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    import _es_real  # the functions Ray ships to its workers by name, from this module, not __main__

    sys.exit(_es_real.worker_main())
