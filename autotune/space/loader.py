"""Reading space files: the native form and PaddleHub's ``hparam.yaml``, with errors that point at the fix.

Files are parsed with ``yaml.safe_load``: nothing in a space file is ever executed.  Every error names
the file (``<space>`` for a dict without a source), the parameter when there is one, and what was
expected.  PyYAML silently keeps the last of two equal mapping keys, so the document is also composed
(not constructed) once to report duplicate keys with their line.

PaddleHub form: a top-level ``param_list`` of ``{name, type: int|float, init_value, greater_than,
lower_than}``; ``greater_than`` and ``lower_than`` are taken as the inclusive low and high bounds.  A
float whose bounds span more than two decades (``high / low > 100`` with ``low > 0``) is searched on a
log scale unless the item says ``log: false``.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import SearchSpaceError
from .params import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    ParamProblem,
    check_float,
    check_int,
    is_number,
)
from .space import SearchSpace

TOP_KEYS = ("trial", "metric", "mode", "budget", "fixed", "defaults", "params", "param_list")
TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "float": ("type", "low", "high", "log", "init"),
    "int": ("type", "low", "high", "log", "step", "init"),
    "categorical": ("type", "choices", "init"),
}
PADDLE_KEYS = ("name", "type", "init_value", "greater_than", "lower_than", "log")
PADDLE_NAMES = {"low": "greater_than", "high": "lower_than", "init": "init_value", "log": "log", "step": "step"}
#: a PaddleHub float spanning more than this ratio (two decades) is searched on a log scale
PADDLE_LOG_RATIO = 100.0


def did_you_mean(key: Any, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest allowed key, or an empty string."""
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(where: str, key: Any, allowed: Iterable[str]) -> SearchSpaceError:
    allowed = sorted(allowed)
    return SearchSpaceError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read a space file (native or PaddleHub form) with ``yaml.safe_load``."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SearchSpaceError(f"{source}: cannot read the space file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SearchSpaceError(f"{source}: the space file is not UTF-8 text ({exc.reason})") from None
    try:
        _reject_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"{source}: invalid YAML{_yaml_position(exc)}: {_yaml_problem(exc)}") from None
    return parse_space(data, source)


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_problem(exc: yaml.YAMLError) -> str:
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = ", ".join(p for p in parts if p)
    return text or str(exc).splitlines()[0]


def _reject_duplicate_keys(node: Any, source: str, seen_nodes: set[int] | None = None) -> None:
    """Walk a composed YAML tree and refuse a mapping that repeats a key.

    Aliases make the tree a graph (possibly cyclic, possibly exponentially large when unfolded), so
    every node is visited once.
    """
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                line = key_node.start_mark.line + 1
                if key_node.value in seen:
                    raise SearchSpaceError(
                        f"{source}: duplicate key {key_node.value!r} at line {line} "
                        f"(first at line {seen[key_node.value]}); expected each key once"
                    )
                seen[key_node.value] = line
            _reject_duplicate_keys(value_node, source, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _reject_duplicate_keys(item, source, seen_nodes)


def parse_space(data: Any, source: str | None = None) -> SearchSpace:
    """Build a :class:`SearchSpace` from a parsed document (native or PaddleHub form)."""
    where = source or "<space>"
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else f"a {_kind(data)}"
        raise SearchSpaceError(f"{where}: expected a mapping with a 'params' key (or PaddleHub's 'param_list'), but got {got}")
    for key in data:
        if key not in TOP_KEYS:
            if isinstance(data[key], Mapping) and "type" in data[key]:  # {lr: {type: float, ...}} at the top
                raise SearchSpaceError(f"{where}: unknown key {key!r}; it looks like a parameter: put parameters "
                                       f"under 'params:' (e.g. {{'params': {{{key!r}: {{...}}}}}})")
            raise _unknown(where, key, TOP_KEYS)
    if "params" in data and "param_list" in data:
        raise SearchSpaceError(f"{where}: both 'params' and 'param_list' are given; expected one of them")
    if "param_list" in data:
        params = _paddle_params(data["param_list"], where)
    elif "params" in data:
        params = _native_params(data["params"], where)
    else:
        raise SearchSpaceError(f"{where}: missing key 'params'; expected the parameters to search (or PaddleHub's 'param_list')")
    for key in ("fixed", "defaults"):
        value = data.get(key)
        if value is not None and not isinstance(value, Mapping):
            raise SearchSpaceError(f"{where}: {key} must be a mapping, but got {_kind(value)} {value!r}")
    mode = data.get("mode")
    if isinstance(mode, str):
        mode = mode.strip().lower()
    return SearchSpace(
        params=tuple(params),
        metric=data.get("metric"),
        mode=mode,
        trial=resolve_trial(data.get("trial"), source),
        budget=data.get("budget"),
        fixed=dict(data.get("fixed") or {}),
        defaults=dict(data.get("defaults") or {}),
        source=source,
    )


def resolve_trial(trial: Any, source: str | None) -> Any:
    """Make a trial file path absolute, relative to the space file; leave ``module.sub:function`` alone.

    A target is a path when its part before an optional ``:function`` contains ``/`` or ends in ``.py``.
    """
    if not isinstance(trial, str) or not trial.strip():
        return trial
    target, sep, func = trial.rpartition(":")
    if not sep or not func.isidentifier():
        target, sep, func = trial, "", ""
    if "/" not in target and not target.endswith(".py"):
        return trial
    path = Path(target).expanduser()
    if not path.is_absolute() and source is not None:
        path = Path(source).resolve().parent / path
    if path.is_absolute():
        path = Path(os.path.normpath(path))
    return f"{path}{sep}{func}"


# -- native form --------------------------------------------------------------------------------
def _native_params(raw: Any, where: str) -> list[Param]:
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = []
        for i, spec in enumerate(raw):
            if not isinstance(spec, Mapping) or "name" not in spec:
                raise SearchSpaceError(f"{where}: params item {i + 1}: expected a mapping with a 'name' key, but got {spec!r}")
            items.append((spec["name"], {k: v for k, v in spec.items() if k != "name"}))
    else:
        raise SearchSpaceError(
            f"{where}: params must be a mapping of name: {{type: ..., ...}} (or a list of items with 'name'), but got {_kind(raw)}"
        )
    names: set[Any] = set()
    params = []
    for name, spec in items:
        if not isinstance(name, str) or not name.strip():
            raise SearchSpaceError(f"{where}: parameter name {name!r} is invalid; expected a non-empty string")
        if name in names:
            raise SearchSpaceError(f"{where}: parameter {name!r}: duplicate name; expected unique parameter names")
        names.add(name)
        params.append(_native_param(name, spec, f"{where}: parameter {name!r}"))
    return params


def _native_param(name: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, Mapping):
        raise SearchSpaceError(f"{where}: expected a mapping like {{type: float, low: ..., high: ...}}, but got {_kind(spec)} {spec!r}")
    kind = spec.get("type")
    if kind is None:
        every = {key for keys in TYPE_KEYS.values() for key in keys}
        for key in spec:
            if key not in every:
                raise _unknown(where, key, every)
        raise SearchSpaceError(f"{where}: missing key 'type'; expected one of: {', '.join(sorted(TYPE_KEYS))}")
    if not isinstance(kind, str) or kind not in TYPE_KEYS:
        hint = did_you_mean(kind, TYPE_KEYS) if isinstance(kind, str) else ""
        raise SearchSpaceError(
            f"{where}: unknown type {kind!r}{hint}; expected one of: {', '.join(sorted(TYPE_KEYS))}"
        )
    for key in spec:
        if key not in TYPE_KEYS[kind]:
            raise _unknown(where, key, TYPE_KEYS[kind])
    required = ("choices",) if kind == "categorical" else ("low", "high")
    for key in required:
        if key not in spec:
            raise SearchSpaceError(f"{where}: missing key {key!r} for type {kind}")
    try:
        if kind == "float":
            return FloatParam(
                name, _yaml_float(spec["low"]), _yaml_float(spec["high"]),
                log=spec.get("log", False), init=_yaml_float(spec.get("init")),
            )
        if kind == "int":
            return IntParam(
                name, spec["low"], spec["high"], log=spec.get("log", False),
                step=spec.get("step", 1), init=spec.get("init"),
            )
        return CategoricalParam(name, spec["choices"], init=spec.get("init"))
    except ParamProblem as exc:
        raise SearchSpaceError(f"{where}: {exc.problem}") from None


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; accept such strings as numbers."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# -- PaddleHub form -----------------------------------------------------------------------------
def _paddle_params(raw: Any, where: str) -> list[Param]:
    if not isinstance(raw, list):
        raise SearchSpaceError(f"{where}: param_list must be a list of {{name, type, init_value, greater_than, lower_than}}, but got {_kind(raw)}")
    params: list[Param] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise SearchSpaceError(f"{where}: param_list item {i + 1}: expected a mapping, but got {_kind(item)} {item!r}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SearchSpaceError(f"{where}: param_list item {i + 1}: expected a non-empty string 'name', but got {name!r}")
        here = f"{where}: parameter {name!r}"
        if name in names:
            raise SearchSpaceError(f"{here}: duplicate name; expected unique parameter names")
        names.add(name)
        params.append(_paddle_param(name, item, here))
    return params


def _paddle_param(name: str, item: Mapping[str, Any], where: str) -> Param:
    for key in item:
        if key not in PADDLE_KEYS:
            raise _unknown(where, key, PADDLE_KEYS)
    kind = item.get("type")
    if kind not in ("int", "float"):
        hint = did_you_mean(kind, ("int", "float")) if isinstance(kind, str) else ""
        raise SearchSpaceError(
            f"{where}: type {kind!r}{hint} is not supported in param_list; expected int or float "
            "(for categoricals use the native 'params' form)"
        )
    for key in ("greater_than", "lower_than"):
        if key not in item:
            raise SearchSpaceError(f"{where}: missing key {key!r}; PaddleHub items need greater_than (low) and lower_than (high)")
    low, high, init = (_yaml_float(item.get(k)) for k in ("greater_than", "lower_than", "init_value"))
    try:
        if kind == "int":
            lo, hi, int_log, _, ini = check_int(name, low, high, item.get("log", False), 1, init, PADDLE_NAMES)
            return IntParam(name, lo, hi, log=int_log, init=ini)
        said = item.get("log")
        if said is None:  # the two-decade rule; only when the file does not say
            said = is_number(low) and is_number(high) and 0 < low and high / low > PADDLE_LOG_RATIO
        lo_f, hi_f, log, ini_f = check_float(name, low, high, said, init, PADDLE_NAMES)
        return FloatParam(name, lo_f, hi_f, log=log, init=ini_f)
    except ParamProblem as exc:
        raise SearchSpaceError(f"{where}: {exc.problem}") from None
