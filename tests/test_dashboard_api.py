"""The dashboard's JSON API on real runs: contents, the OpenAPI contract (schemathesis), hostile requests,
the token, the Host check, and the ``autotune dashboard`` command."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import schemathesis
import yaml
from conftest import REPO, objective
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

import autotune
from autotune.dashboard import views
from autotune.dashboard.app import create_app
from autotune.dashboard.models import TrialList
from autotune.dashboard.catalog import RunRef
from autotune.dashboard.server import is_loopback, resolve_sources
from autotune.errors import ConfigError
from autotune.records import TrialRecord
from autotune.results import load_result

LR_SPACE = {"metric": "neg_loss", "mode": "max", "budget": 2,
            "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}}}
X_SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A runs folder with a Population-Based run (lineage) and a run with failed trials."""
    root = tmp_path_factory.mktemp("dash") / "runs"
    autotune.run(objective("weights"), space=LR_SPACE, sampler="random", evaluator="pbt", rounds=3, popsize=4,
                 seed=0, output=root, name="demo", executor="local")
    autotune.run(objective("mixed"), space=X_SPACE, sampler="random", evaluator="full", rounds=2, popsize=6,
                 seed=1, output=root, name="mixed", executor="local")
    assert any(r.status == "failed" for r in load_result(root / "mixed").records), "the fixture needs a failure"
    return root


@pytest.fixture(scope="module")
def client(runs) -> TestClient:
    return TestClient(create_app([runs]))


@pytest.fixture(scope="module")
def live(runs):
    """The app on a real uvicorn on 127.0.0.1, for requests a client library would normalise."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(create_app([runs]), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    yield port
    server.should_exit = True
    thread.join(10)


def raw_get(port: int, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET ``path`` byte for byte as given (no client-side ``..`` resolution or re-quoting)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    con.putrequest("GET", path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        con.putheader(k, v)
    con.endheaders()
    resp = con.getresponse()
    body = resp.read()
    con.close()
    return resp.status, body


# -- contents --------------------------------------------------------------------------------------
def test_runs_list_matches_the_database(client, runs):
    r = client.get("/api/runs")
    assert r.status_code == 200
    body = r.json()
    assert body["problems"] == []
    by_name = {run["name"]: run for run in body["runs"]}
    assert set(by_name) == {"demo", "mixed"}
    for name, run in by_name.items():
        result = load_result(runs / name)
        assert run["id"] == name
        assert run["status"] == "completed"
        assert run["sampler"] == "random"
        assert run["evaluator"] == result.settings.evaluator
        assert run["trials_done"] == sum(rec.status == "completed" for rec in result.records)
        assert run["trials_failed"] == sum(rec.status == "failed" for rec in result.records)
        assert run["best_value"] == pytest.approx(result.best_value)
        assert run["best_trial"] == result.best.trial_id
        assert run["started"] > 0
    assert by_name["demo"]["trials_done"] == 12
    assert by_name["mixed"]["trials_failed"] >= 1


def test_the_runs_list_reads_tallies_and_says_what_the_run_page_says(runs, monkeypatch):
    """A fresh dashboard lists runs from the database's tallies, never from every record (a run of
    thousands of trials answers fast, the first call too); its line matches the run page's head."""
    from autotune.store import Store

    def no_records(self, run_id):
        raise AssertionError("the runs list loaded every record")

    fresh = TestClient(create_app([runs]))
    with monkeypatch.context() as m:
        m.setattr(Store, "trials", no_records)
        listed = {run["name"]: run for run in fresh.get("/api/runs").json()["runs"]}
    assert set(listed) == {"demo", "mixed"}
    for name, line in listed.items():
        page = fresh.get(f"/api/runs/{name}").json()  # from the run's records
        assert {k: page[k] for k in line} == line
    assert fresh.get("/api/runs").json()["runs"] == list(listed.values())  # now from the cached snapshots


def test_run_detail_has_settings_params_and_best_yaml(client, runs):
    r = client.get("/api/runs/demo")
    assert r.status_code == 200
    run = r.json()
    result = load_result(runs / "demo")
    assert run["settings"]["rounds"] == 3 and run["settings"]["popsize"] == 4
    assert [p["name"] for p in run["params"]] == ["lr"]
    assert run["params"][0] == {"name": "lr", "type": "float", "low": 0.01, "high": 0.5, "log": True, "choices": None}
    assert run["best"]["trial_id"] == result.best.trial_id
    assert yaml.safe_load(run["best"]["yaml"]) == result.best_config
    assert run["best"]["yaml"].startswith(f"# best trial {result.best.trial_id} ")


def test_tallies_are_the_trials_status_value_and_end_by_column(client, runs):
    records = load_result(runs / "mixed").records
    body = client.get("/api/runs/mixed/tallies").json()
    assert body["version"] == client.get("/api/runs/mixed/version").json()["version"]
    rows = list(zip(body["trial_id"], body["status"], body["value"], body["ended"]))
    assert rows == [(r.trial_id, r.status, r.value if r.status == "completed" else None, pytest.approx(r.ended))
                    for r in records]
    assert any(r.status == "failed" for r in records)  # failures are there, without a value
    assert client.get("/api/runs/nope/tallies").status_code == 404


def test_trials_carry_every_report_and_failures_their_reason(client, runs):
    body = client.get("/api/runs/mixed/trials").json()
    assert TrialList.model_validate(body).model_dump(mode="json") == body  # sent unvalidated: the model's shape
    records = {rec.trial_id: rec for rec in load_result(runs / "mixed").records}
    assert [t["trial_id"] for t in body["trials"]] == sorted(records)
    assert body["metric"] == "score" and body["mode"] == "max"
    for t in body["trials"]:
        rec = records[t["trial_id"]]
        assert t["status"] == rec.status
        assert len(t["reports"]) == len(rec.reports)
        if rec.status == "failed":
            assert t["value"] is None and t["reason"] == rec.reason
    failed = next(t for t in body["trials"] if t["status"] == "failed")
    detail = client.get(f"/api/runs/mixed/trials/{failed['trial_id']}").json()
    assert "Traceback" in detail["log_tail"]
    assert detail["trial_dir"] == records[failed["trial_id"]].trial_dir


def test_failed_trial_log_comes_from_its_trial_folder(client, runs):
    records = load_result(runs / "mixed").records
    failed = next(r for r in records if r.status == "failed" and "too small" in (r.reason or ""))
    r = client.get(f"/api/runs/mixed/trials/{failed.trial_id}/log")
    assert r.status_code == 200
    log = r.json()
    assert log["source"] == "file"
    assert log["text"] == (runs / "mixed" / failed.trial_dir / "trial.log").read_text()
    assert "ValueError" in log["text"] and "too small" in log["text"]
    short = client.get(f"/api/runs/mixed/trials/{failed.trial_id}/log", params={"tail": 10}).json()
    assert short["truncated"] is True and short["text"] == log["text"][-10:]


def test_lineage_is_the_pbt_family_tree(client, runs):
    lin = client.get("/api/runs/demo/lineage").json()
    records = {r.trial_id: r for r in load_result(runs / "demo").records}
    assert lin["nodes"] == 12
    assert lin["edges"] == sum(r.parent_id is not None for r in records.values()) == 8
    assert sorted(n["trial_id"] for n in lin["roots"]) == [0, 1, 2, 3]  # round 0 starts from scratch

    def walk(node, depth):
        assert node["round"] == depth
        for child in node["children"]:
            assert child["parent_id"] == node["trial_id"] == records[child["trial_id"]].parent_id
            walk(child, depth + 1)

    for root in lin["roots"]:
        walk(root, 0)
    flat = client.get("/api/runs/mixed/lineage").json()
    assert flat["edges"] == 0 and len(flat["roots"]) == flat["nodes"]


def test_version_changes_only_with_the_data(client):
    a = client.get("/api/runs/demo/version").json()
    b = client.get("/api/runs/demo/version").json()
    assert a == b and a["status"] == "completed"
    assert client.get("/api/runs/demo").json()["version"] == a["version"]
    assert client.get("/api/runs/mixed/version").json()["version"] != a["version"]


def test_runs_sharing_one_database_are_found_by_name(tmp_path, runs):
    db = tmp_path / "shared.db"
    url = f"sqlite:///{db}"
    for name, seed in (("alpha", 0), ("demo", 1)):
        autotune.run(objective("quadratic"), space={"metric": "score", "mode": "max",
                                                   "params": {"x": {"type": "float", "low": 0, "high": 1}}},
                     sampler="random", evaluator="full", rounds=1, popsize=2, seed=seed, output=tmp_path / "out",
                     name=name, executor="local", storage=url)
    client = TestClient(create_app([url]))
    names = {r["id"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(names) == {"alpha", "demo"}
    assert names["alpha"]["source"] == url
    assert client.get("/api/runs/alpha/trials").json()["trials"][0]["has_log"] is True
    log = client.get("/api/runs/alpha/trials/0/log").json()
    assert log["source"] == "file" and "[autotune] trial 0" in log["text"]
    # the same name from another source is served as NAME~2; each keeps its own data
    both = TestClient(create_app([runs, url]))
    ids = {r["id"]: r for r in both.get("/api/runs").json()["runs"]}
    assert {"demo", "demo~2", "alpha", "mixed"} == set(ids)
    assert ids["demo"]["trials_total"] == 12 and ids["demo~2"]["trials_total"] == 2
    assert both.get("/api/runs/demo~2/trials").json()["trials"][0]["config"]["x"] == pytest.approx(
        load_result(tmp_path / "out" / "demo", url).records[0].config["x"])


def test_planned_trials_of_a_live_run_show_as_running(tmp_path):
    """The driver's plan for the current round names the trials that have not finished yet."""
    from autotune.liveness import DRIVER_ATTR, this_driver
    from autotune.records import ParentRef, TrialSpec
    from autotune.results import locate_run

    autotune.run(objective("quadratic"), space=X_SPACE, sampler="random", evaluator="full", rounds=1, popsize=2,
                 seed=0, output=tmp_path, name="busy", executor="local")
    store, run_id, _ = locate_run(tmp_path / "busy")
    done = store.trials(run_id)[0]
    planned = [TrialSpec(trial_id=done.trial_id, round=0, config=done.config, budget=None, trial_dir=done.trial_dir),
               TrialSpec(trial_id=7, round=1, config={"x": 0.25}, budget=None, trial_dir="trials/000007",
                         parents=(ParentRef(trial_id=done.trial_id, checkpoint="trials/000000/checkpoint"),))]
    store.put_blob(run_id, "driver_state", {"phase": "planned", "round": 1, "specs": [s.to_dict() for s in planned]})
    store.set_attr(run_id, "status", "running")
    store.set_attr(run_id, DRIVER_ATTR, this_driver())  # a driver that lives (the one that ran has ended)
    c = TestClient(create_app([tmp_path]))
    run = c.get("/api/runs/busy").json()
    assert run["status"] == "running" and run["round"] == 1 and run["trials_running"] == 1 and run["trials_total"] == 2
    body = c.get("/api/runs/busy/trials").json()
    assert TrialList.model_validate(body).model_dump(mode="json") == body  # the planned trials' rows too
    rows = {t["trial_id"]: t for t in body["trials"]}
    assert rows[7]["status"] == "running" and rows[7]["parent_id"] == done.trial_id and rows[7]["value"] is None
    assert rows[done.trial_id]["status"] == "completed"  # a planned trial that finished is not running
    assert c.get("/api/runs/busy/trials/7").json()["config"] == {"x": 0.25}
    assert c.get("/api/runs/busy/trials/7/log").status_code == 404
    lin = c.get("/api/runs/busy/lineage").json()
    parent = next(n for n in lin["roots"] if n["trial_id"] == done.trial_id)
    assert [ch["trial_id"] for ch in parent["children"]] == [7]
    store.set_attr(run_id, "status", "interrupted")  # a stopped driver: the plan waits for `autotune resume`
    assert c.get("/api/runs/busy/trials").json()["trials"][-1]["status"] == "pending"


# -- files: only trial.log inside the run folder ---------------------------------------------------
def _record(trial_dir: str, log_tail: str | None = "kept tail") -> TrialRecord:
    return TrialRecord(trial_id=0, round=0, config={}, budget=None, status="failed", reason="x", value=None,
                       reports=[], planned_parent_id=None, parent_id=None, parent_checkpoint=None, parent_step=None,
                       parent_hash=None, parent_note=None, checkpoint=None, checkpoint_step=None,
                       checkpoint_hash=None, started=None, ended=None, node=None, gpu_ids=[], log_tail=log_tail,
                       trial_dir=trial_dir)


@pytest.mark.parametrize("trial_dir", ["../outside", "/etc", "trials/../../outside", "trials/link", "\0bad"])
def test_log_never_leaves_the_run_folder(tmp_path, trial_dir):
    run_dir = tmp_path / "run"
    outside = tmp_path / "outside"
    (run_dir / "trials").mkdir(parents=True)
    outside.mkdir()
    (outside / "trial.log").write_text("SECRET outside the run folder")
    (run_dir / "trials" / "link").mkdir()
    (run_dir / "trials" / "link" / "trial.log").symlink_to(outside / "trial.log")
    ref = RunRef(key="r", name="r", url="sqlite://", run_id=1, run_dir=run_dir, source="test")
    log = views.read_log(ref, _record(trial_dir), 1000)
    assert "SECRET" not in log["text"]
    assert log["source"] == "record" and log["text"] == "kept tail"


def test_log_without_a_run_folder_is_the_stored_tail():
    ref = RunRef(key="r", name="r", url="sqlite://", run_id=1, run_dir=None, source="test")
    assert views.read_log(ref, _record("trials/000000"), 4)["text"] == "tail"
    assert views.read_log(ref, _record("trials/000000", None), 4) == {
        "trial_id": 0, "source": "none", "text": "", "truncated": False, "size": None}


# -- hostile requests ------------------------------------------------------------------------------
HOSTILE = [
    "/api/runs/../../../../etc/passwd",
    "/api/runs/..",
    "/api/runs/%2e%2e",
    "/api/runs/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/runs/..%5c..%5cetc%5cpasswd",
    "/api/runs/%2Fetc%2Fpasswd",
    "/api/runs//etc/passwd",
    "/api/runs/C:%5cWindows",
    "/api/runs/demo%00",
    "/api/runs/demo/trials/..%2f..%2f..%2fetc%2fpasswd/log",
    "/api/runs/demo/trials/-1",
    "/api/runs/demo/trials/1e3",
    "/api/runs/demo/trials/" + "9" * 400,
    "/api/runs/demo/trials/0/log?tail=-5",
    "/api/runs/demo/trials/0/log?tail=" + "9" * 400,
    "/api/runs/" + "a" * 5000,
    "/api/runs/%ff%fe",
    "/static/../app.py",
    "/static/..%2fapp.py",
    "/static/%2e%2e%2fapp.py",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/../../../etc/passwd",
]


@pytest.mark.parametrize("path", HOSTILE)
def test_hostile_paths_get_a_clean_4xx(live, path):
    status, body = raw_get(live, path)
    assert 400 <= status < 500, (path, status, body[:200])
    assert b"root:" not in body and b"def create_app" not in body and b"Traceback" not in body
    assert len(body) < 20_000


def test_extra_parameters_cannot_name_a_file(live):
    status, body = raw_get(live, "/api/runs/mixed/trials/0/log?path=/etc/passwd&file=../../run.json")
    assert status == 200 and b"root:" not in body and b'"storage"' not in body


def test_huge_query_and_headers_are_refused_not_crashed(live):
    status, _ = raw_get(live, "/api/runs?" + "x=" + "y" * 100_000)
    assert status in (200, 400, 414, 431)
    status, body = raw_get(live, "/api/runs")  # still serving
    assert status == 200 and b'"demo"' in body


def test_non_get_methods_are_refused(client):
    assert client.post("/api/runs", json={"name": "x"}).status_code == 405
    assert client.delete("/api/runs/demo").status_code == 405


def test_security_headers(client):
    r = client.get("/")
    assert r.status_code == 200 and "<title>autotune dashboard</title>" in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


def test_page_loads_nothing_from_other_hosts(client):
    html = client.get("/").text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith(("/", "#", "data:")) for s in sources), sources
    for s in sources:
        if s.startswith("/static/"):
            assert client.get(s).status_code == 200, s
    js = client.get("/static/app.js").text + client.get("/static/charts.js").text
    assert "http://" not in js and "https://" not in js


# -- token and Host ----------------------------------------------------------------------------------
def test_token_is_required_when_set(runs):
    c = TestClient(create_app([runs], token=TOKEN))
    for path in ("/api/runs", "/api/runs/demo", "/api/openapi.json", "/", "/static/app.js"):
        assert c.get(path).status_code == 401, path
    assert c.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get("/api/runs", headers={"X-Autotune-Token": TOKEN}).status_code == 200
    assert c.get("/api/runs/demo", params={"token": TOKEN}).status_code == 200
    # the page address with ?token= sets an HttpOnly cookie and drops the token from the address
    r = c.get("/", params={"token": TOKEN}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
    assert c.get("/api/runs").status_code == 200  # the cookie now authenticates
    assert TestClient(create_app([runs], token=TOKEN)).get("/api/runs").json()["detail"].startswith("this dashboard needs")


def test_host_header_is_checked_on_loopback(runs):
    c = TestClient(create_app([runs], allowed_hosts=["127.0.0.1", "localhost", "::1"]))
    assert c.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
    assert c.get("/api/runs", headers={"Host": "evil.example:8080"}).status_code == 400
    assert c.get("/api/runs", headers={"Host": "127.0.0.1:8080"}).status_code == 200
    assert c.get("/api/runs", headers={"Host": "localhost"}).status_code == 200
    assert c.get("/api/runs", headers={"Host": "[::1]:8080"}).status_code == 200


# -- OpenAPI contract --------------------------------------------------------------------------------
def test_openapi_document_describes_the_api(client):
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/api/runs", "/api/runs/{run}", "/api/runs/{run}/version", "/api/runs/{run}/trials",
                                 "/api/runs/{run}/trials/{trial_id}", "/api/runs/{run}/trials/{trial_id}/log",
                                 "/api/runs/{run}/lineage", "/api/runs/{run}/tallies", "/api/settings"}
    for path, ops in doc["paths"].items():
        assert set(ops) == {"get"}
        assert {"200", "404"} <= set(ops["get"]["responses"]), path


@pytest.fixture(scope="module")
def api_schema(runs):
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app([runs]))
    schema.config.generation.update(modes=["positive", "negative"], max_examples=12, deterministic=True)
    return schema


API_PATHS = sorted(["/api/runs", "/api/runs/{run}", "/api/runs/{run}/version", "/api/runs/{run}/trials",
                    "/api/runs/{run}/trials/{trial_id}", "/api/runs/{run}/trials/{trial_id}/log",
                    "/api/runs/{run}/lineage", "/api/settings"])


@pytest.mark.parametrize("path,mode", [(p, m) for p in API_PATHS for m in GenerationMode
                                       if m == GenerationMode.POSITIVE or "{" in p])  # /api/runs takes nothing
def test_api_conforms_to_its_openapi_document(api_schema, path, mode):
    """Generated and malformed requests: no 5xx, and every response matches the document.

    Driven through schemathesis's strategies and Hypothesis directly, not its pytest plugin, whose
    hooks break with new pytest releases (pytest 9.2: 'Function' object has no attribute '_nodeid')."""
    operation = api_schema[path]["GET"]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(case) -> None:
        case.call_and_validate()

    check()


@pytest.mark.parametrize("path,params", [
    ("/api/runs/{run}", {"run": "demo"}),
    ("/api/runs/{run}/trials", {"run": "mixed"}),
    ("/api/runs/{run}/lineage", {"run": "demo"}),
    ("/api/runs/{run}/version", {"run": "demo"}),
    ("/api/runs/{run}/trials/{trial_id}", {"run": "mixed", "trial_id": 2}),
    ("/api/runs/{run}/trials/{trial_id}/log", {"run": "mixed", "trial_id": 2}),
])
def test_real_responses_conform_to_the_document(api_schema, path, params):
    case = api_schema[path]["GET"].Case(path_parameters=params)
    response = case.call_and_validate()
    assert response.status_code == 200


# -- the command -------------------------------------------------------------------------------------
def test_sources_are_checked(tmp_path, runs, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./runs here
    assert resolve_sources([runs], None) == [str(runs.resolve())]
    with pytest.raises(ConfigError, match="no such run folder: .*nope"):
        resolve_sources([tmp_path / "nope"], None)
    with pytest.raises(ConfigError, match="pass it as --storage"):
        resolve_sources(["sqlite:///x.db"], None)
    with pytest.raises(ConfigError, match="must be a database URL"):
        resolve_sources([], "not-a-url")
    with pytest.raises(ConfigError, match="no results database at"):  # never creates an empty one
        resolve_sources([], f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()
    db = runs / "demo" / "autotune.db"
    assert resolve_sources(["runs"], f"sqlite:///{db}") == [f"sqlite:///{db}"]  # the default runs/ is optional
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "autotune", "dashboard", *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, cwd=REPO, env={**os.environ, **(env or {})})
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "autotune dashboard: http" in line:
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("dashboard did not start: " + "".join(lines) + proc.stderr.read())


def test_command_on_another_address_warns_and_requires_a_generated_token(runs):
    port = _free_port()
    proc, out = _start([str(runs), "--host", "0.0.0.0", "--port", str(port)], env={"AUTOTUNE_DASHBOARD_TOKEN": ""})
    try:
        assert "warning: serving the dashboard on 0.0.0.0" in out
        token = re.search(r"\?token=([\w-]+)", out).group(1)
        assert len(token) >= 24
        assert raw_get(port, "/api/runs")[0] == 401
        status, body = raw_get(port, "/api/runs", {"Authorization": f"Bearer {token}"})
        assert status == 200 and b'"demo"' in body
    finally:
        proc.terminate()
        proc.wait(10)


def test_command_on_loopback_by_default_with_env_token(runs):
    port = _free_port()
    proc, out = _start([str(runs), "--port", str(port)], env={"AUTOTUNE_DASHBOARD_TOKEN": TOKEN})
    try:
        assert "warning" not in out
        assert f"http://127.0.0.1:{port}/?token={TOKEN}" in out
        assert raw_get(port, "/api/runs")[0] == 401
        assert raw_get(port, "/api/runs", {"X-Autotune-Token": TOKEN})[0] == 200
        # DNS rebinding: a page on another site that resolves to 127.0.0.1 is refused
        assert raw_get(port, "/api/runs", {"X-Autotune-Token": TOKEN, "Host": "evil.example"})[0] == 400
    finally:
        proc.terminate()
        proc.wait(10)


def test_command_errors_are_one_line(tmp_path, runs):
    r = subprocess.run([sys.executable, "-m", "autotune", "dashboard", str(tmp_path / "missing")],
                       check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such run folder" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "autotune", "dashboard", str(runs), "--port", str(port)],
                           check=False, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 2 and "cannot listen on 127.0.0.1" in r.stderr and "Traceback" not in r.stderr


def test_a_run_says_its_schedule_and_what_its_rounds_are(client, runs, tmp_path):
    """Asynchronously a trial's `round` is its generation (it can pass --rounds): the API says which
    schedule a run has, and the best config's comment names the number for what it is."""
    result = load_result(runs / "demo")
    assert result.settings.schedule == "async"
    demo = client.get("/api/runs/demo").json()
    assert demo["schedule"] == "async"
    assert {r["id"]: r["schedule"] for r in client.get("/api/runs").json()["runs"]}["demo"] == "async"
    assert demo["best"]["yaml"].startswith(f"# best trial {result.best.trial_id} (generation {result.best.round}) ")
    autotune.run(objective("quadratic"), space=X_SPACE, sampler="random", evaluator="full", rounds=1, popsize=2,
                 seed=0, output=tmp_path, name="sync", executor="local", schedule="rounds")
    sync = TestClient(create_app([tmp_path])).get("/api/runs/sync").json()
    assert sync["schedule"] == "rounds"
    assert sync["best"]["yaml"].startswith(f"# best trial {sync['best']['trial_id']} (round 0) ")
    # a run recorded before schedules existed ran in rounds
    from autotune.dashboard.catalog import Snapshot, head_of

    ref = RunRef(key="old", name="old", url="sqlite://", run_id=1, run_dir=None, source="old")
    old = Snapshot(version="1", attrs={"settings": {"metric": "score", "mode": "max"}}, records=[])
    assert views.summary(ref, head_of(old))["schedule"] == "rounds"
