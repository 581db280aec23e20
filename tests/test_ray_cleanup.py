"""A driver killed by SIGKILL leaves no Ray behind: its reaper, or else the next local start, ends the
local Ray it started, and only that one (issue 21)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from autotune.executors.local_ray import MARKER_ENV, STATE_DIR_ENV, end_stale_sessions
from autotune.liveness import this_driver
from conftest import REPO, objective

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


# -- the process table, read here independently of autotune's own reading ---------------------------
def _table() -> dict[int, tuple[int, int, str]]:
    """Live processes (zombies left out): pid -> (parent pid, start time, name)."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2:].split()
            if fields[0] not in ("Z", "X"):
                out[int(name)] = (int(fields[1]), int(fields[19]), comm)
    return out


def _descendants(roots: set[int], table: dict[int, tuple[int, int, str]] | None = None) -> dict[int, tuple[int, str]]:
    """The live descendants of ``roots`` (and the roots): pid -> (start time, name)."""
    table = _table() if table is None else table
    found = {pid: table[pid][1:] for pid in roots if pid in table}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start, comm) in table.items():
            if ppid in found and pid not in found:
                found[pid] = (start, comm)
                grew = True
    return found


def _with_env(name: str, value: str) -> dict[int, tuple[int, str]]:
    """Live processes whose environment (as exec'd) holds NAME=VALUE, and their descendants."""
    needle = f"{name}={value}".encode()
    table = _table()
    roots = set()
    for pid in table:
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                roots.add(pid)
        except OSError:
            continue
    return _descendants(roots, table)


def _alive(procs: dict[int, tuple[int, str]]) -> dict[int, str]:
    """Those of ``procs`` still running (same pid and start time, not a zombie)."""
    table = _table()
    return {pid: comm for pid, (start, comm) in procs.items() if pid in table and table[pid][1] == start}


def _wait_gone(procs: dict[int, tuple[int, str]], timeout: float) -> dict[int, str]:
    deadline = time.time() + timeout
    while _alive(procs) and time.time() < deadline:
        time.sleep(0.2)
    return _alive(procs)


def _end(procs: dict[int, tuple[int, str]]) -> None:
    """Test clean-up: SIGTERM, then SIGKILL what is left after 3 s."""
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        for pid in _alive(procs):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if not _wait_gone(procs, wait):
            return


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a real run on a real local Ray --------------------------------------------------------------
FOREIGN_ENV = "AUTOTUNE_TEST_FOREIGN_RAY"


@pytest.fixture
def foreign_ray():
    """A Ray that autotune did not start, as with `ray start --head`, starting (the test waits for it):
    in a temp dir of its own, so that a local ray.init() does not join it; its processes carry a marker
    of this test's, by which the test tells them and, at the end, stops them (`ray stop` would stop
    every Ray on the machine)."""
    mark = uuid.uuid4().hex
    temp = tempfile.mkdtemp(prefix="rf", dir="/tmp")  # short: Ray's socket paths must fit
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={_free_port()}",
         f"--temp-dir={temp}", "--num-cpus=0", "--include-dashboard=false", "--disable-usage-stats",
         f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}"],
        env=dict(env, **{FOREIGN_ENV: mark}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    try:
        yield proc, mark
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        _end(_with_env(FOREIGN_ENV, mark))
        shutil.rmtree(temp, ignore_errors=True)


@needs_proc
@pytest.mark.slow
def test_a_killed_drivers_ray_is_gone_after_resume_and_a_ray_autotune_did_not_start_survives(
        tmp_path, xy_space, foreign_ray):
    xy_space["fixed"] = {"sleep": 2.0}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(xy_space))
    log = tmp_path / "executions.log"
    records = tmp_path / "state" / "local-ray"
    env = dict(os.environ, AUTOTUNE_TEST_EXECUTIONS=str(log), **{STATE_DIR_ENV: str(tmp_path / "state")})
    env.pop("RAY_ADDRESS", None)
    argv = [sys.executable, "-m", "autotune", "run", objective("quadratic"), "--space", str(space), "--sampler",
            "random", "--evaluator", "full", "--rounds", "1", "--popsize", "2", "--seed", "0", "--output",
            str(tmp_path), "--name", "k"]
    with open(tmp_path / "driver.err", "w") as err:
        driver = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                  start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and (not log.exists() or "start" not in log.read_text()):
            assert driver.poll() is None, (tmp_path / "driver.err").read_text()
            time.sleep(0.1)
        assert log.exists(), "no trial started"
        time.sleep(0.5)
        ray_procs = _descendants({driver.pid})  # its Ray: gcs_server, raylet, the agents, the workers
        del ray_procs[driver.pid]
        names = {comm for _, comm in ray_procs.values()}
        assert {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names), names
        # as `pkill -9 -f autotune` would: the driver and, where there is one, its reaper, so that only
        # the next start can end what is left
        for record in records.glob("*.json"):
            reaper = json.loads(record.read_text()).get("reaper")
            if reaper:
                os.kill(reaper, signal.SIGKILL)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    foreign, mark = foreign_ray
    out, _ = foreign.communicate(timeout=180)
    assert foreign.returncode == 0, out
    foreign_procs = _with_env(FOREIGN_ENV, mark)
    assert {"raylet", "gcs_server"} <= {comm for _, comm in foreign_procs.values()}, foreign_procs

    res = subprocess.run([sys.executable, "-m", "autotune", "resume", str(tmp_path / "k")], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    # Ray's agents, left alone, outlive their raylet by about a minute (blocked telling the dead GCS that
    # the raylet died); none may be left now
    assert _alive(ray_procs) == {}, "the killed run's Ray processes are still running"
    assert not list(records.glob("*.json"))  # each session's record went with it
    assert _alive(foreign_procs) == {pid: comm for pid, (_, comm) in foreign_procs.items()}, \
        "a Ray that autotune did not start was touched"


# -- the reaper and the next start, with stand-ins for Ray's processes ------------------------------
#: A driver that starts a local "Ray" the way autotune does: a marked process (as gcs_server and raylet
#: are) with an unmarked child (as the agents are once they rename themselves), then waits to be killed.
FAKE_DRIVER = r"""
import json, os, subprocess, sys, time
from autotune.executors.local_ray import LocalRaySession, MARKER_ENV
session = LocalRaySession.begin()
with session.marking():
    raylet = subprocess.Popen([sys.executable, "-c", '''
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != "%s"}
agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], env=env)
print(agent.pid, flush=True)
time.sleep(300)
''' % MARKER_ENV], stdout=subprocess.PIPE, text=True)
agent = int(raylet.stdout.readline())
assert session.started(None, None)
print(json.dumps({"raylet": raylet.pid, "agent": agent, "record": str(session.record),
                  "reaper": session.reaper.pid}), flush=True)
time.sleep(300)
"""


def _start_fake_driver(state: Path) -> tuple[subprocess.Popen, dict]:
    env = dict(os.environ, **{STATE_DIR_ENV: str(state)})
    driver = subprocess.Popen([sys.executable, "-c", FAKE_DRIVER], env=env, cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    info = json.loads(driver.stdout.readline())
    return driver, info


@needs_proc
@pytest.mark.parametrize("reaper_killed_too", [False, True])
def test_a_killed_drivers_processes_end_by_its_reaper_or_at_the_next_start(tmp_path, monkeypatch, reaper_killed_too):
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    # someone else's live session, recorded with a driver that is alive (this test): never touched
    live_token = uuid.uuid4().hex
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                            env=dict(os.environ, **{MARKER_ENV: live_token}))
    (tmp_path / "state" / "local-ray").mkdir(parents=True)
    (tmp_path / "state" / "local-ray" / f"{live_token}.json").write_text(
        json.dumps({"token": live_token, "driver": this_driver()}))
    driver, info = _start_fake_driver(tmp_path / "state")
    table = _table()
    procs = {pid: table[pid][1:] for pid in (info["raylet"], info["agent"])}
    try:
        assert len(_alive(procs)) == 2
        if reaper_killed_too:
            os.kill(info["reaper"], signal.SIGKILL)
            time.sleep(0.5)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        if reaper_killed_too:
            time.sleep(1.0)
            assert len(_alive(procs)) == 2  # nobody ended them yet: the next start must
            assert Path(info["record"]).exists()
            ended = end_stale_sessions()
            assert sorted(ended) == sorted(procs)
        assert _wait_gone(procs, timeout=15) == {}
        deadline = time.time() + 10
        while Path(info["record"]).exists() and time.time() < deadline:
            time.sleep(0.1)
        assert not Path(info["record"]).exists()
        assert live.poll() is None  # the live driver's process and record are left alone
        assert (tmp_path / "state" / "local-ray" / f"{live_token}.json").exists()
    finally:
        _end(procs)
        live.kill()
        live.wait()
        if driver.poll() is None:
            driver.kill()
