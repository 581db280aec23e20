"""Every module of autotune imports with the core dependencies alone.

The README's first command installs autotune without extras, so an import that only an extra (or the
test tools) brings breaks it while the test suite, which installs the extras, stays green: that is how
``No module named 'scipy'`` reached a newcomer. This test reads every module's imports (nothing is
imported) and checks each one outside the standard library against the packages the core install
brings: autotune's own requirements without extras, and theirs, transitively. An import inside a
``try`` that catches ImportError is optional by construction and allowed; the feature behind it must
then say which extra to install. ``.ci/run`` also imports every module in a fresh virtual environment
holding only the core install, so this static check and the real one agree.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO
from packaging.markers import default_environment
from packaging.requirements import Requirement

PACKAGE = REPO / "autotune"


def core_distributions() -> set[str]:
    """Canonical names of the distributions a plain ``pip install autotune`` brings (no extras)."""
    env = {**default_environment(), "extra": ""}
    todo = [Requirement(r) for r in metadata.distribution("autotune").requires or []]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue  # an extra's requirement (or another platform's)
        name = _canonical(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            sub = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for text in sub.requires or []:
            r = Requirement(text)
            if r.marker is None or r.marker.evaluate(env) or any(
                    r.marker.evaluate({**env, "extra": e}) for e in req.extras):
                todo.append(r)
    return seen


def _canonical(name: str) -> str:
    return name.replace("_", "-").replace(".", "-").lower()


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside a ``try`` whose handlers catch ImportError (or ModuleNotFoundError)."""
    child, up = node, parents.get(node)
    while up is not None:
        if isinstance(up, ast.Try) and child in up.body:
            for h in up.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
        child, up = up, parents.get(up)
    return False


def unguarded_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file that no ImportError handler guards."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            mods = [node.module]
        else:
            continue
        if _guarded(node, parents):
            continue
        # ``if TYPE_CHECKING:`` imports never run
        up = parents.get(node)
        if isinstance(up, ast.If) and "TYPE_CHECKING" in ast.unparse(up.test):
            continue
        found += [(node.lineno, m.split(".")[0]) for m in mods]
    return found


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


CORE = core_distributions()
PROVIDERS = metadata.packages_distributions()


def _provided_by_core(module: str) -> bool:
    if module in sys.stdlib_module_names or module in ("autotune", "__future__"):
        return True
    return any(_canonical(d) in CORE for d in PROVIDERS.get(module, []))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_import_of_autotune_is_in_the_core_install(path):
    outside = [f"line {line}: import {mod} (from {', '.join(PROVIDERS.get(mod, ['no installed package']))})"
               for line, mod in unguarded_imports(path) if not _provided_by_core(mod)]
    assert not outside, (
        f"{path.relative_to(REPO)} imports what the core install (pip install autotune, no extras) does not "
        f"bring: {'; '.join(outside)}. Add it to [project] dependencies in pyproject.toml (then "
        f"python .ci/refresh_lock.py), or import it inside try/except ImportError with a message naming "
        f"the extra to install")


def test_the_check_sees_an_import_outside_the_core(tmp_path):
    """The check can fail: scipy before it was a core dependency, and a test tool that only the test
    extra brings, are both outside a core set without them."""
    module = tmp_path / "m.py"
    module.write_text("import os\nimport pytest\nfrom scipy import optimize\n"
                      "try:\n    import transformers\nexcept ImportError:\n    transformers = None\n"
                      "def f():\n    import hypothesis\n")
    found = unguarded_imports(module)
    assert [m for _, m in found] == ["os", "pytest", "scipy", "hypothesis"]
    assert "scipy" in {m for _, m in found} and not _provided_by_core("pytest")
    assert not _provided_by_core("hypothesis") and _provided_by_core("os") and _provided_by_core("numpy")
    assert "scipy" in CORE  # it is a core dependency now: autotune/samplers/_gp.py and pshe3 need it
