"""Results in a real PostgreSQL server (``--storage postgresql://...``), as a team or a cluster would keep them.

The server is a real PostgreSQL started for this module by ``pgserver`` (PyPI wheels with the server
binaries, part of the test extra; it runs the server as a separate user when the tests run as root).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import autotune
from autotune.errors import RunInterrupted
from autotune.store import engine_url, redact_url
from conftest import InterruptingExecutor, cli, objective

SPACE = {"metric": "neg_loss", "mode": "max", "budget": 2,
         "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}}}


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """The URL of a fresh database on a PostgreSQL server that lives as long as this module."""
    if not os.environ.get("CI"):  # under CI the test extra brings pgserver: a missing one must fail
        pytest.importorskip("pgserver")
    import pgserver

    data = tmp_path_factory.mktemp("pgdata")
    server = pgserver.get_server(data, cleanup_mode="stop")
    server.psql("CREATE DATABASE autotune_test;")
    server.psql("CREATE USER tuner WITH PASSWORD 'tuner-secret';")
    server.psql("CREATE DATABASE autotune_tuner OWNER tuner;")
    try:
        yield server.get_uri("autotune_test")
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def _with_password(url: str) -> str:
    """The database of the user with a password, on the same server."""
    return url.replace("postgresql://postgres:@/autotune_test", "postgresql://tuner:tuner-secret@/autotune_tuner", 1)


def test_a_population_based_run_lives_in_postgres_and_resumes_there(tmp_path, postgres):
    with pytest.raises(RunInterrupted):
        autotune.run(objective("weights"), space=SPACE, sampler="bayes", evaluator="pbt", rounds=3, popsize=3,
                     seed=4, output=tmp_path, name="pg-pbt", storage=postgres, executor=InterruptingExecutor(5))
    info = json.loads((tmp_path / "pg-pbt" / "run.json").read_text())
    assert info["storage"] == postgres  # no password in this URL: kept whole, so show/resume need no flag
    assert not (tmp_path / "pg-pbt" / "autotune.db").exists()
    assert autotune.load(tmp_path / "pg-pbt").status == "interrupted"

    result = autotune.resume(tmp_path / "pg-pbt", executor="local")
    assert result.status == "completed"
    assert [(r.trial_id, r.status) for r in result.records] == [(i, "completed") for i in range(9)]
    assert all(r.parent_id is not None for r in result.records[3:])  # lineage stored in PostgreSQL

    # the same rows, read back with plain Optuna
    import optuna

    study = optuna.load_study(study_name="pg-pbt", storage=postgres)
    assert sorted(t.user_attrs["trial_id"] for t in study.trials) == list(range(9))
    assert study.best_value == pytest.approx(result.best_value)

    shown = cli("show", str(tmp_path / "pg-pbt"), "--json")
    assert shown.returncode == 0, shown.stderr
    assert [t["parent_id"] for t in json.loads(shown.stdout)["trials"]] == [r.parent_id for r in result.records]


def test_a_password_never_reaches_the_run_folder(tmp_path, postgres):
    url = _with_password(postgres)
    proc = cli("run", objective("quadratic"), "--space", _space_file(tmp_path), "--sampler", "random",
               "--rounds", "1", "--popsize", "2", "--output", str(tmp_path), "--name", "secret",
               "--storage", url, "--executor", "local")
    assert proc.returncode == 0, proc.stderr
    run_file = (tmp_path / "secret" / "run.json").read_text()
    assert "tuner-secret" not in run_file and "tuner:***@" in run_file
    assert not any("tuner-secret" in p.read_text(errors="ignore") for p in (tmp_path / "secret").rglob("*")
                   if p.is_file())
    refused = cli("show", str(tmp_path / "secret"))
    assert refused.returncode == 2 and "needs its password: pass --storage URL" in refused.stderr
    shown = cli("show", str(tmp_path / "secret"), "--storage", url, "--json")
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["trials"]) == 2


def test_the_dashboard_serves_every_run_of_the_database(tmp_path, postgres):
    from fastapi.testclient import TestClient

    from autotune.dashboard.app import create_app

    autotune.run(objective("weights"), space=SPACE, sampler="random", evaluator="pbt", rounds=2, popsize=2, seed=2,
                 output=tmp_path, name="pg-dash", storage=postgres, executor="local")
    autotune.run(objective("quadratic"), space={**SPACE, "metric": "score", "budget": None}, sampler="random",
                 evaluator="full", rounds=1, popsize=2, seed=1, output=tmp_path, name="pg-other", storage=postgres,
                 executor="local")
    client = TestClient(create_app([postgres]))
    body = client.get("/api/runs").json()
    runs = {r["id"]: r for r in body["runs"]}
    assert {"pg-dash", "pg-other"} <= set(runs), body
    assert runs["pg-other"]["trials_total"] == 2 and runs["pg-other"]["status"] == "completed"
    assert runs["pg-dash"]["trials_total"] == 4
    lineage = client.get("/api/runs/pg-dash/lineage").json()
    assert lineage["nodes"] == 4 and lineage["edges"] == 2, lineage
    log = client.get("/api/runs/pg-dash/trials/3/log").json()  # the log, from the run folder the database names
    assert "[autotune] trial 3" in log["text"]


def _space_file(tmp_path: Path) -> str:
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"metric": "score", "mode": "max",
                                    "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}))
    return str(path)


@pytest.mark.parametrize("url, shown", [
    ("postgresql://me:s3cret@db.internal/autotune", "postgresql://me:***@db.internal/autotune"),
    ("postgresql://me@db.internal/autotune", "postgresql://me@db.internal/autotune"),
    ("postgresql://postgres:@/db?host=/tmp/sock", "postgresql://postgres:@/db?host=/tmp/sock"),
    ("sqlite:////data/me@home/autotune.db", "sqlite:////data/me@home/autotune.db"),
])
def test_only_passwords_are_hidden_in_urls(url, shown):
    assert redact_url(url) == shown


def test_a_bare_postgresql_url_gets_the_installed_driver():
    assert engine_url("postgresql://me@db/autotune") == "postgresql+psycopg://me@db/autotune"  # the extra's driver
    assert engine_url("postgresql+psycopg2://me@db/autotune") == "postgresql+psycopg2://me@db/autotune"
    assert engine_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
