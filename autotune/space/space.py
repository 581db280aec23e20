"""The search space: the parameters to search and their unit-cube encoding, nothing about the run.

A :class:`SearchSpace` is immutable (a frozen dataclass over immutable parameters); what a space file
says about the run (trial, metric, fixed values, defaults) lives beside it, in
:class:`~autotune.space.space_file.SpaceFile`.  Conversion to and from the unit cube is delegated to
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
from .forms import PARAM_KEYS, SETTING_KEYS, check_document, param_to_dict, parse_params
from .params import (
    CategoricalParam,
    FloatParam,
    IntParam,
    Param,
    is_integer,
    is_number,
    same_choice,
)


@dataclass(frozen=True)
class SearchSpace:
    """The parameters to search, one unit-cube dimension each; ``source`` names them in errors."""

    params: tuple[Param, ...]
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
        """The native form, ``{"params": {...}}``; ``SearchSpace.from_dict(space.to_dict())`` equals ``space``."""
        return {"params": {p.name: param_to_dict(p) for p in self.params}}

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> SearchSpace:
        """The space of a document that holds only parameters (``params:`` or PaddleHub's ``param_list:``).

        A whole space file, run settings included, is read by :meth:`SpaceFile.from_dict
        <autotune.space.space_file.SpaceFile.from_dict>`; its settings are refused here rather than dropped.
        """
        where = source or "<space>"
        if isinstance(data, Mapping):
            settings = [key for key in data if key in SETTING_KEYS]
            if settings:
                raise SearchSpaceError(
                    f"{where}: {', '.join(map(repr, settings))} {'is a run setting' if len(settings) == 1 else 'are run settings'}, "
                    "not part of a SearchSpace; read a whole space file with SpaceFile.from_dict (or load_space_file)"
                )
        return cls(parse_params(check_document(data, where, PARAM_KEYS), where), source=source)


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
