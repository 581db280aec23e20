"""The one mapping between parameter values, the unit cube and Optuna distributions.

Every sampler works in ``[0, 1]^dim``, one coordinate per parameter; nothing else in autotune
converts values, so an off-by-one on integer bounds can only live here.

* float: linear, or linear in ``log(value)`` when ``log`` is set.
* int: the coordinate is cut into one cell per grid value, so each integer gets a fair share of the
  cube; on a log scale the cell of ``k`` spans ``log(k - 0.5) .. log(k + 0.5)``, i.e. a share
  proportional to its width on that scale.  A value encodes to a point inside its own cell, so it
  decodes back exactly.
* categorical: the coordinate is cut into equal cells, one per choice, in the listed order; a choice
  encodes to the centre of its cell.

Decoding clips its input to ``[0, 1]``, so every point of the closed cube decodes to a valid value.
Floats round-trip up to floating-point rounding; ints and choices round-trip exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .params import CategoricalParam, FloatParam, IntParam, Param, same_choice


def _clip01(u: float) -> float:
    return 0.0 if u <= 0.0 else 1.0 if u >= 1.0 else float(u)


def _int_edges(p: IntParam) -> tuple[float, float]:
    """The ends of the cube coordinate of ``p`` on its own scale (log or linear)."""
    if p.log:
        return math.log(p.low - 0.5), math.log(p.high + 0.5)
    return p.low - 0.5 * p.step, p.high + 0.5 * p.step


def encode_value(p: Param, value: Any) -> float:
    """Map a valid value of ``p`` to its coordinate in ``[0, 1]``."""
    if isinstance(p, FloatParam):
        if p.log:
            u = (math.log(value) - math.log(p.low)) / (math.log(p.high) - math.log(p.low))
        else:
            u = (value - p.low) / (p.high - p.low)
        return _clip01(u)
    if isinstance(p, IntParam):
        if p.log:
            lo, hi = _int_edges(p)
            return _clip01((math.log(value) - lo) / (hi - lo))
        cells = (p.high - p.low) // p.step + 1
        return ((value - p.low) // p.step + 0.5) / cells
    index = next(i for i, c in enumerate(p.choices) if same_choice(c, value))
    return (index + 0.5) / len(p.choices)


def decode_value(p: Param, u: float) -> Any:
    """Map any coordinate (clipped to ``[0, 1]``) to a valid value of ``p``, as a plain Python object."""
    u = _clip01(float(u))
    if isinstance(p, FloatParam):
        if u == 0.0 or u == 1.0:  # the bounds exactly, not exp(log(low)) one ulp off
            return p.low if u == 0.0 else p.high
        if p.log:
            x = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
        else:
            x = p.low + u * (p.high - p.low)
        if p.init is not None and math.isclose(x, p.init, rel_tol=1e-12, abs_tol=1e-15):
            return float(p.init)  # the init as written (1e-3), not its round trip (0.0010000000000000002)
        return float(min(max(x, p.low), p.high))
    if isinstance(p, IntParam):
        if p.log:
            lo, hi = _int_edges(p)
            k = math.floor(math.exp(lo + u * (hi - lo)) + 0.5)
            return int(min(max(k, p.low), p.high))
        cells = (p.high - p.low) // p.step + 1
        return int(p.low + min(int(u * cells), cells - 1) * p.step)
    return p.choices[min(int(u * len(p.choices)), len(p.choices) - 1)]


def init_coordinate(p: Param) -> float:
    """The coordinate of ``p``'s init value, or the centre ``0.5`` when it has none."""
    if p.init is None:
        return 0.5
    return encode_value(p, p.init)


def to_distribution(p: Param) -> BaseDistribution:
    """The Optuna distribution equivalent to ``p``."""
    if isinstance(p, FloatParam):
        return FloatDistribution(p.low, p.high, log=p.log)
    if isinstance(p, IntParam):
        return IntDistribution(p.low, p.high, log=p.log, step=p.step)
    assert isinstance(p, CategoricalParam)
    return CategoricalDistribution(optuna_choices(p))


def _needs_labels(p: CategoricalParam) -> bool:
    """Optuna finds a choice by ``==``, so ``True`` and ``1`` (or ``1`` and ``1.0``) would be one choice."""
    return any(a == b for i, a in enumerate(p.choices) for b in p.choices[i + 1:])


def optuna_choices(p: CategoricalParam) -> tuple[Any, ...]:
    """The choices as Optuna sees them: themselves, or JSON labels (``true``, ``1``, ``1.0``) when two of
    them compare equal in Python."""
    return tuple(json.dumps(c) for c in p.choices) if _needs_labels(p) else tuple(p.choices)


def to_optuna_value(p: Param, value: Any) -> Any:
    """A value of ``p`` in Optuna's terms (see :func:`optuna_choices`)."""
    if isinstance(p, CategoricalParam) and _needs_labels(p):
        return json.dumps(next(c for c in p.choices if same_choice(c, value)))
    return value


def from_optuna_value(p: Param, value: Any) -> Any:
    """The value of ``p`` that Optuna's ``value`` stands for."""
    if isinstance(p, CategoricalParam) and _needs_labels(p):
        return p.choices[optuna_choices(p).index(value)]
    return value
