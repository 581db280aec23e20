"""Search spaces: parameter types, the unit-cube encoding, and space files (native and PaddleHub).

:class:`SearchSpace` holds only the parameters; :class:`SpaceFile` is a parsed file, the space plus
the run settings it carries.  The YAML loader is imported on first use, so code that only needs a
space (samplers, the driver) does not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .params import CategoricalParam, FloatParam, IntParam, Param
from .space import SearchSpace
from .space_file import SpaceFile

if TYPE_CHECKING:
    from .loader import load_space, load_space_file

__all__ = ["CategoricalParam", "FloatParam", "IntParam", "Param", "SearchSpace", "SpaceFile", "load_space",
           "load_space_file"]


def __getattr__(name: str) -> Any:
    if name in ("load_space", "load_space_file"):
        from . import loader

        return getattr(loader, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
