"""The three parameter types of a search space, each validated when it is built.

Validation lives here so that a parameter built in Python gets the same checks as one read from a
space file.  A problem is raised as :class:`ParamProblem`, which knows the parameter but not the
file; the loader re-raises it with the file name (``<space>`` when there is none).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SearchSpaceError

#: the YAML scalar types a categorical choice may have
CHOICE_TYPES = (str, bool, int, float, type(None))

#: the names of the keys a problem message refers to; the PaddleHub loader passes its own
NATIVE_KEYS = {"low": "low", "high": "high", "init": "init", "log": "log", "step": "step"}


class ParamProblem(SearchSpaceError):
    """A problem with one parameter, raised before the file it came from is known."""

    def __init__(self, param: str, problem: str) -> None:
        self.param = param
        self.problem = problem
        super().__init__(f"<space>: parameter {param!r}: {problem}")


def is_number(value: Any) -> bool:
    """True for int/float (numpy included) but not for bool, which YAML users rarely mean as 0/1."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_integer(value: Any) -> bool:
    """True for ints and integral floats (``1.0e+3`` in YAML is a float)."""
    if not is_number(value):
        return False
    return isinstance(value, numbers.Integral) or (math.isfinite(float(value)) and float(value).is_integer())


def same_choice(a: Any, b: Any) -> bool:
    """Equality for categorical choices that keeps ``True`` apart from ``1`` and ``None`` apart from ``0``."""
    a_bool, b_bool = isinstance(a, (bool, np.bool_)), isinstance(b, (bool, np.bool_))
    if a_bool or b_bool:
        return a_bool and b_bool and bool(a) == bool(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _float(name: str, value: Any, key: str) -> float:
    if not is_number(value):
        raise ParamProblem(name, f"{key} must be a number, but got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ParamProblem(name, f"{key} must be finite, but got {value!r}")
    return out


def _int(name: str, value: Any, key: str) -> int:
    if not is_integer(value):
        raise ParamProblem(name, f"{key} must be an integer, but got {value!r}")
    return int(value)


def check_float(
    name: str, low: Any, high: Any, log: Any, init: Any, keys: dict[str, str] = NATIVE_KEYS
) -> tuple[float, float, bool, float | None]:
    """Check and normalise the fields of a float parameter; return (low, high, log, init)."""
    lo, hi = _float(name, low, keys["low"]), _float(name, high, keys["high"])
    if not isinstance(log, bool):
        raise ParamProblem(name, f"{keys['log']} must be true or false, but got {log!r}")
    if not lo < hi:
        raise ParamProblem(name, f"{keys['low']} < {keys['high']} must hold, but got {keys['low']}={lo!r}, {keys['high']}={hi!r}")
    if not math.isfinite(hi - lo):
        raise ParamProblem(name, f"the range {keys['low']}..{keys['high']} is too wide to represent ({lo!r}..{hi!r})")
    if log and lo <= 0:
        raise ParamProblem(name, f"a log scale needs {keys['low']} > 0, but got {keys['low']}={lo!r}")
    ini = None
    if init is not None:
        ini = _float(name, init, keys["init"])
        if not lo <= ini <= hi:
            raise ParamProblem(name, f"{keys['init']}={ini!r} is outside the bounds [{lo!r}, {hi!r}]")
    return lo, hi, log, ini


def check_int(
    name: str, low: Any, high: Any, log: Any, step: Any, init: Any, keys: dict[str, str] = NATIVE_KEYS
) -> tuple[int, int, bool, int, int | None]:
    """Check and normalise the fields of an int parameter; return (low, high, log, step, init)."""
    lo, hi = _int(name, low, keys["low"]), _int(name, high, keys["high"])
    st = _int(name, step, keys["step"])
    if not isinstance(log, bool):
        raise ParamProblem(name, f"{keys['log']} must be true or false, but got {log!r}")
    if not lo < hi:
        raise ParamProblem(name, f"{keys['low']} < {keys['high']} must hold, but got {keys['low']}={lo}, {keys['high']}={hi}")
    if st < 1:
        raise ParamProblem(name, f"{keys['step']} must be >= 1, but got {st}")
    if (hi - lo) % st:
        raise ParamProblem(
            name, f"{keys['high']} - {keys['low']} ({hi - lo}) must be a multiple of {keys['step']} ({st}), "
            f"e.g. {keys['high']}={lo + (hi - lo) // st * st}"
        )
    if log and lo <= 0:
        raise ParamProblem(name, f"a log scale needs {keys['low']} >= 1, but got {keys['low']}={lo}")
    if log and st != 1:
        raise ParamProblem(name, f"a log scale needs {keys['step']} 1, but got {keys['step']}={st}")
    ini = None
    if init is not None:
        ini = _int(name, init, keys["init"])
        if not lo <= ini <= hi:
            raise ParamProblem(name, f"{keys['init']}={ini} is outside the bounds [{lo}, {hi}]")
        if (ini - lo) % st:
            raise ParamProblem(name, f"{keys['init']}={ini} is not on the grid {lo}, {lo + st}, ... (step {st})")
    return lo, hi, log, st, ini


def check_choices(name: str, choices: Any, init: Any) -> tuple[tuple[Any, ...], Any]:
    """Check the choices of a categorical parameter; return (choices, init)."""
    if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple)):
        raise ParamProblem(name, f"choices must be a list, but got {choices!r}")
    if not choices:
        raise ParamProblem(name, "choices must not be empty; expected a list of at least one value")
    out: list[Any] = []
    for c in choices:
        if not isinstance(c, CHOICE_TYPES):
            raise ParamProblem(name, f"choice {c!r} is not a YAML scalar; expected str, int, float, bool or null")
        if isinstance(c, float) and not math.isfinite(c):
            raise ParamProblem(name, f"choice {c!r} is not allowed; expected a finite number")
        if any(same_choice(c, o) for o in out):
            raise ParamProblem(name, f"choice {c!r} appears twice; expected distinct choices")
        out.append(c)
    if init is not None and not any(same_choice(init, c) for c in out):
        raise ParamProblem(name, f"init={init!r} is not one of the choices {out!r}")
    ini = next((c for c in out if same_choice(init, c)), None) if init is not None else None
    return tuple(out), ini


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise SearchSpaceError(f"<space>: parameter name {name!r} is invalid; expected a non-empty string")


@dataclass(frozen=True)
class FloatParam:
    """A real-valued parameter in ``[low, high]``, searched on a linear or log scale."""

    name: str
    low: float
    high: float
    log: bool = False
    init: float | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        lo, hi, _, ini = check_float(self.name, self.low, self.high, self.log, self.init)
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)
        object.__setattr__(self, "init", ini)


@dataclass(frozen=True)
class IntParam:
    """An integer parameter on the grid ``low, low+step, ..., high`` (both ends included)."""

    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    init: int | None = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        lo, hi, _, st, ini = check_int(self.name, self.low, self.high, self.log, self.step, self.init)
        object.__setattr__(self, "low", lo)
        object.__setattr__(self, "high", hi)
        object.__setattr__(self, "step", st)
        object.__setattr__(self, "init", ini)


@dataclass(frozen=True)
class CategoricalParam:
    """A parameter taking one of a fixed tuple of YAML scalars (str, int, float, bool, None)."""

    name: str
    choices: tuple[Any, ...]
    init: Any = None

    def __post_init__(self) -> None:
        _check_name(self.name)
        choices, ini = check_choices(self.name, self.choices, self.init)
        object.__setattr__(self, "choices", choices)
        object.__setattr__(self, "init", ini)


Param = FloatParam | IntParam | CategoricalParam
