"""The README's promises that tooling can check: .ci/run runs its exact test command."""

from __future__ import annotations

from conftest import REPO


def _indented_commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO / "README.md").read_text()
    head = readme.split("---", 1)[0]
    commands = _indented_commands(head)
    assert len(commands) == 2, commands  # install+run the main job; install+run the tests
    main_job, tests = commands
    assert main_job.startswith("pip install -c .ci/constraints.txt -e .") and "autotune run --space search_spaces/lr_bs.yaml" in main_job
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert tests in ci, "the README's test command is not in .ci/run"
