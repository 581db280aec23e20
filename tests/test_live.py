"""Live reports: a trial's reports reach the database while it runs (Optuna RUNNING trials with their
intermediate values), ``autotune show`` lists running trials, and none stays "running" after resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import REPO, cli, objective

import autotune
from autotune.results import locate_run

pytestmark = pytest.mark.slow

SPACE = {"metric": "score", "mode": "max", "fixed": {"steps": 8, "pause": 0.2},
         "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


def _start(tmp_path, name, *flags):
    """A run whose trials report 7 times, then wait for the file ``tmp_path/go`` before they end."""
    space = {**SPACE, "fixed": {**SPACE["fixed"], "gate": str(tmp_path / "go")}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    argv = [sys.executable, "-m", "autotune", "run", objective("slow_curve"), "--space", str(tmp_path / "space.yaml"),
            "--sampler", "random", "--evaluator", "full", "--rounds", "1", "--popsize", "2", "--seed", "0",
            "--output", str(tmp_path), "--name", name, *flags]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError("timed out waiting")


def _running(run_dir):
    try:
        store, run_id, _ = locate_run(run_dir)
        return [t for t in store.running_trials(run_id) if len(t["reports"]) >= 7]
    except Exception:  # noqa: BLE001 - the run is still being created
        return []


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_reports_reach_the_database_while_the_trial_runs(tmp_path, schedule):
    proc = _start(tmp_path, "live", "--schedule", schedule)
    run_dir = tmp_path / "live"
    try:
        running = _wait_for(lambda: _running(run_dir))
        trial = running[0]
        assert [r["step"] for r in trial["reports"]] == [1, 2, 3, 4, 5, 6, 7]
        assert trial["last_report"]["metrics"]["score"] < 0
        # plain Optuna sees the trial RUNNING with its intermediate values
        study = optuna.load_study(study_name="live", storage=f"sqlite:///{run_dir / 'autotune.db'}")
        live = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
        assert live and any(len(t.intermediate_values) >= 2 for t in live)
        # `autotune show` lists running trials with their last report
        shown = cli("show", str(run_dir))
        assert shown.returncode == 0, shown.stderr
        rows = [line.split() for line in shown.stdout.splitlines()]
        live_rows = [r for r in rows if len(r) > 2 and r[2] == "running"]
        assert live_rows and all(r[-2] == "step" or r[-1] == "yet" for r in live_rows), shown.stdout  # last report
        shown_json = json.loads(cli("show", str(run_dir), "--json").stdout)
        assert shown_json["running"] and all(t["status"] == "running" for t in shown_json["running"])
        (tmp_path / "go").touch()  # let the trials end
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    result = autotune.load(run_dir)
    assert len(result.records) == 2 and all(r.status == "completed" for r in result.records)
    study = optuna.load_study(study_name="live", storage=f"sqlite:///{run_dir / 'autotune.db'}")
    assert len(study.trials) == 2  # each trial is one row, finished in place
    assert all(t.state == optuna.trial.TrialState.COMPLETE and len(t.intermediate_values) == 8 for t in study.trials)


def test_a_killed_driver_leaves_no_trial_running_once_resumed(tmp_path):
    proc = _start(tmp_path, "dead")
    run_dir = tmp_path / "dead"
    try:
        _wait_for(lambda: _running(run_dir))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its local Ray: no handler runs
        proc.wait()
    store, run_id, _ = locate_run(run_dir)
    assert store.running_trials(run_id)  # what the killed driver left
    (tmp_path / "go").touch()
    res = cli("resume", str(run_dir), timeout=300)
    assert res.returncode == 0, res.stderr
    assert store.running_trials(run_id) == []
    study = optuna.load_study(study_name="dead", storage=f"sqlite:///{run_dir / 'autotune.db'}")
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    result = autotune.load(run_dir)
    assert sorted(r.trial_id for r in result.records) == [0, 1]
    assert all(r.status == "completed" for r in result.records)
