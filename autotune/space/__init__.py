"""Search spaces: parameter types, space files (native and PaddleHub) and the unit-cube encoding."""

from __future__ import annotations

from .loader import load_space
from .params import CategoricalParam, FloatParam, IntParam, Param
from .space import SearchSpace

__all__ = ["CategoricalParam", "FloatParam", "IntParam", "Param", "SearchSpace", "load_space"]
