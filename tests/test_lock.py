"""The lock (.ci/constraints.txt) and pyproject.toml agree, and this environment is what the lock says.

The README's commands install with ``-c .ci/constraints.txt``; these tests fail when a dependency is
added to, removed from or re-ranged in pyproject.toml without refreshing the lock, when a pin falls
outside pyproject's range, and when what is installed here differs from the lock (then CI did not
test what a newcomer gets).
"""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

spec = importlib.util.spec_from_file_location("refresh_lock", REPO / ".ci" / "refresh_lock.py")
assert spec and spec.loader
refresh_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh_lock)

PINS = refresh_lock.read_lock()
INPUTS = refresh_lock.dependency_inputs()
#: majors that broke users before: pyproject bounds each below its next major
BOUNDED = ("ray", "optuna", "torch", "torchvision", "transformers", "pytest", "schemathesis")


def _requirements() -> list[tuple[str, Requirement]]:
    return [(where, Requirement(text)) for where, reqs in INPUTS.items() for text in reqs]


def test_lock_was_made_from_this_pyproject():
    assert refresh_lock.locked_digest() == refresh_lock.dependency_digest(), (
        "pyproject.toml's dependencies changed since the lock was made: run python .ci/refresh_lock.py")


def test_digest_sees_an_added_dependency(tmp_path):
    """The check above can fail: one more dependency (or one range changed) is a different digest."""
    text = (REPO / "pyproject.toml").read_text()
    added = tmp_path / "pyproject.toml"
    added.write_text(text.replace('"pyyaml>=6",', '"pyyaml>=6",\n    "rich>=13",', 1))
    assert refresh_lock.dependency_digest(added) != refresh_lock.dependency_digest()
    ranged = tmp_path / "ranged.toml"
    ranged.write_text(text.replace('"optuna>=5,<6"', '"optuna>=5,<7"', 1))
    assert refresh_lock.dependency_digest(ranged) != refresh_lock.dependency_digest()


@pytest.mark.parametrize("where,req", _requirements(), ids=lambda x: str(x))
def test_every_requirement_is_pinned_inside_its_range(where, req):
    env = default_environment()
    if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
        return  # another platform's requirement: not resolved here
    name = refresh_lock.canonical(req.name)
    assert name in PINS, f"{req} ({where}) is not in the lock: run python .ci/refresh_lock.py"
    assert req.specifier.contains(PINS[name], prereleases=True), (
        f"the lock pins {name}=={PINS[name]}, outside pyproject's {req} ({where})")


def test_packages_whose_majors_broke_users_are_bounded():
    ranges = {refresh_lock.canonical(r.name): r.specifier for _, r in _requirements()}
    for name in BOUNDED:
        spec_ = ranges[name]
        uppers = [s for s in spec_ if s.operator in ("<", "<=")]
        assert uppers, f"{name} has no upper bound in pyproject.toml"
        pinned = Version(PINS[name])
        nxt = Version(f"{pinned.major + 1}")
        assert spec_.contains(str(pinned)) and not spec_.contains(str(nxt)), (
            f"{name}: {spec_} admits the next major {nxt}")


def test_lock_pins_exact_versions_once():
    names = []
    for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", line), f"not an exact pin: {line!r}"
            names.append(refresh_lock.canonical(line.split("==")[0]))
    assert len(names) == len(set(names)) > 50


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _needed_by_autotune() -> set[str]:
    """The installed packages autotune needs here (itself, with the extras installed here, and what those
    need, transitively): the packages the README's install resolved, so the ones the lock pins."""
    dist = metadata.distribution("autotune")
    env = default_environment()
    extras = [e for e in ("test", "text", "image") if e in (dist.metadata.get_all("Provides-Extra") or [])]
    todo = [Requirement(r) for r in dist.requires or []]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({**env, "extra": e}) for e in ["", *extras]):
            continue
        name = refresh_lock.canonical(req.name)
        if name in seen or _installed(name) is None:
            continue
        seen.add(name)
        sub = metadata.distribution(name)
        todo += [r for r in (Requirement(t) for t in sub.requires or [])
                 if r.marker is None or r.marker.evaluate({**env, "extra": ""})
                 or any(r.marker.evaluate({**env, "extra": e}) for e in req.extras)]
    return seen


def test_installed_packages_are_the_locked_versions():
    """What the tests run on is what the lock says: everything autotune needs (with the extras installed
    here) is locked and installed at its pin. Packages nothing of autotune's asks for (left in a shared
    interpreter by something else) are not the lock's business: a constraint pins only what is asked for."""
    needed = _needed_by_autotune()
    assert {"torch", "ray", "optuna", "pytest", "schemathesis"} <= needed
    unlocked = sorted(needed - set(PINS))
    assert not unlocked, f"installed and needed by autotune but not locked: {unlocked}"
    wrong = {name: (_installed(name), PINS[name]) for name in sorted(needed)
             if Version(_installed(name) or "0") != Version(PINS[name])}
    assert not wrong, f"installed (have, locked): {wrong}; install with -c .ci/constraints.txt"


def test_readme_commands_and_ci_install_from_the_lock():
    readme = (REPO / "README.md").read_text().split("---", 1)[0]
    installs = [line for line in readme.splitlines() if line.startswith("    ") and "pip install" in line]
    assert len(installs) == 2
    for line in installs:
        assert "-c .ci/constraints.txt" in line, line
    ci = (REPO / ".ci" / "run").read_text()
    # CI runs both commands as the README writes them: it reads them from there, so they cannot drift
    assert "readme_command 0" in ci and "readme_command 1" in ci and "python3 -m venv" in ci
    for dockerfile in (REPO / "docker").glob("Dockerfile*"):
        assert "constraints.txt" in dockerfile.read_text(), dockerfile.name


def test_refresh_script_check_mode_agrees(capsys):
    assert refresh_lock.main(["--check"]) == 0
    assert Path(refresh_lock.LOCK).name == "constraints.txt"
