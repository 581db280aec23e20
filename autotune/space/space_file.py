"""A parsed space file: the :class:`SearchSpace` plus the run settings the file carries beside it.

The settings (``trial``, ``metric``, ``mode``, ``budget``, ``fixed``, ``defaults``) are checked here,
once, with the file and key named; :class:`~autotune.settings.RunSettings` checks the finished
settings again after command-line flags and Python arguments have overridden them.  Which keys
``defaults:`` takes and what each must be come from :mod:`autotune.schema`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AutotuneError, SearchSpaceError
from ..schema import BY_NAME, FILE_KEYS
from .forms import TOP_KEYS, check_document, did_you_mean, kind, parse_params
from .space import SearchSpace


#: run settings a space file may preset under ``defaults:`` (their rules are autotune.schema's)
DEFAULT_KEYS = FILE_KEYS

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
        for key in ("metric", "mode", "budget"):  # the top-level settings, normalised ("MAX" is max)
            if getattr(self, key) is not None:
                object.__setattr__(self, key, _check_setting(key, getattr(self, key), where))
        if self.trial is not None and (not isinstance(self.trial, str) or not self.trial.strip()):
            raise SearchSpaceError(f"{where}: trial must be a non-empty string, but got {self.trial!r}")
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
            if key not in DEFAULT_KEYS:
                raise SearchSpaceError(
                    f"{where}: defaults: unknown key {key!r}{did_you_mean(key, DEFAULT_KEYS)}; "
                    f"expected one of: {', '.join(sorted(DEFAULT_KEYS))}"
                )
            _check_setting(key, value, f"{where}: defaults")
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
        return cls(
            space=SearchSpace(params, source=source),
            trial=resolve_trial(doc.get("trial"), source),
            metric=doc.get("metric"),
            mode=doc.get("mode"),
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


def _check_setting(key: str, value: Any, where: str) -> Any:
    """A run setting in the file, checked by its declared rule; the message names the file and the key."""
    try:
        return BY_NAME[key].check(dict(value) if key.endswith("_options") and isinstance(value, Mapping) else value)
    except AutotuneError as e:
        raise SearchSpaceError(f"{where}: {e}") from None


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
