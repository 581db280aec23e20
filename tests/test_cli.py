"""The command line: one-line errors, show/export, and resume after a SIGKILLed driver."""

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

from autotune.cli import main as autotune_main
from conftest import REPO, cli, objective


def _space_file(tmp_path, space, name="space.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(space))
    return path


#: the commands whose errors are checked in a real `python -m autotune` process (exit status, stderr);
#: the others call the same main() in this process ("tmod:absent" needs the working folder that
#: `python -m` puts on sys.path; "127.0.0.1:1" joins Ray, whose token loader then keeps what it read for the
#: life of the process, so a later test's cluster token would go unseen)
IN_A_PROCESS_OF_ITS_OWN = {"frobnicate", "dashboard", "show", "tmod:absent", "127.0.0.1:1"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--space", "missing.yaml"], "missing.yaml"),
        (["run", "--space", "{space}", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["run", "--space", "{space}", "--evaluator", "nope"], "unknown evaluator 'nope'"),
        (["run", "--space", "{space}", "--popsize", "0"], "popsize must be an integer >= 1"),
        (["run", "--space", "{space}", "--rounds", "0"], "rounds must be an integer >= 1"),
        (["run", "--space", "{space}", "--mode", "up"], "mode must be 'min' or 'max'"),
        (["run", "--space", "{space}", "--rounds", "many"], "rounds must be an integer >= 1, but got 'many'"),
        (["run", "--space", "{bare}"], "no trial to run"),
        (["run", "nowhere.py", "--space", "{space}"], "nowhere.py does not exist"),
        (["run", "--space", "{space}", "--sampler", "hazero", "--sampler-option", "sigma0=big"],
         "bad option value (sigma0='big')"),
        (["run", "--space", "{space}", "--sampler-option", "seed=3"], "seed is a run setting: --seed"),
        (["run", "--space", "{space}", "--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),  # not a hang
        (["run", "--space", "{lost_trial}"], "lost.py does not exist (the `trial:` of "),
        (["run", "{objectives}:absent", "--space", "{space}"], "defines no function 'absent'"),
        (["run", "--space", "{space}", "--", "--epochs=3"], "go to a script trial, but the trial is the function"),
        (["run", "--space", "{space}", "--output", "{space}"], "is a file, not a folder"),
        (["run", "--space", "{bad_defaults}"], "bad_defaults.yaml: defaults: rounds must be an integer >= 1, but got 'ten'"),
        (["show", "{tmp}"], "is not an autotune run folder"),
        (["resume", "{tmp}/none"], "is not an autotune run folder"),
        (["frobnicate"], "invalid choice"),
        (["run", "--space", "{space}", "--output", "{tmp}", "--name", "full"], "is not empty (not a run folder)"),
        (["run", "tmod:absent", "--space", "{space}"], "tmod.py defines no function 'absent'"),  # read, not run
        (["dashboard", "--port", "80000"], "a port is 1 to 65535, got 80000"),
        (["run", "--space", "{space}", "--name", "x" * 300], "run name is 300 bytes long; at most 200"),
    ],
)
def test_user_errors_are_one_line_and_leave_nothing(tmp_path, xy_space, args, message, monkeypatch, capsys):
    bare = _space_file(tmp_path, xy_space, "bare.yaml")
    space = _space_file(tmp_path, {**xy_space, "trial": objective("quadratic")})
    bad_defaults = _space_file(tmp_path, {**xy_space, "trial": objective("quadratic"), "defaults": {"rounds": "ten"}},
                               "bad_defaults.yaml")
    (tmp_path / "full" / "stuff").mkdir(parents=True)
    (tmp_path / "tmod.py").write_text("def real(config, trial):\n    return 1.0\n")
    lost_trial = _space_file(tmp_path, {**xy_space, "trial": "../lost.py"}, "lost_trial.yaml")
    fmt = {"lost_trial": str(lost_trial), "space": str(space), "bare": str(bare), "tmp": str(tmp_path), "bad_defaults": str(bad_defaults),
           "objectives": str(objective("x").rsplit(":", 1)[0])}
    args = [a.format(**fmt) for a in args]
    if args[0] == "run" and "--output" not in args:
        args[1:1] = ["--output", str(tmp_path / "runs")]  # before any `--`
    if IN_A_PROCESS_OF_ITS_OWN & set(args):
        proc = cli(*args, cwd=tmp_path)
        code, stderr = proc.returncode, proc.stderr
    else:  # the same entry point in this process: a new interpreter costs seconds per case
        monkeypatch.chdir(tmp_path)
        try:
            code = autotune_main(args)
        except SystemExit as e:  # argparse's own errors
            code = e.code
        stderr = capsys.readouterr().err
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autotune: error:"), stderr
    assert message in lines[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_show_and_export(tmp_path, xy_space, cli_here):
    space = _space_file(tmp_path, xy_space)
    proc = cli("run", objective("quadratic"), "--space", str(space), "--sampler", "random", "--evaluator", "full",
               "--rounds", "2", "--popsize", "2", "--seed", "1", "--output", str(tmp_path), "--name", "r",
               "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    assert "best score" in proc.stdout
    assert ", generation " in proc.stdout and ", round " not in proc.stdout  # async: a round is a generation
    shown = json.loads(cli_here("show", str(tmp_path / "r"), "--json").stdout)
    assert len(shown["trials"]) == 4
    assert shown["best"]["value"] == max(t["value"] for t in shown["trials"])
    table = cli_here("show", str(tmp_path / "r")).stdout
    assert table.splitlines()[0].split()[:4] == ["trial", "generation", "status", "score"]  # async: see below
    out = cli_here("export", str(tmp_path / "r"), "--format", "csv").stdout.strip()
    import pandas as pd

    frame = pd.read_csv(out)
    assert len(frame) == 4 and set(frame["status"]) == {"completed"}
    parquet = cli_here("export", str(tmp_path / "r"), "--format", "parquet").stdout.strip()
    assert len(pd.read_parquet(parquet)) == 4
    # not a terminal: where the run lives, then one line per popsize trials ended (asynchronous default)
    assert proc.stderr.splitlines()[0].startswith(f"run folder {tmp_path / 'r'} (4 trials, asynchronous)")
    assert [ln.split(":")[0] for ln in proc.stderr.splitlines()[1:]] == ["trials 2/4", "trials 4/4"]
    # AutoDL Finetuner's synchronous rounds: one line per round
    rounds = cli("run", objective("quadratic"), "--space", str(space), "--sampler", "random", "--rounds", "2",
                 "--popsize", "2", "--output", str(tmp_path / "other"), "--name", "rr", "--executor", "local",
                 "--schedule", "rounds")
    assert rounds.returncode == 0, rounds.stderr
    assert rounds.stderr.splitlines()[0].startswith(f"run folder {tmp_path / 'other' / 'rr'} (2 rounds)")
    assert [ln.split(":")[0] for ln in rounds.stderr.splitlines()[1:]] == ["round 1/2", "round 2/2"]

    # several runs: a folder of runs lists them, several folders show each, --json gives a list
    assert cli("run", objective("quadratic"), "--space", str(space), "--sampler", "random", "--rounds", "1",
               "--popsize", "1", "--output", str(tmp_path), "--name", "r2", "--executor", "local").returncode == 0
    (tmp_path / "not-a-run").mkdir()
    listing = cli_here("show", str(tmp_path)).stdout.splitlines()
    assert listing[0].split() == ["run", "status", "trials", "failed", "best"]
    assert [ln.split()[:4] for ln in listing[1:3]] == [["r", "completed", "4", "0"], ["r2", "completed", "1", "0"]]
    assert listing[1].split()[4] == f"score={shown['best']['value']:.4g}"
    both = cli_here("show", str(tmp_path / "r"), str(tmp_path / "r2")).stdout
    assert "run r (completed): 4 trials" in both and "run r2 (completed): 1 trials" in both
    docs = json.loads(cli_here("show", str(tmp_path), "--json").stdout)
    assert [(d["name"], len(d["trials"])) for d in docs] == [("r", 4), ("r2", 1)]
    # an unreadable run is listed as such, in text and JSON alike, and the others still show
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    docs = json.loads(cli_here("show", str(tmp_path), "--json").stdout)
    assert [(d["name"], d["status"]) for d in docs] == [("broken", "unreadable"), ("r", "completed"),
                                                        ("r2", "completed")]
    assert "unreadable" in docs[0]["error"]
    # the export format follows --output's extension
    pq = cli_here("export", str(tmp_path / "r"), "--output", str(tmp_path / "t.parquet")).stdout.strip()
    assert len(pd.read_parquet(pq)) == 4


def test_a_run_folder_is_self_contained_whatever_its_name_and_wherever_it_moves(tmp_path, xy_space, cli_here):
    """The default database is found through the folder itself: a name with URL characters works, and a
    moved or copied run folder reads its own database, never the original's."""
    import shutil

    space = _space_file(tmp_path, xy_space)
    name = "lr@small%41 #x"
    proc = cli("run", objective("quadratic"), "--space", str(space), "--sampler", "random", "--rounds", "1",
               "--popsize", "2", "--output", str(tmp_path / "a"), "--name", name, "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "a" / name / "run.json").read_text())["storage"] is None
    assert len(json.loads(cli_here("show", str(tmp_path / "a" / name), "--json").stdout)["trials"]) == 2
    shutil.copytree(tmp_path / "a" / name, tmp_path / "copy")
    shutil.move(tmp_path / "a" / name, tmp_path / "moved")
    for folder in ("moved", "copy"):
        shown = cli_here("show", str(tmp_path / folder), "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["name"] == name and len(json.loads(shown.stdout)["trials"]) == 2
    (tmp_path / "moved" / "autotune.db").unlink()  # the copy does not lean on the moved original
    assert json.loads(cli_here("show", str(tmp_path / "copy"), "--json").stdout)["status"] == "completed"


@pytest.mark.slow
def test_resume_after_sigkill_runs_each_trial_once(tmp_path, xy_space, cli_here):
    xy_space["fixed"] = {"sleep": 0.4}
    space = _space_file(tmp_path, xy_space)
    log = tmp_path / "executions.log"
    env = dict(os.environ, AUTOTUNE_TEST_EXECUTIONS=str(log))
    run_dir = tmp_path / "k"
    argv = [sys.executable, "-m", "autotune", "run", objective("quadratic"), "--space", str(space), "--sampler",
            "hazero", "--evaluator", "full", "--rounds", "4", "--popsize", "3", "--seed", "3", "--output",
            str(tmp_path), "--name", "k"]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill mid-round 1, after some trials finished
        done = log.read_text().count("done") if log.exists() else 0
        if done >= 4:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    shown = json.loads(cli_here("show", str(run_dir), "--json").stdout)
    before = {t["trial_id"] for t in shown["trials"]}
    assert 3 <= len(before) < 12  # round 0 is stored before round 1 starts; the 4th may be unstored
    res = subprocess.run([sys.executable, "-m", "autotune", "resume", str(run_dir)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    shown = json.loads(cli_here("show", str(run_dir), "--json").stdout)
    assert sorted(t["trial_id"] for t in shown["trials"]) == list(range(12))
    assert all(t["status"] == "completed" for t in shown["trials"])
    runs = [line.split() for line in log.read_text().splitlines()]
    for tid in before:  # trials finished before the kill never ran again
        assert runs.count(["start", str(tid)]) == 1 and runs.count(["done", str(tid)]) == 1, tid
    assert {int(t) for what, t in runs if what == "done"} == set(range(12))
    # every finished trial is stored once in the database
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{run_dir / 'autotune.db'}")
    study = optuna.load_study(study_name="k", storage=storage)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(completed) == 12
    assert sorted(t.user_attrs["trial_id"] for t in completed) == list(range(12))


def test_a_killed_drivers_run_reads_interrupted_and_a_live_one_is_not_resumed_twice(tmp_path, xy_space, cli_here):
    from fastapi.testclient import TestClient

    from autotune.dashboard.app import create_app

    xy_space["fixed"] = {"sleep": 60}
    space = _space_file(tmp_path, xy_space)
    run_dir = tmp_path / "slow"
    argv = [sys.executable, "-m", "autotune", "run", objective("quadratic"), "--space", str(space), "--rounds", "1",
            "--popsize", "1", "--output", str(tmp_path), "--name", "slow", "--executor", "local"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (run_dir / "trials").exists():
            time.sleep(0.1)
        assert autotune.load(run_dir).status == "running"
        refused = cli("resume", str(run_dir), "--executor", "local")
        assert refused.returncode == 2, refused.stdout
        assert f"is still running (driver pid {proc.pid} on" in refused.stderr
        assert proc.poll() is None  # the refused resume left the live driver alone
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # the database still says running, but its driver is gone: the run reads interrupted everywhere
    assert autotune.load(run_dir).status == "interrupted"
    assert json.loads(cli_here("show", str(run_dir), "--json").stdout)["status"] == "interrupted"
    runs = TestClient(create_app([tmp_path])).get("/api/runs").json()
    assert [r["status"] for r in runs["runs"] if r["name"] == "slow"] == ["interrupted"]


def test_progress_line_counts_running_queued_done_and_failed_and_logs_a_line_per_round():
    import io

    from autotune.cli import Progress
    from autotune.events import RoundEnd, RoundStart, RunStart, TrialEnd
    from autotune.records import TrialRecord

    def rec(tid, status, value):
        return TrialRecord(trial_id=tid, round=0, config={}, budget=None, status=status, reason=None, value=value,
                           reports=[], planned_parent_id=None, parent_id=None, parent_checkpoint=None,
                           parent_step=None, parent_hash=None, parent_note=None, checkpoint=None,
                           checkpoint_step=None, checkpoint_hash=None, started=0, ended=1, node=None, gpu_ids=[],
                           log_tail=None, trial_dir="")

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = Progress(stream=out)
    p(RoundStart(round=0, rounds=3, trials=5, todo=5, slots=2, mode="min"))
    assert "round 1/3  running 2  queued 3  done 0  failed 0  best -" in out.getvalue()
    p(TrialEnd(round=0, record=rec(0, "completed", 0.5), done=1, total=15))
    p(TrialEnd(round=0, record=rec(1, "completed", 0.2), done=2, total=15))
    p(TrialEnd(round=0, record=rec(2, "failed", None), done=3, total=15))
    assert out.getvalue().rsplit("\r", 1)[1].startswith(
        "\033[Kround 1/3  running 2  queued 0  done 2  failed 1  best 0.2 (trial 1)")  # min mode: lower is better
    p(TrialEnd(round=0, record=rec(3, "completed", 0.9), done=4, total=15))
    p(TrialEnd(round=0, record=rec(4, "completed", 0.1), done=5, total=15))
    p(RoundEnd(round=0, rounds=3, best=rec(4, "completed", 0.1), records=[]))
    assert out.getvalue().endswith("\n") and "round 1/3: 5 trials, 1 failed; best 0.1 (trial 4)" in out.getvalue()

    log = io.StringIO()  # not a terminal (a log file, CI): no status line, one plain line per round
    p = Progress(stream=log)
    p(RunStart(run_dir="runs/x", schedule="rounds", round=1, rounds=2, total=4, done=2))
    p(RoundStart(round=1, rounds=2, trials=2, todo=2, slots=1, mode="max"))
    p(TrialEnd(round=1, record=rec(0, "completed", 0.5), done=1, total=4))
    assert log.getvalue() == "run folder runs/x (2 rounds, continuing at round 2); watch it with: autotune dashboard runs/x\n"
    p(TrialEnd(round=1, record=rec(1, "failed", None), done=2, total=4))
    p(RoundEnd(round=1, rounds=2, best=rec(0, "completed", 0.5), records=[]))
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue() and "\033" not in log.getvalue()
    assert lines[1].startswith("round 2/2: 2 trials, 1 failed; best 0.5 (trial 0)")

    # asynchronous: a line per popsize trials ended off a terminal, a live line of trials on one
    log = io.StringIO()
    p = Progress(stream=log)
    p(RunStart(run_dir="runs/y", schedule="async", rounds=2, total=4, done=0))
    for i, status in enumerate(["completed", "failed", "completed", "completed"]):
        p(TrialEnd(record=rec(i, status, None if status == "failed" else 0.1 * i), done=i + 1, total=4, running=1))
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("run folder runs/y (4 trials, asynchronous)")
    assert [ln.split(";")[0] for ln in lines[1:]] == ["trials 2/4: 1 failed", "trials 4/4: 1 failed"]
    out = Tty()
    p = Progress(stream=out)
    p(RunStart(run_dir="runs/y", schedule="async", rounds=2, total=4, done=0))
    p(TrialEnd(record=rec(0, "completed", 0.5), done=1, total=4, running=2))
    assert out.getvalue().rsplit("\r", 1)[1].startswith("\033[Ktrials 1/4  running 2  queued 1  failed 0  best 0.5")

    # pruned trials are the early-stopping rule's verdict: counted apart, never as failed
    log = io.StringIO()
    p = Progress(stream=log)
    p(RunStart(run_dir="runs/z", schedule="async", rounds=1, total=4, done=0))
    for i, status in enumerate(["pruned", "completed", "pruned", "failed"]):
        p(TrialEnd(record=rec(i, status, 0.1 * i if status != "failed" else None), done=i + 1, total=4, running=1))
    assert log.getvalue().splitlines()[-1].split(";")[0] == "trials 4/4: 1 failed, 2 pruned"
    out = Tty()
    p = Progress(stream=out)
    p(RoundStart(round=0, rounds=1, trials=3, todo=3, slots=1, mode="max"))
    p(TrialEnd(round=0, record=rec(0, "pruned", 0.3), done=1, total=3))
    p(TrialEnd(round=0, record=rec(1, "completed", 0.2), done=2, total=3))
    assert "done 1  failed 0  pruned 1  best 0.2 (trial 1)" in out.getvalue().rsplit("\r", 1)[1]
    p(RoundEnd(round=0, rounds=1, best=rec(1, "completed", 0.2), records=[]))
    assert "round 1/1: 3 trials, 0 failed, 1 pruned; best 0.2" in out.getvalue()


def test_a_driver_on_another_host_is_judged_by_its_heartbeat():
    from autotune.liveness import STALE_S, run_status

    elsewhere = {"status": "running", "driver": {"host": "another-host", "pid": 1, "proc_start": 1}}
    now = 1_000_000.0
    assert run_status({**elsewhere, "heartbeat": now - 1}, now=now) == "running"
    assert run_status({**elsewhere, "heartbeat": now - STALE_S - 1}, now=now) == "interrupted"
    assert run_status(elsewhere, now=now) == "running"  # a driver from before heartbeats: taken at its word
    assert run_status({**elsewhere, "status": "completed", "heartbeat": 0.0}, now=now) == "completed"


def test_a_running_driver_writes_heartbeats(tmp_path, xy_space):
    xy_space["fixed"] = {"sleep": 1.0}
    space = _space_file(tmp_path, xy_space)
    env = dict(os.environ, AUTOTUNE_HEARTBEAT_S="0.2")
    res = subprocess.run([sys.executable, "-c", "\n".join([
        "import os, threading, time, autotune, sys",
        "from autotune.store import Store, sqlite_url",
        "beats, finished = [], []",
        "def watch():",
        "    while not finished:",
        "        time.sleep(0.1)",
        "        if not os.path.exists(os.path.join(sys.argv[2], 'run.json')):",
        "            continue  # opening the database first would create the run folder",
        "        try:",
        "            store = Store(sqlite_url(sys.argv[2]))",
        "            beats.append(store.attrs(store.run_id('hb')).get('heartbeat'))",
        "        except Exception:",
        "            pass  # the run is not created yet",
        "threading.Thread(target=watch, daemon=True).start()",
        f"autotune.run({objective('quadratic')!r}, space=sys.argv[1], rounds=2, popsize=2, output={str(tmp_path)!r},",
        "             name='hb', executor='local')",
        "finished.append(True)",
        "seen = sorted({b for b in beats if b})",
        "print(len(seen))",
    ]), str(space), str(tmp_path / "hb")], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert int(res.stdout.split()[-1]) >= 3  # the heartbeat advanced while the trials ran


def test_export_to_parquet_writes_a_categorical_that_mixes_kinds_as_text(tmp_path, cli_here):
    space = _space_file(tmp_path, {"params": {"bs": {"type": "categorical", "choices": ["auto", 16, 32]},
                                              "x": {"type": "float", "low": 0.0, "high": 1.0}}})
    assert cli("run", objective("returns_number"), "--space", str(space), "--sampler", "random", "--rounds", "2",
               "--popsize", "4", "--seed", "3", "--output", str(tmp_path), "--name", "m", "--executor",
               "local").returncode == 0
    proc = cli_here("export", str(tmp_path / "m"), "--format", "parquet")
    assert proc.returncode == 0, proc.stderr
    import pandas as pd

    frame = pd.read_parquet(proc.stdout.strip())
    configs = {r.trial_id: r.config["bs"] for r in autotune.load(tmp_path / "m").records}
    assert {type(v) for v in configs.values()} == {str, int}  # the column really mixes kinds
    assert len(frame) == 8 and list(frame["config.bs"]) == [str(configs[t]) for t in frame["trial_id"]]
    assert frame["reason"].isna().all()  # missing stays missing, not the text "None"


def test_show_calls_an_async_runs_round_its_generation(tmp_path, xy_space, cli_here):
    """Under the async schedule a trial's `round` is its generation (under pbt its lineage depth, which can
    pass --rounds): `show` names the column so and explains it under the table; a rounds run keeps round."""
    common = dict(space=xy_space, sampler="random", rounds=2, popsize=2, seed=0, output=tmp_path, executor="local")
    autotune.run(objective("quadratic"), evaluator="pbt", name="a", **common)
    autotune.run(objective("quadratic"), evaluator="full", name="f", **common)
    autotune.run(objective("quadratic"), evaluator="pbt", name="s", schedule="rounds", **common)
    shown = cli_here("show", str(tmp_path / "a")).stdout.splitlines()
    assert shown[0].split()[:3] == ["trial", "generation", "status"]
    assert shown[5] == ("generation: lineage depth under Population-Based training (a parent's generation + 1); "
                        "--rounds x --popsize (2 x 2) is the number of trials")  # right under the 4 trials
    full = cli_here("show", str(tmp_path / "f")).stdout.splitlines()
    assert full[0].split()[1] == "generation"
    assert full[5].startswith("generation: the trial's place in the run, in steps of --popsize")
    rounds = cli_here("show", str(tmp_path / "s")).stdout.splitlines()
    assert rounds[0].split()[:3] == ["trial", "round", "status"]
    assert not any(line.startswith("generation") for line in rounds)


def test_run_help_lists_every_sampler():
    from autotune.samplers import sampler_names

    proc = cli("run", "--help")
    assert proc.returncode == 0
    listed = " ".join(proc.stdout.split()).split("--sampler NAME ", 1)[1].split("; one of ", 1)[1].split(" (default", 1)[0]
    assert sorted(n.strip("'") for n in listed.split(", ")) == sorted(sampler_names())  # pshe3 among them


def test_show_names_the_best_config_file(tmp_path, xy_space, cli_here):
    autotune.run(objective("quadratic"), space=xy_space, sampler="random", evaluator="full", rounds=1, popsize=2,
                 seed=0, output=tmp_path, name="b", executor="local")
    best = tmp_path / "b" / "best" / "config.yaml"
    assert best.is_file()
    lines = cli_here("show", str(tmp_path / "b")).stdout.splitlines()
    assert f"best config: {best}" in lines
    best.unlink()  # none written (no trial completed): no line
    assert not any(ln.startswith("best config:") for ln in cli_here("show", str(tmp_path / "b")).stdout.splitlines())
