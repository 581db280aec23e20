"""A parsed space file: the :class:`SearchSpace` plus the run settings the file carries beside it.

The settings (``trial``, ``metric``, ``mode``, ``budget``, ``fixed``, ``defaults``) are checked here,
once, with the file and key named; :class:`~autotune.settings.RunSettings` checks the finished
settings again after command-line flags and Python arguments have overridden them.  The ``defaults:``
keys and what each must be are listed only here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SearchSpaceError
from ..settings import MODES, PBT_EXPLOIT_RULES, PBT_EXPLORE_RULES, SCHEDULES
from .forms import TOP_KEYS, check_document, did_you_mean, kind, parse_params
from .params import is_number
from .space import SearchSpace


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: run settings a space file may preset under ``defaults:``, with what each must be (the run settings
#: check ranges again; here the file and key are named)
DEFAULT_KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "sampler": ("a sampler name (a string)", lambda v: isinstance(v, str)),
    "evaluator": ("an evaluator name (a string)", lambda v: isinstance(v, str)),
    "rounds": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "popsize": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "seed": ("an integer (or null)", lambda v: v is None or _is_int(v)),
    "cpus_per_trial": ("a number > 0", lambda v: is_number(v) and 0 < v < math.inf),
    "gpus_per_trial": ("a number >= 0", lambda v: is_number(v) and 0 <= v < math.inf),
    "trial_timeout": ("a number of seconds > 0 (or null)", lambda v: v is None or (is_number(v) and 0 < v < math.inf)),
    "time_budget": ("a number of seconds > 0 (or null)", lambda v: v is None or (is_number(v) and 0 < v < math.inf)),
    "keep_checkpoints": ("an integer >= 1 (or null, to keep all)", lambda v: v is None or (_is_int(v) and v >= 1)),
    "schedule": (" or ".join(map(repr, SCHEDULES)),
                 lambda v: isinstance(v, str) and v.strip().lower() in SCHEDULES),
    "sampler_options": ("a mapping of option: value",
                        lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v)),
    "early_stop": ("'none', 'asha' or 'median'",
                   lambda v: isinstance(v, str) and v.strip().lower() in ("none", "asha", "median")),
    "early_stop_options": ("a mapping of option: value",
                           lambda v: isinstance(v, Mapping) and all(isinstance(k, str) for k in v)),
    "pbt_explore": (" or ".join(map(repr, PBT_EXPLORE_RULES)),
                    lambda v: isinstance(v, str) and v.strip().lower() in PBT_EXPLORE_RULES),
    "pbt_exploit": (" or ".join(map(repr, PBT_EXPLOIT_RULES)),
                    lambda v: isinstance(v, str) and v.strip().lower() in PBT_EXPLOIT_RULES),
    "quantile_fraction": ("a number in (0, 0.5]", lambda v: is_number(v) and 0 < v <= 0.5),
}
DEFAULT_KEYS = tuple(DEFAULT_KINDS)

#: fixed values are small constants; this many scalars unfolded is plenty, and stops YAML alias bombs
MAX_FIXED_ITEMS = 100_000


@dataclass(frozen=True)
class SpaceFile:
    """What a space file says: the space to search and the run settings it presets (all optional).

    ``fixed`` values go to every trial beside the searched ones; ``defaults`` preset run settings that
    explicit arguments override.  Both are plain dicts that nobody should mutate.
    """

    space: SearchSpace
    trial: str | None = None
    metric: str | None = None
    mode: str | None = None
    budget: int | float | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str | None:
        """The file it was read from (None for a document built in Python)."""
        return self.space.source

    def __post_init__(self) -> None:
        if not isinstance(self.space, SearchSpace):
            raise SearchSpaceError(f"<space>: space must be a SearchSpace, but got {kind(self.space)}")
        where = self.source or "<space>"
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric.strip()):
            raise SearchSpaceError(f"{where}: metric must be a non-empty string, but got {self.metric!r}")
        if self.mode is not None and self.mode not in MODES:
            raise SearchSpaceError(f"{where}: mode must be one of: {', '.join(MODES)}; but got {self.mode!r}")
        if self.trial is not None and (not isinstance(self.trial, str) or not self.trial.strip()):
            raise SearchSpaceError(f"{where}: trial must be a non-empty string, but got {self.trial!r}")
        if self.budget is not None and (not is_number(self.budget) or not 0 < self.budget < math.inf):
            raise SearchSpaceError(f"{where}: budget must be a positive number, but got {self.budget!r}")
        for key in ("fixed", "defaults"):
            value = getattr(self, key)
            if not isinstance(value, Mapping):
                raise SearchSpaceError(f"{where}: {key} must be a mapping, but got {kind(value)} {value!r}")
        for key in self.fixed:
            if not isinstance(key, str):
                raise SearchSpaceError(f"{where}: fixed: key {key!r} must be a string")
            if key in self.space.names:
                raise SearchSpaceError(f"{where}: fixed: {key!r} is also a searched parameter; expected it in one place only")
            _check_plain(self.fixed[key], f"{where}: fixed: {key!r}")
        for key, value in self.defaults.items():
            if key not in DEFAULT_KINDS:
                raise SearchSpaceError(
                    f"{where}: defaults: unknown key {key!r}{did_you_mean(key, DEFAULT_KEYS)}; "
                    f"expected one of: {', '.join(sorted(DEFAULT_KEYS))}"
                )
            want, ok = DEFAULT_KINDS[key]
            if not ok(value):
                raise SearchSpaceError(f"{where}: defaults: {key} must be {want}, but got {value!r}")
        object.__setattr__(self, "fixed", dict(self.fixed))
        object.__setattr__(self, "defaults", dict(self.defaults))

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> SpaceFile:
        """Read a parsed document, native or PaddleHub form; a relative ``trial:`` path is taken from ``source``'s folder."""
        where = source or "<space>"
        doc = check_document(data, where, TOP_KEYS)
        params = parse_params(doc, where)
        for key in ("fixed", "defaults"):  # null means "none"
            value = doc.get(key)
            if value is not None and not isinstance(value, Mapping):
                raise SearchSpaceError(f"{where}: {key} must be a mapping, but got {kind(value)} {value!r}")
        mode = doc.get("mode")
        return cls(
            space=SearchSpace(params, source=source),
            trial=resolve_trial(doc.get("trial"), source),
            metric=doc.get("metric"),
            mode=mode.strip().lower() if isinstance(mode, str) else mode,
            budget=doc.get("budget"),
            fixed=dict(doc.get("fixed") or {}),
            defaults=dict(doc.get("defaults") or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The native form of the whole file; ``SpaceFile.from_dict(f.to_dict())`` equals ``f``.

        This is what a run records (and ``resume`` and the dashboard read back).
        """
        out: dict[str, Any] = {}
        for key in ("trial", "metric", "mode", "budget"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.fixed:
            out["fixed"] = dict(self.fixed)
        if self.defaults:
            out["defaults"] = dict(self.defaults)
        out.update(self.space.to_dict())
        return out


def resolve_trial(trial: Any, source: str | None) -> Any:
    """Make a trial file path absolute, relative to the space file; leave ``module.sub:function`` alone.

    A target is a path when its part before an optional ``:function`` contains ``/`` or ends in ``.py``.
    Anything but a non-empty string is returned as it is, for :class:`SpaceFile` to refuse.
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
