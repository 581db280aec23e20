"""The search space: the parameters to search plus what a space file says about the run.

A :class:`SearchSpace` is immutable in practice (a frozen dataclass; ``fixed`` and ``defaults`` are
plain dicts that nobody should mutate).  Conversion to and from the unit cube is delegated to
:mod:`autotune.space.encoding`, the only place where values are encoded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution

from ..errors import SearchSpaceError
from . import encoding
from .params import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    is_integer,
    is_number,
    same_choice,
)

#: run settings a space file may preset under ``defaults:``, with what each must be (the run settings
#: check ranges again; here the file and key are named)
DEFAULT_KEYS = (
    "sampler", "evaluator", "rounds", "popsize", "seed", "cpus_per_trial", "gpus_per_trial", "trial_timeout",
    "keep_checkpoints", "sampler_options", "schedule",
)
_DEFAULT_KINDS: dict[str, tuple[str, Any]] = {
    "sampler": ("a sampler name (a string)", lambda v: isinstance(v, str)),
    "evaluator": ("an evaluator name (a string)", lambda v: isinstance(v, str)),
    "rounds": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "popsize": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "seed": ("an integer (or null)", lambda v: v is None or _is_int(v)),
    "cpus_per_trial": ("a number > 0", lambda v: is_number(v) and 0 < v < math.inf),
    "gpus_per_trial": ("a number >= 0", lambda v: is_number(v) and 0 <= v < math.inf),
    "trial_timeout": ("a number of seconds > 0 (or null)", lambda v: v is None or (is_number(v) and 0 < v < math.inf)),
    "keep_checkpoints": ("an integer >= 1 (or null, to keep all)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "schedule": ("'async' or 'rounds'", lambda v: isinstance(v, str) and v.strip().lower() in ("async", "rounds")),
    "sampler_options": ("a mapping of option: value", lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v)),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
MODES = ("min", "max")


@dataclass(frozen=True)
class SearchSpace:
    """The parameters to search (one unit-cube dimension each) and the run's optional metadata."""

    params: tuple[Param, ...]
    metric: str | None = None
    mode: str | None = None
    trial: str | None = None
    budget: int | float | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = self.source or "<space>"
        params = tuple(self.params) if isinstance(self.params, (list, tuple)) else None
        if params is None or not all(isinstance(p, (FloatParam, IntParam, CategoricalParam)) for p in params):
            raise SearchSpaceError(f"{where}: params must be a sequence of FloatParam, IntParam or CategoricalParam")
        if not params:
            raise SearchSpaceError(f"{where}: no parameters to search; expected at least one parameter")
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise SearchSpaceError(f"{where}: parameter {p.name!r}: duplicate name; expected unique parameter names")
            seen.add(p.name)
        object.__setattr__(self, "params", params)
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric.strip()):
            raise SearchSpaceError(f"{where}: metric must be a non-empty string, but got {self.metric!r}")
        if self.mode is not None and self.mode not in MODES:
            raise SearchSpaceError(f"{where}: mode must be one of: min, max; but got {self.mode!r}")
        if self.trial is not None and (not isinstance(self.trial, str) or not self.trial.strip()):
            raise SearchSpaceError(f"{where}: trial must be a non-empty string, but got {self.trial!r}")
        if self.budget is not None and (not is_number(self.budget) or not 0 < self.budget < math.inf):
            raise SearchSpaceError(f"{where}: budget must be a positive number, but got {self.budget!r}")
        if not isinstance(self.fixed, Mapping):
            raise SearchSpaceError(f"{where}: fixed must be a mapping of name: value, but got {self.fixed!r}")
        if not isinstance(self.defaults, Mapping):
            raise SearchSpaceError(f"{where}: defaults must be a mapping, but got {self.defaults!r}")
        for key in self.fixed:
            if not isinstance(key, str):
                raise SearchSpaceError(f"{where}: fixed: key {key!r} must be a string")
            if key in seen:
                raise SearchSpaceError(f"{where}: fixed: {key!r} is also a searched parameter; expected it in one place only")
            _check_plain(self.fixed[key], f"{where}: fixed: {key!r}")
        for key in self.defaults:
            if key not in DEFAULT_KEYS:
                from .loader import (
                    did_you_mean,  # local import: loader imports this module
                )

                raise SearchSpaceError(
                    f"{where}: defaults: unknown key {key!r}{did_you_mean(key, DEFAULT_KEYS)}; "
                    f"expected one of: {', '.join(sorted(DEFAULT_KEYS))}"
                )
            want, ok = _DEFAULT_KINDS[key]
            if not ok(self.defaults[key]):
                raise SearchSpaceError(f"{where}: defaults: {key} must be {want}, but got {self.defaults[key]!r}")
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "defaults", dict(self.defaults))

    # -- shape --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Number of unit-cube dimensions: one per parameter (a categorical takes one, cut into cells)."""
        return len(self.params)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # -- conversion ---------------------------------------------------------------------------
    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a config against the space; return it normalised to plain Python values, in order."""
        where = self.source or "<space>"
        if not isinstance(config, Mapping):
            raise SearchSpaceError(f"{where}: a config must be a mapping of parameter: value, but got {config!r}")
        for key in config:
            if key not in self.names:
                raise SearchSpaceError(
                    f"{where}: config key {key!r} is not a parameter of this space; expected: {', '.join(self.names)}"
                )
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name not in config:
                raise SearchSpaceError(f"{where}: parameter {p.name!r}: missing from the config")
            out[p.name] = _check_value(p, config[p.name], where)
        return out

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """The unit-cube point of a valid config (validated first)."""
        valid = self.validate_config(config)
        return np.array([encoding.encode_value(p, valid[p.name]) for p in self.params], dtype=float)

    def decode(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The config at a point of ``[0, 1]^dim``; coordinates outside are clipped, NaN is refused."""
        arr = np.asarray(u, dtype=float)
        if arr.shape != (self.dim,):
            raise SearchSpaceError(f"{self.source or '<space>'}: a point must have shape ({self.dim},), but got {arr.shape}")
        if np.isnan(arr).any():
            raise SearchSpaceError(f"{self.source or '<space>'}: cannot decode a point with NaN coordinates: {arr.tolist()}")
        return {p.name: encoding.decode_value(p, x) for p, x in zip(self.params, arr.tolist())}

    def init_point(self) -> np.ndarray:
        """The encoded init values; a parameter without init sits at the centre (0.5) of its range."""
        return np.array([encoding.init_coordinate(p) for p in self.params], dtype=float)

    def init_config(self) -> dict[str, Any]:
        """The init values, with the decoded centre for parameters that have none."""
        centre = self.decode(self.init_point())
        return {p.name: (p.init if p.init is not None else centre[p.name]) for p in self.params}

    def to_optuna_distributions(self) -> dict[str, BaseDistribution]:
        return {p.name: encoding.to_distribution(p) for p in self.params}

    def to_optuna_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A config's searched values in Optuna's terms (for the results database and Optuna samplers)."""
        return {p.name: encoding.to_optuna_value(p, config[p.name]) for p in self.params if p.name in config}

    def from_optuna_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`to_optuna_params`."""
        return {p.name: encoding.from_optuna_value(p, params[p.name]) for p in self.params if p.name in params}

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The native YAML form; ``SearchSpace.from_dict(space.to_dict())`` equals ``space``."""
        out: dict[str, Any] = {}
        for key in ("trial", "metric", "mode", "budget"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        if self.defaults:
            out["defaults"] = dict(self.defaults)
        out["params"] = {p.name: _param_to_dict(p) for p in self.params}
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> SearchSpace:
        """Build a space from a parsed document, native or PaddleHub form (see :mod:`.loader`)."""
        from .loader import parse_space  # local import: loader imports this module

        return parse_space(data, source)


def _param_to_dict(p: Param) -> dict[str, Any]:
    if isinstance(p, FloatParam):
        d: dict[str, Any] = {"type": "float", "low": p.low, "high": p.high, "log": p.log}
    elif isinstance(p, IntParam):
        d = {"type": "int", "low": p.low, "high": p.high, "log": p.log, "step": p.step}
    else:
        d = {"type": "categorical", "choices": list(p.choices)}
    if p.init is not None:
        d["init"] = p.init
    return d


def _check_value(p: Param, value: Any, where: str) -> Any:
    """Validate one value of ``p``; return it as a plain Python object."""
    if isinstance(p, FloatParam):
        if not is_number(value) or not math.isfinite(float(value)):
            raise SearchSpaceError(f"{where}: parameter {p.name!r}: expected a finite number, but got {value!r}")
        if not p.low <= float(value) <= p.high:
            raise SearchSpaceError(f"{where}: parameter {p.name!r}: {value!r} is outside the bounds [{p.low!r}, {p.high!r}]")
        return float(value)
    if isinstance(p, IntParam):
        if not is_integer(value):
            raise SearchSpaceError(f"{where}: parameter {p.name!r}: expected an integer, but got {value!r}")
        k = int(value)
        if not p.low <= k <= p.high or (k - p.low) % p.step:
            raise SearchSpaceError(
                f"{where}: parameter {p.name!r}: {value!r} is not one of {p.low}, {p.low + p.step}, ..., {p.high}"
            )
        return k
    for c in p.choices:
        if same_choice(c, value):
            return c
    raise SearchSpaceError(f"{where}: parameter {p.name!r}: {value!r} is not one of the choices {list(p.choices)!r}")


#: fixed values are small constants; this many scalars unfolded is plenty, and stops YAML alias bombs
MAX_FIXED_ITEMS = 100_000


def _check_plain(value: Any, where: str, inside: tuple[int, ...] = (), sizes: dict[int, int] | None = None) -> int:
    """Check that a fixed value is plain data (YAML scalars, lists and mappings); return its unfolded size.

    Fixed values travel to every trial and into the results database.  YAML aliases can share a
    container (sized once, counted at every use) or nest one in itself (refused).
    """
    if isinstance(value, (str, bool, int, float, type(None))):
        return 1
    sizes = {} if sizes is None else sizes
    if id(value) in inside:
        raise SearchSpaceError(f"{where}: a value contains itself (a recursive YAML alias); expected plain data")
    if id(value) in sizes:
        return sizes[id(value)]
    if isinstance(value, (list, tuple)):
        children = list(value)
    elif isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):
                raise SearchSpaceError(f"{where}: mapping key {k!r} must be a string")
        children = list(value.values())
    else:
        raise SearchSpaceError(f"{where}: {value!r} is a {type(value).__name__}; expected a YAML scalar, list or mapping")
    total = 1 + sum(_check_plain(v, where, (*inside, id(value)), sizes) for v in children)
    if total > MAX_FIXED_ITEMS:
        raise SearchSpaceError(f"{where}: the value unfolds to more than {MAX_FIXED_ITEMS} items; expected small constants")
    sizes[id(value)] = total
    return total
