"""The shape of a space document: its top-level keys and the two ways it lists parameters.

A document lists its parameters natively (``params:``) or in PaddleHub's form (``param_list:``); the
other top-level keys are run settings, read by :mod:`.space_file`.  Both :class:`~.space.SearchSpace`
and :class:`~.space_file.SpaceFile` parse through here, so a parameter gets the same checks and the
same messages however it arrives.  Every error names ``where`` (the file, or ``<space>``), the
parameter when there is one, and what was expected.

PaddleHub form: a ``param_list`` of ``{name, type: int|float, init_value, greater_than,
lower_than}``; ``greater_than`` and ``lower_than`` are taken as the inclusive low and high bounds.  A
float whose bounds span more than two decades (``high / low > 100`` with ``low > 0``) is searched on a
log scale unless the item says ``log: false``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

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

#: the keys that list parameters (one of them, exactly)
PARAM_KEYS = ("params", "param_list")
#: the run settings a space file may carry beside its parameters (see :mod:`.space_file`)
SETTING_KEYS = ("trial", "metric", "mode", "budget", "fixed", "defaults")
TOP_KEYS = SETTING_KEYS + PARAM_KEYS
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


def unknown_key(where: str, key: Any, allowed: Iterable[str]) -> SearchSpaceError:
    """The error for a key that is not allowed here, with the closest allowed key and the full list."""
    allowed = sorted(allowed)
    return SearchSpaceError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; expected one of: {', '.join(allowed)}")


def kind(value: Any) -> str:
    """A YAML-ish name for a value's type, for messages (``null``, ``list``, ``str``, ...)."""
    return "null" if value is None else type(value).__name__


def check_document(data: Any, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    """Check a document's top level: a mapping of ``allowed`` keys that lists its parameters once."""
    if not isinstance(data, Mapping):
        got = "an empty document" if data is None else f"a {kind(data)}"
        raise SearchSpaceError(f"{where}: expected a mapping with a 'params' key (or PaddleHub's 'param_list'), but got {got}")
    for key in data:
        if key not in allowed:
            if isinstance(data[key], Mapping) and "type" in data[key]:  # {lr: {type: float, ...}} at the top
                raise SearchSpaceError(f"{where}: unknown key {key!r}; it looks like a parameter: put parameters "
                                       f"under 'params:' (e.g. {{'params': {{{key!r}: {{...}}}}}})")
            raise unknown_key(where, key, allowed)
    if "params" in data and "param_list" in data:
        raise SearchSpaceError(f"{where}: both 'params' and 'param_list' are given; expected one of them")
    if "params" not in data and "param_list" not in data:
        raise SearchSpaceError(f"{where}: missing key 'params'; expected the parameters to search (or PaddleHub's 'param_list')")
    return data


def parse_params(data: Mapping[str, Any], where: str) -> tuple[Param, ...]:
    """The parameters of a checked document (see :func:`check_document`), native or PaddleHub form."""
    if "param_list" in data:
        return tuple(_paddle_params(data["param_list"], where))
    return tuple(_native_params(data["params"], where))


def param_to_dict(p: Param) -> dict[str, Any]:
    """A parameter in the native form; :func:`parse_params` reads it back to an equal parameter."""
    if isinstance(p, FloatParam):
        d: dict[str, Any] = {"type": "float", "low": p.low, "high": p.high, "log": p.log}
    elif isinstance(p, IntParam):
        d = {"type": "int", "low": p.low, "high": p.high, "log": p.log, "step": p.step}
    else:
        d = {"type": "categorical", "choices": list(p.choices)}
    if p.init is not None:
        d["init"] = p.init
    return d


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
            f"{where}: params must be a mapping of name: {{type: ..., ...}} (or a list of items with 'name'), but got {kind(raw)}"
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
        raise SearchSpaceError(f"{where}: expected a mapping like {{type: float, low: ..., high: ...}}, but got {kind(spec)} {spec!r}")
    type_name = spec.get("type")
    if type_name is None:
        every = {key for keys in TYPE_KEYS.values() for key in keys}
        for key in spec:
            if key not in every:
                raise unknown_key(where, key, every)
        raise SearchSpaceError(f"{where}: missing key 'type'; expected one of: {', '.join(sorted(TYPE_KEYS))}")
    if not isinstance(type_name, str) or type_name not in TYPE_KEYS:
        hint = did_you_mean(type_name, TYPE_KEYS) if isinstance(type_name, str) else ""
        raise SearchSpaceError(f"{where}: unknown type {type_name!r}{hint}; expected one of: {', '.join(sorted(TYPE_KEYS))}")
    for key in spec:
        if key not in TYPE_KEYS[type_name]:
            raise unknown_key(where, key, TYPE_KEYS[type_name])
    required = ("choices",) if type_name == "categorical" else ("low", "high")
    for key in required:
        if key not in spec:
            raise SearchSpaceError(f"{where}: missing key {key!r} for type {type_name}")
    try:
        if type_name == "float":
            return FloatParam(
                name, _yaml_float(spec["low"]), _yaml_float(spec["high"]),
                log=spec.get("log", False), init=_yaml_float(spec.get("init")),
            )
        if type_name == "int":
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
        raise SearchSpaceError(f"{where}: param_list must be a list of {{name, type, init_value, greater_than, lower_than}}, but got {kind(raw)}")
    params: list[Param] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise SearchSpaceError(f"{where}: param_list item {i + 1}: expected a mapping, but got {kind(item)} {item!r}")
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
            raise unknown_key(where, key, PADDLE_KEYS)
    type_name = item.get("type")
    if type_name not in ("int", "float"):
        hint = did_you_mean(type_name, ("int", "float")) if isinstance(type_name, str) else ""
        raise SearchSpaceError(
            f"{where}: type {type_name!r}{hint} is not supported in param_list; expected int or float "
            "(for categoricals use the native 'params' form)"
        )
    for key in ("greater_than", "lower_than"):
        if key not in item:
            raise SearchSpaceError(f"{where}: missing key {key!r}; PaddleHub items need greater_than (low) and lower_than (high)")
    low, high, init = (_yaml_float(item.get(k)) for k in ("greater_than", "lower_than", "init_value"))
    try:
        if type_name == "int":
            lo, hi, int_log, _, ini = check_int(name, low, high, item.get("log", False), 1, init, PADDLE_NAMES)
            return IntParam(name, lo, hi, log=int_log, init=ini)
        said = item.get("log")
        if said is None:  # the two-decade rule; only when the file does not say
            said = is_number(low) and is_number(high) and 0 < low and high / low > PADDLE_LOG_RATIO
        lo_f, hi_f, log, ini_f = check_float(name, low, high, said, init, PADDLE_NAMES)
        return FloatParam(name, lo_f, hi_f, log=log, init=ini_f)
    except ParamProblem as exc:
        raise SearchSpaceError(f"{where}: {exc.problem}") from None
