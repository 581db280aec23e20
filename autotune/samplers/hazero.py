"""HAZero: CMA-ES through pycma, in the unit cube.

* The search starts at ``space.init_point()`` (the user's ``init`` values, the centre otherwise)
  with step size ``sigma0 = 0.1`` of every range: PaddleHub's HAZero value (0.2 in its [-1, 1] box).
  A larger first step (0.25, then 0.15) ranked worse on the BBOB benchmark in ``benchmarks/samplers.py``.
* Bounds ``[0, 1]`` go through pycma's ``bounds`` option (its default smooth boundary transform).
* The population size is the run's ``popsize`` (at least 2: CMA-ES learns from ranks).
* Failed trials are ranked worst (never scored as 0); a population in which every trial failed
  teaches nothing, so it is dropped and a new one is sampled from the unchanged distribution.
* When pycma stops (``tolx``, ``tolfun``, ``tolstagnation``, ... : the distribution collapsed), the
  strategy restarts from the best point found so far with ``sigma0`` and the same population size
  (a local restart; the population stays the run's so rounds stay aligned with the driver).  With
  ``max_restarts`` set, the run stops with a :class:`SamplerError` once they are spent.
* Randomness: pycma's ``seed`` option only seeds numpy's *global* generator (and treats seed 0 as
  "time"), which would make proposals depend on, and disturb, every other user of ``np.random``.
  The strategy is instead given its own seeded generator through pycma's ``randn`` option; it is
  pickled with the strategy, so ``state_dict`` resumes the exact stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SamplerError
from ..space import SearchSpace
from ._population import Population, worst_ranked
from .base import Observation, Sampler, pack_object, unpack_object

with warnings.catch_warnings():  # pycma warns at import when matplotlib is missing; plotting is not used
    warnings.simplefilter("ignore")
    import cma


class _Randn:
    """``randn(*shape)`` for pycma's ``randn`` option, drawing from a private, picklable generator."""

    def __init__(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


class HazeroSampler(Sampler):
    """CMA-ES (pycma) with local restarts; proposes and learns whole populations."""

    name = "hazero"
    needs_full_population = True

    def __init__(
        self,
        space: SearchSpace,
        popsize: int,
        seed: int | None = None,
        *,
        sigma0: float = 0.1,
        max_restarts: int | None = None,
    ) -> None:
        super().__init__(space, popsize, seed)
        if self.popsize < 2:
            raise SamplerError(f"hazero needs popsize >= 2 (CMA-ES learns from ranks within a population), but got {popsize}")
        if not 0 < float(sigma0) <= 1:
            raise SamplerError(f"hazero option sigma0 must be in (0, 1] (a fraction of the unit cube), but got {sigma0!r}")
        if max_restarts is not None and int(max_restarts) < 0:
            raise SamplerError(f"hazero option max_restarts must be >= 0 or None, but got {max_restarts!r}")
        self.sigma0 = float(sigma0)
        self.max_restarts = None if max_restarts is None else int(max_restarts)
        self._randn = _Randn(seed)  # seed None: fresh entropy, kept in state_dict like any other state
        self._es = self._new_strategy(space.init_point())
        self._population: Population | None = None
        self._best_x: list[float] | None = None
        self._best_f: float | None = None
        self.restarts = 0
        self.stop_reasons: list[str] = []

    def _new_strategy(self, x0: np.ndarray) -> Any:
        opts = {
            "popsize": self.popsize,
            "bounds": [0.0, 1.0],
            "randn": self._randn,
            "seed": float("nan"),  # randomness comes from randn; pycma must not reseed np.random
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,  # no outcmaes/ files
            "verb_time": False,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return cma.CMAEvolutionStrategy(np.asarray(x0, dtype=float).tolist(), self.sigma0, opts)

    # -- hooks --------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Sequence[float]]:
        if self._population is None:
            if self.max_restarts is not None and self.restarts > self.max_restarts:
                raise SamplerError(
                    f"hazero: CMA-ES has converged ({self.stop_reasons[-1]}) and its {self.max_restarts} "
                    f"restart(s) are spent; best loss so far: {self._best_f}"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                solutions = self._es.ask()
            self._population = Population(points=[np.asarray(x, dtype=float).tolist() for x in solutions])
        members = self._population.take(n, self._next_id, self.name)
        return [self._population.points[i] for i in members]

    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        population = self._population
        for _, ob in pairs:
            if population is None or ob.id not in population.ids:  # the base class checked the id
                raise SamplerError(f"hazero: candidate {ob.id} belongs to no open population")
            population.record(ob.id, None if ob.failed else ob.loss)
        if population is None or not population.complete:
            return
        self._population = None
        losses = population.ordered_losses()
        for x, f in zip(population.points, losses):
            if f is not None and (self._best_f is None or f < self._best_f):
                self._best_x, self._best_f = list(x), f
        if all(f is None for f in losses):
            return  # nothing to learn from; the next ask samples the unchanged distribution again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._es.tell([np.asarray(x) for x in population.points], worst_ranked(losses))
            stop = dict(self._es.stop())
        if stop:
            self.stop_reasons.append(", ".join(sorted(stop)))
            self.restarts += 1
            if self.max_restarts is None or self.restarts <= self.max_restarts:
                start = np.asarray(self._best_x if self._best_x is not None else self._es.mean, dtype=float)
                self._es = self._new_strategy(np.clip(start, 0.0, 1.0))

    def _state(self) -> dict[str, Any]:
        return {
            "es": pack_object((self._es, self._randn)),
            "population": None if self._population is None else self._population.to_state(),
            "best_x": self._best_x,
            "best_f": self._best_f,
            "restarts": self.restarts,
            "stop_reasons": list(self.stop_reasons),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._es, self._randn = unpack_object(state["es"])
        self._population = Population.from_state(state["population"])
        self._best_x = state["best_x"]
        self._best_f = state["best_f"]
        self.restarts = int(state["restarts"])
        self.stop_reasons = list(state["stop_reasons"])
