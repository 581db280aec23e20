"""HAZero: CMA-ES through pycma, in the unit cube.

* The search starts at ``space.init_point()`` (the user's ``init`` values, the centre otherwise)
  with step size ``sigma0 = 0.1`` of every range: PaddleHub's HAZero value (0.2 in its [-1, 1] box).
  A larger first step (0.25, then 0.15) ranked worse on the BBOB benchmark in ``benchmarks/samplers.py``.
* Bounds ``[0, 1]`` go through pycma's ``bounds`` option (its default smooth boundary transform).
* The population size is the run's ``popsize`` (at least 2: CMA-ES learns from ranks).
* Failed trials are ranked worst (never scored as 0); a population in which every trial failed
  teaches nothing, so it is dropped and a new one is sampled from the unchanged distribution.
* Pruned trials (stopped early by ``--early-stop``) rank below every completed trial and above every
  failure; among themselves, the one that ran more steps first, then the lower last report
  (:func:`~autotune.samplers._population.ranked_losses` turns that order into the values pycma ranks).
  They never become the best point a restart starts from.
* When pycma stops (``tolx``, ``tolfun``, ``tolstagnation``, ... : the distribution collapsed), the
  strategy restarts from the best point found so far with ``sigma0`` and the same population size
  (a local restart; the population stays the run's so rounds stay aligned with the driver).  With
  ``max_restarts`` set, the run stops with a :class:`SamplerError` once they are spent.
* Randomness: pycma's ``seed`` option only seeds numpy's *global* generator (and treats seed 0 as
  "time"), which would make proposals depend on, and disturb, every other user of ``np.random``.
  The strategy is instead given its own seeded generator through pycma's ``randn`` option; it is
  pickled with the strategy, so ``state_dict`` resumes the exact stream.

Asynchronous scheduling (``set_asynchronous(True)``): candidates are handed out one at a time from a
population asked from the *current* distribution (``es.ask()``; asked again when it runs out, so
more than ``popsize`` may be pending).  Results are collected in the order they arrive; every
``popsize`` results, whatever distribution they were sampled from, are told to pycma as one
generation.  A solution sampled before the last update (an older mean, step size or covariance, or a
strategy since restarted) is listed in ``tell``'s ``check_points``: pycma clips its Mahalanobis length
under the current distribution (``repair_genotype``), so one stale outlier cannot blow up the
evolution paths and the step-size adaptation stays sound.  (pycma keeps the genotypes of the latest
``30 * popsize`` sent solutions; an older one is mapped back through the bound transform's inverse
and repaired the same way.)  After every update the rest of the
population on hand is dropped and a new one asked at once, so proposals always come from the newest
distribution and pycma is always between an ``ask`` and a ``tell`` (it refuses two tells in a row).
Failures rank last, an all-failed batch is dropped, and restarts work as in rounds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SamplerError
from ..space import SearchSpace
from ._population import Population, load_outcome, ranked_losses
from .base import Outcome
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
        # asynchronous book-keeping: the rest of the population on hand (asked from generation
        # ``_generation``), pending candidates with the generation they were sampled from, and the
        # results not yet told (point, loss or None, generation)
        self._generation = 0
        self._on_hand: list[list[float]] = []
        self._flight: dict[int, tuple[list[float], int]] = {}
        self._done: list[tuple[list[float], Outcome, int]] = []
        self.repaired = 0  # stale solutions told with check_points, for inspection

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

    def _ask_population(self) -> list[list[float]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [np.asarray(x, dtype=float).tolist() for x in self._es.ask()]

    @property
    def _spent(self) -> bool:
        return self.max_restarts is not None and self.restarts > self.max_restarts

    def _check_not_spent(self) -> None:
        if self._spent:
            raise SamplerError(
                f"hazero: CMA-ES has converged ({self.stop_reasons[-1]}) and its {self.max_restarts} "
                f"restart(s) are spent; best loss so far: {self._best_f}"
            )

    def _note(self, x: list[float], f: Outcome) -> None:
        """The best completed point (a pruned trial's last report is not a score)."""
        if isinstance(f, float) and (self._best_f is None or f < self._best_f):
            self._best_x, self._best_f = list(x), f

    def _learn(self, points: list[list[float]], losses: list[Outcome], stale: list[int]) -> bool:
        """Tell one generation (``stale``: indices to repair); restart on a stop.  False if nothing was learnt."""
        for x, f in zip(points, losses):
            self._note(x, f)
        if all(f is None for f in losses):
            return False  # nothing to learn from; the next ask samples the unchanged distribution again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if stale:
                self._es.tell([np.asarray(x) for x in points], ranked_losses(losses), check_points=stale)
                self.repaired += len(stale)
            else:
                self._es.tell([np.asarray(x) for x in points], ranked_losses(losses))
            stop = dict(self._es.stop())
        if stop:
            self.stop_reasons.append(", ".join(sorted(stop)))
            self.restarts += 1
            if not self._spent:
                start = np.asarray(self._best_x if self._best_x is not None else self._es.mean, dtype=float)
                self._es = self._new_strategy(np.clip(start, 0.0, 1.0))
        return True

    # -- hooks --------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Sequence[float]]:
        if self._asynchronous:
            return self._propose_async(n)
        if self._population is None:
            self._check_not_spent()
            self._population = Population(points=self._ask_population())
        members = self._population.take(n, self._next_id, self.name)
        return [self._population.points[i] for i in members]

    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        if self._asynchronous:
            self._observe_async(pairs)
            return
        population = self._population
        for _, ob in pairs:
            if population is None or ob.id not in population.ids:  # the base class checked the id
                raise SamplerError(f"hazero: candidate {ob.id} belongs to no open population")
            population.record(ob.id, ob.outcome)
        if population is None or not population.complete:
            return
        self._population = None
        self._learn(population.points, population.ordered_losses(), [])

    # -- asynchronous scheduling ----------------------------------------------------------------
    def _propose_async(self, n: int) -> list[Sequence[float]]:
        self._check_not_spent()
        points = []
        for k in range(n):
            if not self._on_hand:
                self._on_hand = self._ask_population()
            x = self._on_hand.pop(0)
            self._flight[self._next_id + k] = (x, self._generation)
            points.append(x)
        return points

    def _observe_async(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        for _, ob in pairs:
            x, generation = self._flight.pop(ob.id)
            f = ob.outcome
            if self._spent:  # converged for good: a late result can still be the best
                self._note(x, f)
                continue
            self._done.append((x, f, generation))
            if len(self._done) < self.popsize:
                continue
            batch, self._done = self._done[: self.popsize], self._done[self.popsize :]
            stale = [k for k, (_, _, g) in enumerate(batch) if g != self._generation]
            if self._learn([x for x, _, _ in batch], [f for _, f, _ in batch], stale):
                self._generation += 1
                # pycma must be asked before its next tell; asking now also keeps proposals current
                self._on_hand = [] if self._spent else self._ask_population()

    def _become_asynchronous(self) -> None:
        """An open rounds population becomes pending candidates, told results and points on hand."""
        population, self._population = self._population, None
        if population is None:
            return
        for cid, member in population.ids.items():
            self._flight[cid] = (population.points[member], self._generation)
        for member, f in sorted(population.losses.items()):
            self._done.append((population.points[member], f, self._generation))
        self._on_hand = population.points[population.handed :]

    def _state(self) -> dict[str, Any]:
        return {
            "es": pack_object((self._es, self._randn)),
            "population": None if self._population is None else self._population.to_state(),
            "best_x": self._best_x,
            "best_f": self._best_f,
            "restarts": self.restarts,
            "stop_reasons": list(self.stop_reasons),
            "generation": self._generation,
            "on_hand": self._on_hand,
            "flight": {str(k): [x, g] for k, (x, g) in self._flight.items()},
            "done": [[x, f, g] for x, f, g in self._done],
            "repaired": self.repaired,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._es, self._randn = unpack_object(state["es"])
        self._population = Population.from_state(state["population"])
        self._best_x = state["best_x"]
        self._best_f = state["best_f"]
        self.restarts = int(state["restarts"])
        self.stop_reasons = list(state["stop_reasons"])
        self._generation = int(state.get("generation", 0))  # states from before asynchronous scheduling lack these
        self._on_hand = [list(map(float, x)) for x in state.get("on_hand", [])]
        self._flight = {int(k): (list(map(float, x)), int(g)) for k, (x, g) in state.get("flight", {}).items()}
        self._done = [(list(map(float, x)), load_outcome(f), int(g)) for x, f, g in state.get("done", [])]
        self.repaired = int(state.get("repaired", 0))
