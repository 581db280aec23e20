"""Faults a run must survive that the other suites do not already cover: a full disk and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, cli, error_line, objective

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs: room for the database and a few checkpoints, not for the whole run."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_cleanly_and_resumes_after_space_is_freed(tmp_path, small_disk, xy_space):
    xy_space["fixed"] = {"mb": 1.0}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(xy_space))
    proc = cli("run", objective("big_checkpoint"), "--space", str(space), "--sampler", "random", "--evaluator",
               "full", "--rounds", "5", "--popsize", "2", "--seed", "0", "--output", str(small_disk), "--name", "d")
    assert proc.returncode == 2, proc.stderr
    line = error_line(proc.stderr)
    assert "no space left on device" in line and "autotune resume" in line, proc.stderr
    run_dir = small_disk / "d"
    shown = cli("show", str(run_dir), "--json")
    assert shown.returncode == 0, shown.stderr  # the database is intact and readable
    before = json.loads(shown.stdout)["trials"]
    assert 0 < len(before) < 10 and all(t["status"] == "completed" for t in before)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # free space
    res = cli("resume", str(run_dir))
    assert res.returncode == 0, res.stderr
    after = json.loads(cli("show", str(run_dir), "--json").stdout)["trials"]
    assert sorted(t["trial_id"] for t in after) == list(range(10))
    assert all(t["status"] == "completed" for t in after)
    assert {t["trial_id"]: t["value"] for t in after if t["trial_id"] in {b["trial_id"] for b in before}} == {
        t["trial_id"]: t["value"] for t in before}


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_ctrl_c_stops_the_run_and_resume_finishes_it(tmp_path, xy_space, schedule):
    xy_space["fixed"] = {"sleep": 1.0}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(xy_space))
    log = tmp_path / "executions.log"
    env = dict(os.environ, AUTOTUNE_TEST_EXECUTIONS=str(log))
    argv = [sys.executable, "-m", "autotune", "run", objective("quadratic"), "--space", str(space), "--sampler",
            "pshe2", "--evaluator", "full", "--rounds", "3", "--popsize", "4", "--seed", "1", "--output",
            str(tmp_path), "--name", "c", "--schedule", schedule]
    # A terminal's Ctrl-C reaches the whole foreground process group: the driver and the Ray it started.
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("done") < 5):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # what the driver waits on, for the failure to show
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(3)
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"the driver did not stop within 120 s of Ctrl-C:\n{err[-6000:]}") from None
    assert proc.returncode == 130, err
    assert "autotune resume" in err and "Traceback" not in err
    shown = json.loads(cli("show", str(tmp_path / "c"), "--json").stdout)
    assert shown["status"] == "interrupted"
    finished = {t["trial_id"] for t in shown["trials"] if t["status"] in ("completed", "failed")}
    assert all(t["status"] in ("completed", "stopped") for t in shown["trials"])
    res = subprocess.run([sys.executable, "-m", "autotune", "resume", str(tmp_path / "c")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    shown = json.loads(cli("show", str(tmp_path / "c"), "--json").stdout)
    assert shown["status"] == "completed"
    assert sorted(t["trial_id"] for t in shown["trials"]) == list(range(12))
    assert all(t["status"] == "completed" for t in shown["trials"])
    runs = [line.split() for line in log.read_text().splitlines()]
    for tid in finished:
        assert runs.count(["done", str(tid)]) == 1, f"trial {tid} ran again after it had finished"


EXPECTED_REASONS = {
    "ok": None,
    "raises": "RuntimeError: boom in trial",
    "exits": "worker process died",
    "killed": "worker process died",
    "hangs": "timed out after 8 s",
    "nan": "metric 'score' was nan",
    "inf": "metric 'score' was inf",
    "nothing": "the trial reported no metrics",
    "unwritable": "NotADirectoryError",
}


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_every_trial_fault_on_ray_is_a_failed_trial_and_the_search_goes_on(tmp_path, xy_space, schedule):
    import autotune
    from autotune.driver import STATE_KEY
    from autotune.results import locate_run

    faults = list(EXPECTED_REASONS)
    result = autotune.run(objective("chaos"), space=xy_space, sampler="hazero", evaluator="full", rounds=2,
                          popsize=len(faults), seed=3, output=tmp_path, name="chaos", trial_timeout=8,
                          schedule=schedule)
    assert result.status == "completed"
    assert [r.trial_id for r in result.records] == list(range(2 * len(faults)))  # every trial accounted for
    for r in result.records:
        fault = faults[r.trial_id % len(faults)]
        expected = EXPECTED_REASONS[fault]
        if expected is None:
            assert r.status == "completed" and r.value is not None
        else:
            assert r.status == "failed" and expected in r.reason, (fault, r.reason)
            assert r.value is None
            assert r.log_tail and f"fault: {fault}" in r.log_tail, (fault, r.log_tail)
    # the sampler was told about every trial, failures included
    store, run_id, _ = locate_run(tmp_path / "chaos")
    state = store.get_blob(run_id, STATE_KEY)
    if schedule == "async":
        assert state["schedule"] == "async" and state["specs"] == []  # nothing left in flight
    else:
        assert state["phase"] == "told" and state["round"] == 1
    assert state["sampler"]["told"] == [[0, 2 * len(faults) - 1]]
    assert state["sampler"]["pending"] == {}
