"""Random search: uniform points of the unit cube, the baseline every benchmark compares against.

It learns nothing, so asynchronous scheduling changes nothing: ``ask(1)`` draws one more point.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..space import SearchSpace
from .base import Observation, Sampler


class RandomSampler(Sampler):
    """Uniform in ``[0, 1]^dim`` from a seeded numpy Generator; outcomes are ignored."""

    name = "random"

    def __init__(self, space: SearchSpace, popsize: int, seed: int | None = None) -> None:
        super().__init__(space, popsize, seed)
        self._rng = np.random.default_rng(seed)

    def _propose(self, n: int) -> list[Sequence[float]]:
        return self._rng.random((n, self.space.dim)).tolist()

    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        """Random search learns nothing."""

    def _state(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
