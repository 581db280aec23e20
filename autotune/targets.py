"""Trial targets: what a trial runs.

Three forms, all resolved here and nowhere else:

* ``path/to/file.py:function`` -- a Python objective ``function(config, trial)`` loaded from a file;
* ``package.module:function`` -- the same, from an importable module;
* ``path/to/script.py`` -- a script run as ``python script.py --NAME=VALUE ... --saved_params_dir=DIR``
  (AutoDL Finetuner's protocol), reporting through :func:`autotune.report_final_result`;
* a Python callable handed to :func:`autotune.run` (shipped to workers by Ray's pickling).

Targets are checked in the driver before any trial starts (the file exists, the function is
defined in it) without executing the user's code there.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import TrialError

FUNCTION = "function"
SCRIPT = "script"
CALLABLE = "callable"


@dataclass(frozen=True)
class TrialTarget:
    """A resolved trial target; ``ref`` is absolute for file targets."""

    kind: str
    ref: str
    fn: Callable[..., Any] | None = field(default=None, compare=False)
    python: str = sys.executable
    args: tuple[str, ...] = ()
    #: where a script runs: the directory ``autotune run`` started in (as PaddleHub runs its scripts),
    #: so relative paths in the script and its arguments mean what they meant there
    workdir: str = ""

    def describe(self) -> str:
        if self.kind == CALLABLE:
            return f"{getattr(self.fn, '__module__', '?')}:{getattr(self.fn, '__qualname__', '?')}"
        return self.ref

    def to_dict(self) -> dict[str, Any]:
        """Settings form, for resume; a bare callable is stored by its importable name if it has one."""
        return {"kind": self.kind, "ref": self.describe(), "python": self.python, "args": list(self.args),
                "workdir": self.workdir}

    @classmethod
    def from_dict(cls, d: dict[str, Any], objective: Callable[..., Any] | None = None) -> "TrialTarget":
        """``objective``: the function itself, for a run whose objective cannot be imported again (one
        defined in a script run directly, a lambda, a nested function)."""
        kind = d["kind"]
        if kind == CALLABLE:
            if objective is not None:
                return parse_target(objective)
            module, _, name = d["ref"].partition(":")
            if module != "__main__" and "<" not in name:
                try:
                    return parse_target(d["ref"])
                except TrialError:
                    pass
            raise TrialError(
                f"this run's objective {d['ref']!r} cannot be imported again (a function of a script run "
                f"directly, a lambda or a nested function): resume it from Python with "
                f"autotune.resume(RUN_DIR, objective=your_function), or give it an importable home "
                f"(module:function or file.py:function)")
        args = tuple(d.get("args", ()))
        try:  # the file may have moved since: say so now rather than fail every remaining trial
            parse_target(d["ref"], script_args=args)
        except TrialError as e:
            raise TrialError(f"this run's trial can no longer be found: {e}") from None
        return cls(kind=kind, ref=d["ref"], python=d.get("python", sys.executable), args=args,
                   workdir=d.get("workdir", ""))

    def load_function(self) -> Callable[..., Any]:
        """The objective (worker side).  File modules are cached per process so reused workers import once."""
        if self.kind == CALLABLE:
            assert self.fn is not None
            return self.fn
        if self.kind != FUNCTION:
            raise TrialError(f"{self.ref} is a script, not a function")
        module_ref, func = self.ref.rsplit(":", 1)
        if _is_path(module_ref):
            module = _load_file_module(Path(module_ref))
        else:
            try:
                module = importlib.import_module(module_ref)
            except ImportError as e:
                raise TrialError(f"cannot import trial module {module_ref!r}: {e}") from e
        fn = getattr(module, func, None)
        if not callable(fn):
            raise TrialError(f"{module_ref} defines no function {func!r}")
        return fn


def _is_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith(".py")


_file_modules: dict[str, Any] = {}


def _load_file_module(path: Path) -> Any:
    key = str(path.resolve())
    if key in _file_modules:
        return _file_modules[key]
    name = "autotune_trial_" + hashlib.sha1(key.encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, key)
    if spec is None or spec.loader is None:
        raise TrialError(f"cannot load trial file {key}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The trial's own folder goes on sys.path so it can import its sibling helpers.
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec.loader.exec_module(module)
    _file_modules[key] = module
    return module


def parse_target(target: str | Callable[..., Any], script_args: tuple[str, ...] = ()) -> TrialTarget:
    """Resolve a target string (or callable) and check it exists, without running user code.

    Relative file paths are resolved against the current directory (the space loader has already made
    a space file's ``trial:`` absolute, relative to that file).
    """
    if callable(target):
        _no_script_args(script_args, "a Python function")
        return TrialTarget(kind=CALLABLE, ref="", fn=target)
    if not isinstance(target, str) or not target.strip():
        raise TrialError(f"a trial target must be 'file.py', 'file.py:function' or 'module:function', got {target!r}")
    target = target.strip()
    module_ref, _, func = target.partition(":")
    if _is_path(module_ref):
        path = Path(module_ref).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        path = path.resolve()
        if not path.is_file():
            raise TrialError(f"trial file {path} does not exist")
        if not func:
            return TrialTarget(kind=SCRIPT, ref=str(path), args=tuple(script_args), workdir=os.getcwd())
        _check_defines(path, func)
        _no_script_args(script_args, f"the function {target}")
        return TrialTarget(kind=FUNCTION, ref=f"{path}:{func}")
    if not func:
        raise TrialError(f"trial target {target!r}: name the function as 'module:function'")
    try:
        found = importlib.util.find_spec(module_ref.split(".")[0])
    except (ImportError, ValueError):  # e.g. __main__ of an interactive session has no spec
        found = None
    if found is None:
        raise TrialError(f"trial target {target!r}: module {module_ref!r} is not importable")
    if "." not in module_ref and found.origin and found.origin.endswith(".py"):  # read, never run, here
        _check_defines(Path(found.origin), func)
    _no_script_args(script_args, f"the function {target}")
    return TrialTarget(kind=FUNCTION, ref=target)


def _no_script_args(script_args: tuple[str, ...], what: str) -> None:
    if script_args:
        raise TrialError(f"script arguments ({' '.join(script_args)}) go to a script trial, but the trial is {what}: "
                         f"put fixed values under `fixed:` in the space file")


def _check_defines(path: Path, func: str) -> None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as e:
        raise TrialError(f"trial file {path}: syntax error at line {e.lineno}: {e.msg}") from None
    names, star = _top_level_names(tree.body)
    if func not in names and not star:
        raise TrialError(f"trial file {path} defines no function {func!r}")


def _top_level_names(body: list[ast.stmt]) -> tuple[set[str], bool]:
    """Names a module binds at import (defs, classes, assignments, imports, also inside top-level
    if/try blocks), and whether a ``from x import *`` or a module ``__getattr__`` makes that unknowable."""
    names: set[str] = set()
    star = False
    for n in body:
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.Assign):
            names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for alias in n.names:
                star |= alias.name == "*"
                names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(n, (ast.If, ast.Try, ast.With)):
            blocks = [n.body, getattr(n, "orelse", []), getattr(n, "finalbody", [])]
            blocks += [h.body for h in getattr(n, "handlers", [])]
            for block in blocks:
                inner, inner_star = _top_level_names(block)
                names |= inner
                star |= inner_star
    return names, star or "__getattr__" in names
