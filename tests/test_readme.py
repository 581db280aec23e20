"""The README's promises that tooling can check: .ci/run runs its two commands exactly as written.

.ci/run reads both commands from the README (its ``readme_command`` function) and runs them: the first
in a fresh virtual environment, the second as it is. These tests run that same function and check that
it finds the README's commands, word for word.
"""

from __future__ import annotations

import subprocess

from conftest import REPO


def _indented_commands(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()]


def _ci_reads(n: int) -> str:
    """What .ci/run's own readme_command function gives for the README's ``n``-th command."""
    script = f'source <(sed -n "/^readme_command()/,/^}}/p" .ci/run) && readme_command {n}'
    return subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()


def test_ci_runs_the_readme_commands_verbatim():
    readme = (REPO / "README.md").read_text()
    head = readme.split("\n---", 1)[0]
    commands = _indented_commands(head)
    assert len(commands) == 2, commands  # install+run the main job; install+run the tests
    main_job, tests = commands
    assert main_job.startswith("pip install -c .ci/constraints.txt -e .") and "autotune run --space search_spaces/lr_bs.yaml" in main_job
    assert _ci_reads(0) == main_job and _ci_reads(1) == tests
    ci = (REPO / ".ci" / "run").read_text()
    assert 'bash -c "$main_command"' in ci and 'bash -c "$test_command"' in ci
    assert 'python3 -m venv "$fresh/venv"' in ci and 'PATH="$fresh/venv/bin:$PATH"' in ci  # the newcomer's venv
