"""Shared fixtures: test objectives by file path, small spaces, run helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from autotune.executors.local import LocalExecutor

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PROGRAMS = TESTS / "programs"
OBJECTIVES = PROGRAMS / "objectives.py"

# Trials and CLI subprocesses must import this checkout's autotune.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)


def objective(name: str) -> str:
    """A trial target string for one of tests/programs/objectives.py's functions."""
    return f"{OBJECTIVES}:{name}"


@pytest.fixture
def xy_space() -> dict:
    return {
        "metric": "score",
        "mode": "max",
        "params": {
            "x": {"type": "float", "low": 0.0, "high": 1.0, "init": 0.9},
            "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True, "init": 0.5},
        },
    }


@pytest.fixture
def lr_space() -> dict:
    return {
        "metric": "neg_loss",
        "mode": "max",
        "budget": 2,
        "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}},
    }


@pytest.fixture
def executions(tmp_path, monkeypatch) -> Path:
    """A file every test objective appends 'start ID' / 'done ID' to, to count real executions."""
    path = tmp_path / "executions.log"
    monkeypatch.setenv("AUTOTUNE_TEST_EXECUTIONS", str(path))
    return path


def cli(*args: str, **kwargs) -> "subprocess.CompletedProcess[str]":  # noqa: F821
    import subprocess

    return subprocess.run([sys.executable, "-m", "autotune", *args], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 300), **kwargs)


def error_line(stderr: str) -> str:
    """The one error line of a failed ``autotune`` command; anything before it must be progress lines."""
    *progress, last = stderr.strip().splitlines()
    assert all(line.startswith(("run folder ", "round ", "trials ")) for line in progress), stderr
    assert last.startswith("autotune: error:"), stderr
    return last


class InterruptingExecutor(LocalExecutor):
    """Raises KeyboardInterrupt (as Ctrl-C would) once ``after`` trials have finished."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.count = 0

    def poll(self, timeout=None):
        if self._queue and self.count == self.after:
            raise KeyboardInterrupt
        self.count += 1 if self._queue else 0
        return super().poll(timeout)


def run_objective(module, tmp_path: Path, name: str, config: dict, budget, parent=None, trial_id: int = 0):
    """Run a bundled trial module's ``objective`` the way autotune does, through a :class:`Trial` in
    ``tmp_path / name`` (a child of ``parent``'s checkpoint when given); returns the trial."""
    from autotune.trial import Trial

    trial = Trial(
        id=trial_id, round=0 if parent is None else 1, budget=budget, dir=tmp_path / name, config=config,
        metric="val_accuracy", parent_checkpoint=parent.checkpoint if parent else None,
        parent_id=parent.id if parent else None, start_step=parent.checkpoint_step if parent else 0,
    )
    trial.dir.mkdir(parents=True)
    module.objective(dict(config), trial)
    return trial


@pytest.fixture
def cli_here(capsys):
    """`autotune ARGS` through its main() in this process, as a CompletedProcess like ``cli``'s: for the
    commands that only read (show, export), where a new interpreter would cost seconds a call."""
    import subprocess

    from autotune.cli import main

    def call(*args: str) -> "subprocess.CompletedProcess[str]":
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse's own errors
            code = e.code
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["autotune", *args], code, out.out, out.err)

    return call
