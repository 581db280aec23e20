"""An existing Trainer script and an existing Lightning script under
``autotune run SCRIPT --evaluator pbt --early-stop asha`` on a real local Ray: the driver and its Ray are
SIGKILLed mid-run, and ``autotune resume`` finishes with every trial once and none that finished run twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

import autotune

from conftest import PROGRAMS, REPO, cli

pytest.importorskip("transformers")
pytest.importorskip("lightning")

SCRIPTS = {
    "transformers": (PROGRAMS / "hf_trainer.py", {
        "metric": "eval_accuracy", "mode": "max", "budget": 1,
        "params": {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True, "init": 3e-3}}}),
    "lightning": (PROGRAMS / "lightning_trial.py", {
        "metric": "neg_loss", "mode": "max", "budget": 1,
        "params": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True, "init": 0.01}}}),
}


def _recorded(run_dir) -> int:
    """Trials the driver has recorded as finished so far (0 before its database exists)."""
    if not (run_dir / "autotune.db").exists():
        return 0
    try:
        return sum(r.status in ("completed", "pruned", "failed") for r in autotune.load(run_dir).records)
    except Exception:  # noqa: BLE001 - the run is being created
        return 0


@pytest.mark.parametrize("loop", sorted(SCRIPTS))
def test_a_script_under_pbt_and_asha_is_killed_and_resumed_with_every_trial_once(tmp_path, loop):
    script, space = SCRIPTS[loop]
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    log = tmp_path / "executions.log"
    env = dict(os.environ, AUTOTUNE_TEST_EXECUTIONS=str(log))
    argv = [sys.executable, "-m", "autotune", "run", str(script), "--space", str(tmp_path / "space.yaml"),
            "--evaluator", "pbt", "--early-stop", "asha", "--early-stop-option", "grace_period=1",
            "--sampler", "random", "--rounds", "2", "--popsize", "2", "--seed", "0", "--output", str(tmp_path),
            "--name", "k"]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and _recorded(tmp_path / "k") < 2:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1][-3000:]  # still running: killed mid-run
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, as a lost machine would
    proc.communicate()
    before = json.loads(cli("show", str(tmp_path / "k"), "--json").stdout)["trials"]
    finished = {t["trial_id"] for t in before if t["status"] in ("completed", "pruned", "failed")}
    assert finished and len(finished) < 4

    res = subprocess.run([sys.executable, "-m", "autotune", "resume", str(tmp_path / "k")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    shown = json.loads(cli("show", str(tmp_path / "k"), "--json").stdout)
    trials = shown["trials"]
    assert sorted(t["trial_id"] for t in trials) == list(range(4))
    assert all(t["status"] in ("completed", "pruned") for t in trials), [(t["status"], t["reason"]) for t in trials]
    children = [t for t in trials if t.get("parent_id") is not None]
    assert children, "no pbt child warm-started from a parent"
    runs = [line.split() for line in log.read_text().splitlines()]
    for tid in finished:
        assert runs.count(["done", str(tid)]) == 1, f"trial {tid} ran again after it had finished"
    for t in trials:
        assert runs.count(["done", str(t["trial_id"])]) >= 1
