"""The documentation keeps its promises: its links resolve, its commands parse, every CLI option is in it.

The pages are README.md and docs/*.md. Links are checked as a reader follows them on GitHub or in the
MkDocs site: a relative path must name a file of the repository, and an ``#anchor`` must name a heading
of the page it points to. A command is checked by the CLI's own argparse parser, in-process: it must
parse as the command line a user would type (nothing runs). Every option string of every subcommand
(the hidden ones aside) must appear on some page.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from conftest import REPO

from autotune.cli import build_parser
from autotune.errors import AutotuneError

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans."""
    out, fence = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if not fence:
            out.append(re.sub(r"`[^`]*`", "", line))
    return "\n".join(out)


def _slug(heading: str) -> str:
    """The anchor of a heading, as Python-Markdown's toc (MkDocs) and GitHub make it for these pages."""
    text = heading.replace("`", "").replace("*", "")  # the rendered text: code and emphasis marks go
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    anchors, fence = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence and (m := HEADING.match(line)):
            anchors.add(_slug(m.group(2)))
    return anchors


def _links() -> list[tuple[Path, str]]:
    return [(page, m.group(1)) for page in PAGES for m in LINK.finditer(_prose(page.read_text(encoding="utf-8")))]


def test_the_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "index.md", "install.md", "benchmarks.md", "api.md"} <= names, names
    for page in PAGES[1:]:
        first = page.read_text(encoding="utf-8").split("\n\n", 2)
        assert first[0].startswith("# ") and first[1].startswith("After reading this page"), page.name


def test_the_slugs_match_known_anchors():
    assert _slug("Searches as Ray Jobs (no terminal attached)") == "searches-as-ray-jobs-no-terminal-attached"
    slug = _slug("Asynchronous scheduling (`benchmarks/scheduling.py`)")
    assert slug == "asynchronous-scheduling-benchmarksschedulingpy"
    assert _slug("Early stopping (`benchmarks/early_stopping.py`)") == "early-stopping-benchmarksearly_stoppingpy"


def test_every_relative_link_resolves():
    checked, bad = 0, []
    for page, target in _links():
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        checked += 1
        if not dest.exists():
            bad.append(f"{page.name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{page.name}: {target} (no heading with that anchor in {dest.name})")
    assert checked > 20, checked
    assert not bad, "\n".join(bad)


def _bash_commands() -> list[tuple[Path, str]]:
    """Every `autotune ...` command in a ```bash block, continuation lines joined, comments dropped."""
    found = []
    for page in PAGES:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
            for line in block.replace("\\\n", " ").splitlines():
                if "autotune " not in line:
                    continue
                words = shlex.split(line, comments=True)
                if "autotune" in words:
                    found.append((page, shlex.join(words[words.index("autotune"):])))
    return found


def _parse(words: list[str]) -> argparse.Namespace:
    if words[:1] in (["run"], ["submit"]) and "--" in words:  # as main(): what follows -- goes to the script
        words = words[: words.index("--")]
    return build_parser().parse_args(words)


def test_every_command_shown_parses():
    commands = _bash_commands()
    assert len(commands) > 15, commands
    bad = []
    for page, command in commands:
        try:
            _parse(shlex.split(command)[1:])
        except (AutotuneError, SystemExit) as e:
            bad.append(f"{page.name}: {command}: {e}")
    assert not bad, "\n".join(bad)


def test_a_wrong_command_is_caught():
    with pytest.raises(AutotuneError):
        _parse(["run", "--space", "x.yaml", "--no-such-option", "1"])


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_cli_option_is_documented():
    text = "\n".join(p.read_text(encoding="utf-8") for p in PAGES)
    parser = build_parser()
    missing = []
    for name, sub in {"": parser, **_subparsers(parser)}.items():
        for action in sub._actions:
            hidden = action.help == argparse.SUPPRESS
            if hidden or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            for option in action.option_strings:
                if option.startswith("--") and not re.search(re.escape(option) + r"(?![\w-])", text):
                    missing.append(f"autotune {name} {option}".replace("  ", " "))
    assert not missing, "options no page mentions: " + ", ".join(missing)


def test_the_site_builds_strictly(tmp_path):
    """What CI's last step runs; skipped where the docs extra is not installed (CI installs it for that step)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").read_text().count('id="autotune.') >= 5
