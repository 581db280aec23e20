"""The search service on a real Ray head with its job server (``ray start --head`` with the dashboard,
token authentication on): searches submitted as Ray Jobs, stopped through the dashboard's API, resumed
from the dashboard page in Chromium, a killed driver read as interrupted and resumed from the command
line; state-changing requests without the token or from another site change nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import OBJECTIVES, REPO, cli
from test_cluster import _free_port, _kill, _pids_matching
from test_dashboard_browser import CHROMIUM, CHROMIUM_ARGS, _browser_or_skip

from autotune.dashboard.app import create_app
from autotune.dashboard.control import Control
from autotune.results import load_result, locate_run

pytestmark = pytest.mark.slow

TOKEN = "svc-test-token"
SPACE = {"metric": "neg_loss", "mode": "max", "budget": 2, "fixed": {"sleep": 3.0},
         "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}}}
SEARCH = ["--sampler", "random", "--evaluator", "pbt", "--rounds", "3", "--popsize", "2", "--seed", "1"]


class Head:
    """A Ray head with its dashboard and job server, on ports of its own."""

    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths are limited
        self.port = _free_port()
        self.dashboard_port = _free_port()
        self.jobs = f"http://127.0.0.1:{self.dashboard_port}"
        self.executions = self.temp / "executions.log"
        # Jobs and trial workers inherit the head's environment: the executions log, and a stop grace period
        # long enough for the driver to record its stopped trials (Ray's default is 3 s, then SIGKILL).
        self.env = dict(os.environ, RAY_AUTH_MODE="token", AUTOTUNE_TEST_EXECUTIONS=str(self.executions),
                        RAY_JOB_STOP_WAIT_TIME_S="60", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")

    def start(self) -> None:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={self.port}",
                        "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard_port}", f"--temp-dir={self.temp}",
                        "--disable-usage-stats"], env=self.env, check=True, capture_output=True, timeout=180)

    def stop(self) -> None:
        _kill(_pids_matching(str(self.temp)))
        shutil.rmtree(self.temp, ignore_errors=True)

    def count(self, what: str) -> dict[int, int]:
        out: dict[int, int] = {}
        if self.executions.exists():
            for line in self.executions.read_text().splitlines():
                kind, _, tid = line.partition(" ")
                if kind == what:
                    out[int(tid)] = out.get(int(tid), 0) + 1
        return out


@pytest.fixture(scope="module")
def head():
    h = Head()
    try:
        h.start()
        yield h
    finally:
        h.stop()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_AUTH_MODE", None)  # autotune must find the head's token by itself
    return env


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "project"
    proj.mkdir()
    shutil.copy(OBJECTIVES, proj / "objectives.py")
    (proj / "space.yaml").write_text(yaml.safe_dump({**SPACE, "trial": "objectives.py:weights"}))
    return proj


@pytest.fixture
def token_mode(monkeypatch):
    """In-process job clients (the dashboard's, the test's) use the head's token; restored afterwards."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")


def _jobs(head: Head) -> list[dict]:
    from autotune.service import job_client, list_jobs

    return [j.to_dict() for j in list_jobs(job_client(head.jobs))]


def _job_status(head: Head, job_id: str) -> str:
    return next(j["status"] for j in _jobs(head) if j["job_id"] == job_id)


def _wait(cond, timeout: float, what: str, every: float = 0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def _submit(head: Head, proj: Path, output: Path, name: str, *extra: str) -> str:
    proc = cli("submit", "--space", "space.yaml", "--address", head.jobs, "--output", str(output), "--name", name,
               *SEARCH, *extra, cwd=proj, env=_env())
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"run {name}" and lines[1].startswith("job autotune-"), proc.stdout
    return lines[1].split()[1]


def _status(output: Path, name: str) -> str:
    from autotune.liveness import run_status

    store, run_id, _ = locate_run(output / name)
    return run_status(store.attrs(run_id))


def _serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait(lambda: server.started, 20, "the dashboard server")
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


# -- without a cluster -------------------------------------------------------------------------------
def test_sigterm_stops_a_run_as_ctrl_c_does(tmp_path, lr_space, executions):
    """`autotune stop` is SIGTERM to the driver: the run is interrupted as by Ctrl-C (exit 130), and
    resume finishes it (running trials recorded as stopped: on Ray, in the job tests below)."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**lr_space, "fixed": {"sleep": 1.0}}))
    argv = [sys.executable, "-m", "autotune", "run", f"{OBJECTIVES}:weights", "--space", str(tmp_path / "space.yaml"),
            *SEARCH, "--output", str(tmp_path), "--name", "term", "--executor", "local"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(lambda: executions.exists() and executions.read_text().count("done") >= 1
          and executions.read_text().count("start") >= 2, 60, "a finished and a running trial")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run stopped; continue it with: autotune resume" in err
    result = load_result(tmp_path / "term")
    assert result.status == "interrupted"
    assert {r.status for r in result.records} <= {"completed", "stopped"}
    finished = {r.trial_id: r.value for r in result.records if r.status == "completed"}
    assert finished
    proc = cli("resume", str(tmp_path / "term"), "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    records = load_result(tmp_path / "term").records
    assert [r.status for r in records] == ["completed"] * 6
    assert {tid: records[tid].value for tid in finished} == finished


def test_submit_refuses_a_large_upload_and_a_relative_output(tmp_path):
    proj = _project(tmp_path)
    with open(proj / "data.bin", "wb") as f:
        f.truncate(3 * 1024 * 1024)
    proc = cli("submit", "--space", "space.yaml", "--address", "http://127.0.0.1:9", "--output", str(tmp_path / "o"),
               "--upload-limit", "2", cwd=proj)
    assert proc.returncode == 2
    assert proc.stderr.startswith("autotune: error: the folder to upload") and "more than 2 MiB" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = cli("submit", "--space", "space.yaml", "--address", "http://127.0.0.1:9", "--output", "runs", cwd=proj)
    assert proc.returncode == 2 and "absolute path on storage the cluster keeps" in proc.stderr


def test_control_routes_are_absent_without_control(tmp_path):
    from fastapi.testclient import TestClient

    (tmp_path / "runs").mkdir()
    c = TestClient(create_app([tmp_path / "runs"]))
    assert c.post("/api/runs/x/stop").status_code in (404, 405)
    assert c.post("/api/runs", json={"space": "s.yaml"}).status_code == 405
    assert c.get("/api/control").json() == {"enabled": False, "spaces": [], "output": None}
    assert "/api/control" not in c.get("/api/openapi.json").json()["paths"]
    proc = cli("dashboard", str(tmp_path / "runs"), "--control")
    assert proc.returncode == 2 and "--control needs --address" in proc.stderr


# -- on a Ray head with its job server ---------------------------------------------------------------
def test_stop_through_the_api_then_resume_from_the_page(tmp_path, head, token_mode):
    proj, output = _project(tmp_path), tmp_path / "runs"
    job = _submit(head, proj, output, "svc")
    listed = cli("jobs", "--address", head.jobs, env=_env())
    assert listed.returncode == 0 and any(line.split()[:2] == [job, "svc"] for line in listed.stdout.splitlines())
    app = create_app([output], allowed_hosts=["127.0.0.1", "localhost"],
                     control=Control(head.jobs, TOKEN, spaces=proj, output=output))
    server, thread, base = _serve(app)
    try:
        # two trials finished, the next two running
        _wait(lambda: len(head.count("done")) >= 2 and len(head.count("start")) >= 4, 120,
              "two finished and two running trials")
        assert _status(output, "svc") == "running"
        url = f"{base}/api/runs/svc/stop"
        # no token: 401, nothing changes (reads need none on loopback)
        r = httpx.post(url)
        assert r.status_code == 401
        assert httpx.get(f"{base}/api/runs/svc").status_code == 200
        # the token in the page's cookie, but without the page's own header (a form on another site): 401
        r = httpx.post(url, cookies={f"autotune_token_{base.rsplit(':', 1)[1]}": TOKEN})
        assert r.status_code == 401
        # the right token, from another site: 403
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.post(url, headers={**auth, "Origin": "http://evil.example"}).status_code == 403
        assert httpx.post(url, headers={**auth, "Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert _job_status(head, job) == "RUNNING" and _status(output, "svc") == "running"
        assert httpx.get(f"{base}/api/runs/svc").json()["control"] == []

        done_before = {r.trial_id: r for r in load_result(output / "svc").records}
        r = httpx.post(url, headers=auth)
        assert r.status_code == 202, r.text
        assert r.json() == {"run": "svc", "action": "stop", "job_id": job}
        _wait(lambda: _job_status(head, job) == "STOPPED", 90, "the job to stop")
        result = load_result(output / "svc")
        assert result.status == "interrupted"
        by_id = {t.trial_id: t for t in result.records}
        finished = set(head.count("done"))
        for tid in finished:  # nothing lost: every trial that finished is kept, as it was
            assert by_id[tid].status == "completed"
            if tid in done_before:
                assert by_id[tid].value == done_before[tid].value
        stopped = [t for t in result.records if t.status == "stopped"]
        assert stopped and all(t.trial_id not in finished for t in stopped)
        detail = httpx.get(f"{base}/api/runs/svc").json()
        assert detail["status"] == "interrupted"
        assert [(e["action"], e["job_id"]) for e in detail["control"]] == [("stop", job)]
        assert detail["control"][0]["client"].startswith("dashboard 127.0.0.1")

        # resume from the page, in Chromium
        _browser_or_skip()
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                # a cross-site page's request (no token, no custom header; SameSite keeps the cookie home)
                page.goto(f"{base}/?token={TOKEN}&poll=500")  # the page keeps the token in its cookie
                other = browser.new_page()
                other.goto("about:blank")
                other.evaluate("(u) => fetch(u, {method: 'POST', mode: 'no-cors', credentials: 'include'})"
                               ".catch(() => null)", f"{base}/api/runs/svc/resume")
                time.sleep(1.0)
                assert _jobs(head)[-1]["job_id"] == job  # no job was started
                page.goto(f"{base}/?poll=500#/run/svc")
                page.wait_for_selector("[data-testid=run-control]:not([hidden])", timeout=20_000)
                page.wait_for_function("() => document.getElementById('run-status').textContent === 'interrupted'",
                                       timeout=20_000)
                assert page.is_disabled("[data-testid=control-stop]")
                page.click("[data-testid=control-resume]")
                page.wait_for_function("() => /resumed \\(job /.test(document.getElementById('control-status')"
                                       ".textContent)", timeout=20_000)
                page.wait_for_function("() => document.getElementById('run-status').textContent === 'completed'",
                                       timeout=120_000, polling=500)
                assert not errors, errors
            finally:
                browser.close()
        result = load_result(output / "svc")
        assert result.status == "completed" and len(result.records) == 6
        assert all(t.status == "completed" for t in result.records)
        for tid in finished:  # finished before the stop: never run again
            assert head.count("start")[tid] == 1 and result.records[tid].value == by_id[tid].value
        events = httpx.get(f"{base}/api/runs/svc").json()["control"]
        assert [e["action"] for e in events] == ["stop", "resume"]
        resume_job = events[1]["job_id"]
        assert next(j for j in _jobs(head) if j["job_id"] == resume_job)["action"] == "resume"
        # the uploaded project was kept beside the runs, where the resumed job found the trial
        assert (output / ".autotune-sources" / "svc" / "objectives.py").is_file()
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_killed_driver_reads_interrupted_and_resumes(tmp_path, head, token_mode):
    """--cluster-dir (nothing uploaded), SIGKILL to the job's driver, resume NAME --address http://..."""
    proj, output = _project(tmp_path), tmp_path / "runs"
    proc = cli("submit", "--space", "space.yaml", "--address", head.jobs, "--output", str(output), "--name", "killed",
               "--cluster-dir", str(proj), *SEARCH, cwd=tmp_path, env=_env())
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.splitlines()[1].split()[1]
    _wait(lambda: (output / "killed" / "run.json").exists() and load_result(output / "killed").records, 120,
          "a finished trial")
    store, run_id, _ = locate_run(output / "killed")
    pid = store.attrs(run_id)["driver"]["pid"]
    finished = {r.trial_id: r.value for r in load_result(output / "killed").records if r.status == "completed"}
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: _job_status(head, job) not in ("PENDING", "RUNNING"), 60, "the job to end")
    app = create_app([output], control=Control(head.jobs, TOKEN, spaces=proj, output=output))
    from fastapi.testclient import TestClient

    c = TestClient(app)
    assert c.get("/api/runs/killed").json()["status"] == "interrupted"
    assert c.post("/api/runs/killed/stop", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 409
    proc = cli("resume", "killed", "--address", head.jobs, env=_env())
    assert proc.returncode == 0, proc.stderr
    resumed = proc.stdout.splitlines()[1].split()[1]
    _wait(lambda: _job_status(head, resumed) not in ("PENDING", "RUNNING"), 120, "the resumed job")
    assert _job_status(head, resumed) == "SUCCEEDED", cli("logs", resumed, "--address", head.jobs, env=_env()).stdout
    result = load_result(output / "killed")
    assert result.status == "completed" and [t.trial_id for t in result.records] == list(range(6))
    for tid, value in finished.items():
        assert result.records[tid].value == value
    logs = cli("logs", "killed", "--address", head.jobs, env=_env())
    assert logs.returncode == 0 and "run killed: 6 trials" in logs.stdout
    # Known problem (in the trial runner, not the service): when a job's driver dies, Ray stops its trial
    # workers with SIGTERM, whose handler raises SystemExit inside the objective; the runner records that as
    # the trial's failure in outcome.json, and resume adopts it instead of running the trial again.
    killed_mid_trial = [t for t in result.records if t.status != "completed"]
    assert all(t.reason and t.reason.startswith("SystemExit") for t in killed_mid_trial), killed_mid_trial

    # a new search from the dashboard's form: a space file under --spaces, run folders under --output
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert c.get("/api/control").json() == {"enabled": True, "spaces": ["space.yaml"], "output": str(output)}
    assert c.post("/api/runs", json={"space": "../space.yaml"}, headers=auth).status_code == 404
    assert c.post("/api/runs", json={"space": "space.yaml", "name": "killed"}, headers=auth).status_code == 409
    assert c.post("/api/runs", json={"space": "space.yaml", "name": "new"}).status_code == 401
    r = c.post("/api/runs", json={"space": "space.yaml", "name": "new", "sampler": "random", "rounds": 1,
                                  "popsize": 2}, headers=auth)
    assert r.status_code == 202, r.text
    started = r.json()["job_id"]
    _wait(lambda: _job_status(head, started) not in ("PENDING", "RUNNING"), 120, "the started job")
    assert _job_status(head, started) == "SUCCEEDED"
    result = load_result(output / "new")
    assert result.status == "completed" and len(result.records) == 2
    events = _wait(lambda: c.get("/api/runs/new").json()["control"], 30, "the start to be recorded")
    assert [(e["action"], e["job_id"]) for e in events] == [("start", started)]
    if killed_mid_trial:
        pytest.xfail(f"trials {[t.trial_id for t in killed_mid_trial]} were recorded as failed (SystemExit from "
                     "Ray's SIGTERM to the dead driver's workers) instead of running again on resume")
