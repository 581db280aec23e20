#!/usr/bin/env python3
"""Refresh .ci/constraints.txt, the lock of exact versions, from pyproject.toml.

    python .ci/refresh_lock.py            # resolve every extra, write .ci/constraints.txt
    python .ci/refresh_lock.py --upgrade  # the same, moving every pin to the newest release allowed
    python .ci/refresh_lock.py --check    # exit 1 when pyproject.toml changed since the lock was made

Run it after changing a dependency or a range in pyproject.toml, or on purpose to move to newer
releases; then run the test command and commit both files together. pip resolves all extras at
once (a dry run: nothing is installed) with `--ignore-installed`, so the result does not depend
on what this environment already holds. The lock is a pip constraints file: it pins versions and
installs nothing by itself, so one file serves the main job, the tests and every extra.
Without ``--upgrade`` the resolution keeps every pin of the current lock that still fits (the old lock
is a constraint of it), so adding one dependency pins what it brings and moves nothing else.
The resolution is for the platform it runs on (the header says which); on other platforms the
pins still apply to every package they share.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
LOCK = REPO / ".ci" / "constraints.txt"
DIGEST_PREFIX = "# pyproject-digest: "


def dependency_inputs(pyproject: Path = PYPROJECT) -> dict[str, list[str]]:
    """Every requirement list of pyproject.toml that the lock resolves, by name."""
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    inputs = {"build-system": list(data.get("build-system", {}).get("requires", [])),
              "dependencies": list(project.get("dependencies", []))}
    for extra, reqs in sorted(project.get("optional-dependencies", {}).items()):
        inputs[f"extra:{extra}"] = list(reqs)
    return inputs


def dependency_digest(pyproject: Path = PYPROJECT) -> str:
    """A hash of the requirement lists (comments and formatting do not count)."""
    canonical = json.dumps(dependency_inputs(pyproject), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def locked_digest(lock: Path = LOCK) -> str | None:
    for line in lock.read_text().splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX):].strip()
    return None


def read_lock(lock: Path = LOCK) -> dict[str, str]:
    """{canonical name: version} of every pin in the lock."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonical(name)] = version.strip()
    return pins


def canonical(name: str) -> str:
    """PEP 503 normalised name (what pip compares)."""
    import re
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(keep: bool = True) -> list[tuple[str, str]]:
    """(name, version) of everything the project and all its extras need, as pip resolves it today;
    ``keep``: with the current lock's pins as constraints (what is locked stays where it is)."""
    extras = ",".join(k.split(":", 1)[1] for k in dependency_inputs() if k.startswith("extra:"))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), f"{REPO}[{extras}]"]
        if keep and LOCK.exists():
            cmd[4:4] = ["-c", str(LOCK)]
        subprocess.run(cmd, check=True)
        installs = json.loads(report.read_text())["install"]
    pins = {(i["metadata"]["name"], i["metadata"]["version"]) for i in installs
            if canonical(i["metadata"]["name"]) != "autotune"}
    # the build backend, so that building autotune itself is pinned too
    build = [r for r in dependency_inputs()["build-system"]]
    if build:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                            "--quiet", "--disable-pip-version-check", "--report", str(report), *build],
                           check=True)
            pins |= {(i["metadata"]["name"], i["metadata"]["version"])
                     for i in json.loads(report.read_text())["install"]}
    merged: dict[str, tuple[str, str]] = {}
    for name, version in pins:
        merged.setdefault(canonical(name), (name, version))
    return sorted(merged.values(), key=lambda p: canonical(p[0]))


def write_lock(pins: list[tuple[str, str]]) -> None:
    header = [
        "# The lock: exact versions of everything autotune and all its extras install.",
        "# Made by `python .ci/refresh_lock.py` from pyproject.toml; do not edit by hand.",
        "# Used as a pip constraints file: pip install -c .ci/constraints.txt -e \".[EXTRAS]\"",
        f"# Resolved on {platform.system()} {platform.machine()}, Python {platform.python_version()}.",
        f"{DIGEST_PREFIX}{dependency_digest()}",
    ]
    LOCK.write_text("\n".join(header + [f"{name}=={version}" for name, version in pins]) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the lock matches pyproject.toml")
    parser.add_argument("--upgrade", action="store_true",
                        help="move every pin to the newest release pyproject.toml allows (default: keep the pins that fit)")
    args = parser.parse_args(argv)
    if args.check:
        if LOCK.exists() and locked_digest() == dependency_digest():
            print(f"{LOCK.relative_to(REPO)} matches pyproject.toml")
            return 0
        print(f"{LOCK.relative_to(REPO)} is out of date with pyproject.toml: run python .ci/refresh_lock.py",
              file=sys.stderr)
        return 1
    pins = resolve(keep=not args.upgrade)
    write_lock(pins)
    print(f"wrote {len(pins)} pins to {LOCK.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
