"""A real two-node Ray cluster on this machine (token authentication on, as Ray 2.60 sets it up):
a Population-Based search through ``--address`` uses both nodes, children start from their parents'
weights across nodes, and losing a node mid-run loses no trial."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from autotune.cli import main as cli_main
from conftest import REPO, objective

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pids_matching(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                pids.append(int(entry.name))
    return pids


def _descendants(pids: list[int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kill(pids: list[int]) -> None:
    for pid in _descendants(pids):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Cluster:
    def __init__(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: Ray's socket paths are limited
        self.port = _free_port()
        self.worker_port = _free_port()
        # Workers inherit the nodes' environment, not the driver's: the executions log is set here.
        self.executions = self.temp / "executions.log"
        self.env = dict(os.environ, RAY_AUTH_MODE="token", AUTOTUNE_TEST_EXECUTIONS=str(self.executions))
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = _free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"

    def start(self) -> None:
        ray = [sys.executable, "-m", "ray.scripts.scripts"]
        subprocess.run([*ray, "start", "--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}",
                        "--num-cpus=1", "--include-dashboard=false",
                        f"--temp-dir={self.temp}", "--disable-usage-stats"], env=self.node_env("head"), check=True,
                       capture_output=True, timeout=180)
        subprocess.run([*ray, "start", f"--address={self.address}", "--num-cpus=1",
                        f"--node-manager-port={self.worker_port}", "--disable-usage-stats"], env=self.node_env("second"),
                       check=True, capture_output=True, timeout=180)

    def node_env(self, node: str) -> dict[str, str]:
        """Each node its own scratch folder for trials (``--artifacts``), as separate machines would have."""
        return dict(self.env, AUTOTUNE_SCRATCH=str(self.temp / f"scratch-{node}"))

    def kill_second_node(self) -> None:
        _kill(_pids_matching(f"--node_manager_port={self.worker_port}"))

    def stop(self) -> None:
        _kill(_pids_matching(str(self.temp)))


def _cluster():
    c = Cluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


#: a cluster of its own for each test that kills one of its nodes
cluster = pytest.fixture(_cluster)
#: one cluster for the tests that leave it as they found it: starting two nodes costs about 20 s
shared_cluster = pytest.fixture(scope="class")(_cluster)  # torn down before the node-killing tests start theirs


def _run(tmp_path, cluster, name, extra=(), address=None):
    space = {"metric": "neg_loss", "mode": "max", "budget": 2, "fixed": {"sleep": 1.5},
             "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    log = cluster.executions
    env = dict(os.environ)
    env.pop("RAY_AUTH_MODE", None)  # autotune must turn token mode on by itself
    argv = [sys.executable, "-m", "autotune", "run", objective("weights"), "--space", str(tmp_path / "space.yaml"),
            "--sampler", "random", "--evaluator", "pbt", "--rounds", "3", "--popsize", "4", "--seed", "2",
            "--output", str(tmp_path), "--name", name, "--address", address or cluster.address, *extra]
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), log


def _records(run_dir):
    """`autotune show RUN --json`'s trials, through main() in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["show", str(run_dir), "--json"]) == 0
    return json.loads(out.getvalue())["trials"]


class TestOnOneCluster:
    """The tests that leave the cluster as they found it share one."""

    def test_pbt_search_spans_both_nodes(self, tmp_path, shared_cluster):
        proc, _ = _run(tmp_path, shared_cluster, "two")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        trials = _records(tmp_path / "two")
        assert len(trials) == 12 and all(t["status"] == "completed" for t in trials)
        nodes = {t["node_id"] for t in trials}
        assert len(nodes) == 2, "trials ran on one node only"
        by_id = {t["trial_id"]: t for t in trials}
        crossed = [t for t in trials if t["parent_id"] is not None and t["node_id"] != by_id[t["parent_id"]]["node_id"]]
        assert crossed, "no child ran on another node than its parent"
        for child in crossed:
            parent = by_id[child["parent_id"]]
            loaded = json.loads((tmp_path / "two" / child["trial_dir"] / "loaded.json").read_text())
            saved = json.loads((tmp_path / "two" / parent["checkpoint"] / "state.json").read_text())
            assert loaded == saved and child["parent_hash"] == parent["checkpoint_hash"]


    def test_trial_folders_in_an_object_store_across_nodes(self, tmp_path, shared_cluster):
        store = tmp_path / "store"
        proc, _ = _run(tmp_path, shared_cluster, "obj", extra=("--artifacts", f"file://{store}"))
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        trials = _records(tmp_path / "obj")
        assert len(trials) == 12 and all(t["status"] == "completed" for t in trials)
        assert len({t["node_id"] for t in trials}) == 2
        assert not (tmp_path / "obj" / "trials").exists()  # nothing went through the run folder
        for node in ("head", "second"):  # each node ran trials in its own scratch folder, and left it empty
            scratch = shared_cluster.temp / f"scratch-{node}"
            assert scratch.is_dir() and not any(p.is_file() for p in scratch.rglob("*")), node
        by_id = {t["trial_id"]: t for t in trials}
        crossed = [t for t in trials if t["parent_id"] is not None and t["node_id"] != by_id[t["parent_id"]]["node_id"]]
        assert crossed, "no child ran on another node than its parent"
        for child in crossed:  # it downloaded its parent's checkpoint from the store
            parent = by_id[child["parent_id"]]
            loaded = json.loads((store / child["trial_dir"] / "loaded.json").read_text())
            saved = json.loads((store / parent["checkpoint"] / "state.json").read_text())
            assert loaded == saved and child["parent_hash"] == parent["checkpoint_hash"]


    def test_a_search_through_ray_client(self, tmp_path, shared_cluster):
        """--address ray://HEAD:PORT, as from a laptop (Ray Client; token authentication on)."""
        proc, _ = _run(tmp_path, shared_cluster, "client", address=shared_cluster.client_address)
        out, err = proc.communicate(timeout=300)
        if proc.returncode != 0:  # say why the head's client server failed, if it did
            logs = sorted(shared_cluster.temp.glob("session_*/logs/ray_client_server*"))
            err += "".join(f"\n--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in logs)
        assert proc.returncode == 0, err
        trials = _records(tmp_path / "client")
        assert len(trials) == 12 and all(t["status"] == "completed" for t in trials)
        assert len({t["node_id"] for t in trials}) == 2
        assert all(t["parent_id"] is not None for t in trials if t["round"] > 0)


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_losing_a_node_mid_run_loses_no_trial(tmp_path, cluster, schedule):
    proc, log = _run(tmp_path, cluster, "lose", ["--max-retries", "1", "--schedule", schedule])
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("start") < 6):
        time.sleep(0.1)
    cluster.kill_second_node()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = _records(tmp_path / "lose")
    assert sorted(t["trial_id"] for t in trials) == list(range(12))  # every trial accounted for
    for t in trials:
        assert t["status"] in ("completed", "failed")
        if t["status"] == "failed":
            assert t["reason"]
    retried = [t for t in trials if t["attempts"] > 1 or (t["reason"] or "").startswith("its node was lost")]
    assert retried, "no trial was affected by the lost node"
    for t in retried:  # retried once elsewhere (--max-retries 1), and the record says so
        assert t["retry_note"] == "attempt 1 lost its node; retried"
        assert t["status"] == "completed" or t["reason"].startswith("its node was lost")
    # after the loss every trial ran on the surviving node
    lost_at = min(t["started"] for t in retried)
    assert len({t["node_id"] for t in trials if t["started"] > lost_at and t["status"] == "completed"}) == 1
