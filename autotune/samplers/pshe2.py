"""PSHE2: particles moving by Hamiltonian-style dynamics, after PaddleHub's AutoDL Finetuner.

Each of ``popsize`` particles has a position ``x`` and a momentum ``p`` in the box ``[-1, 1]^dim``
(mapped linearly to the unit cube the base class works in).  After every round ``t = 1, 2, ...`` in
which all particles were evaluated, PaddleHub's rule is applied to each particle::

    p <- (1 - 3*alpha/t) * p - alpha * (x - personal_best) - alpha * (x - global_best)
    x <- x + alpha * p
    x <- x + (1 - x) * r * epsilon   if r >= 0     (r ~ U[-1, 1] per coordinate: the random kick,
    x <- x + (x + 1) * r * epsilon   otherwise      relative to the distance to the box's edge)

with ``alpha = 0.5`` and ``epsilon = 0.2`` by default.  The first particle starts at the ``init``
point; the others start at PaddleHub's random perturbation of it (epsilon 1: anywhere in the box,
half of them on each side of ``init`` per coordinate).

What autotune changes, and why:

1. Per-particle state.  PaddleHub built its per-particle lists as ``[[0] * n] * popsize`` so all
   particles shared one momentum row (and its global best aliased a particle's live position);
   here every particle owns its momentum and personal best, and bests are copies.
2. Bounds by reflection, not clipping.  A particle whose move leaves the box is reflected back in
   and the momentum component that crossed the wall is reversed (a bounce).  Clipping piles
   particles up on the faces of the box, where they stay.
3. Friction never negative.  ``1 - 3*alpha/t`` is negative in early rounds (t < 3*alpha), which
   would reverse the momentum; the factor is clamped at 0 (full friction) instead.
4. A kick that shrinks as the search converges.  ``epsilon`` is scaled by the square root of the
   population's current spread around the global best relative to its first measured spread (never
   below ``min_kick``, 0.1 by default), so late rounds refine instead of jumping around the optimum.
5. Failed trials never become bests: a particle without a finite personal best only feels the
   pull of the global best (and none at all while nothing has succeeded).  Pruned trials (stopped
   early by ``--early-stop``) rank below every completed trial, among themselves by steps run, then
   by last report (:func:`~autotune.samplers._population.outcome_key`): a pruned trial is a best only
   until a completed one beats it, which any completed one does.

Asynchronous scheduling (``set_asynchronous(True)``): particles do not wait for each other.  A
particle is idle or out on a trial; ``ask`` sends out the idle particle that has waited longest, at
its current position.  When its trial ends, that particle alone records its outcome and moves by the
rule above, with its own move count as ``t`` and the global best as it stands at that moment, and is
idle again.  When more candidates are asked than particles are idle (more slots than ``popsize``), a
*scout* is proposed: a relative kick of the global best (size ``epsilon`` times the current kick
scale, at least 0.02, the smallest default kick), or PaddleHub's initial scatter around ``init``
while nothing has succeeded.  Scouts are not particles: their outcome can only improve the global
best, which then pulls every particle; this uses spare slots to refine the best without growing the
swarm or disturbing any particle's dynamics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import SamplerError
from ..space import SearchSpace
from ._population import Population, better, load_outcome
from .base import Outcome
from .base import Observation, Sampler

SCOUT = -1
#: the smallest kick a scout gets: ``epsilon * min_kick`` of the default settings (0.2 * 0.1)
SCOUT_FLOOR = 0.02


def reflect(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``x`` into ``[-1, 1]`` by mirror reflection; also return where an odd number of walls was crossed."""
    y = np.mod(x + 1.0, 4.0)
    flipped = y > 2.0
    return np.where(flipped, 4.0 - y, y) - 1.0, flipped


def relative_kick(x: np.ndarray, r: np.ndarray, size: float) -> np.ndarray:
    """PaddleHub's perturbation: move each coordinate a fraction ``r * size`` of its way to the box's edge."""
    return np.where(r >= 0, x + (1.0 - x) * r * size, x + (x + 1.0) * r * size)


class PSHE2Sampler(Sampler):
    """Hamiltonian-style particle swarm (see the module docstring); proposes and learns whole populations."""

    name = "pshe2"
    needs_full_population = True

    def __init__(
        self,
        space: SearchSpace,
        popsize: int,
        seed: int | None = None,
        *,
        alpha: float = 0.5,
        epsilon: float = 0.2,
        min_kick: float = 0.1,
    ) -> None:
        super().__init__(space, popsize, seed)
        if self.popsize < 1:
            raise SamplerError(f"pshe2 needs popsize >= 1, but got {popsize}")
        for key, value, zero_ok in (("alpha", alpha, False), ("epsilon", epsilon, True), ("min_kick", min_kick, True)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not (0.0 <= value <= 1.0 if zero_ok else 0.0 < value <= 1.0):
                bound = "[0, 1]" if zero_ok else "(0, 1]"
                raise SamplerError(f"pshe2 option {key} must be a number in {bound}, but got {value!r}")
        self.alpha, self.epsilon, self.min_kick = float(alpha), float(epsilon), float(min_kick)
        self._rng = np.random.default_rng(seed)
        dim = space.dim
        start = 2.0 * space.init_point() - 1.0
        self.x = np.tile(start, (self.popsize, 1))
        if self.popsize > 1:
            r = self._rng.uniform(-1.0, 1.0, size=(self.popsize - 1, dim))
            self.x[1:] = relative_kick(self.x[1:], r, 1.0)
        self.p = np.zeros((self.popsize, dim))
        self.best_x = np.zeros((self.popsize, dim))
        self.best_f: list[Outcome] = [None] * self.popsize  # completed loss, or [steps, last] if pruned
        self.global_x: np.ndarray | None = None
        self.global_f: Outcome = None
        self.t = 0
        self._spread0: float | None = None
        self._population: Population | None = None
        # asynchronous book-keeping: moves made per particle, idle particles (longest waiting first)
        # and pending candidates' particles (SCOUT for a scout)
        self._moves = [0] * self.popsize
        self._idle = list(range(self.popsize))
        self._out: dict[int, int] = {}

    # -- dynamics -----------------------------------------------------------------------------
    def _step(self, losses: list[Outcome]) -> None:
        """One round of the rule above, after every particle's outcome is known."""
        for i, f in enumerate(losses):
            if better(f, self.best_f[i]):
                self.best_x[i], self.best_f[i] = self.x[i].copy(), f
            if better(f, self.global_f):
                self.global_x, self.global_f = self.x[i].copy(), f
        self.t += 1
        a = self.alpha
        decay = max(0.0, 1.0 - 3.0 * a / self.t)
        pull = np.zeros_like(self.x)
        has_best = np.array([f is not None for f in self.best_f])
        pull[has_best] += self.x[has_best] - self.best_x[has_best]
        if self.global_x is not None:
            pull += self.x - self.global_x
        self.p = decay * self.p - a * pull
        self.x, flipped = reflect(self.x + a * self.p)
        self.p = np.where(flipped, -self.p, self.p)
        r = self._rng.uniform(-1.0, 1.0, size=self.x.shape)
        self.x = relative_kick(self.x, r, self.epsilon * self._kick_scale())

    def _note(self, i: int, x: np.ndarray, f: Outcome) -> None:
        """Record an outcome at ``x``: particle ``i``'s personal best (not for a scout) and the global best."""
        if i != SCOUT and better(f, self.best_f[i]):
            self.best_x[i], self.best_f[i] = x.copy(), f
        if better(f, self.global_f):
            self.global_x, self.global_f = x.copy(), f

    def _move(self, i: int) -> None:
        """The rule above for particle ``i`` alone, with its own move count as ``t`` (asynchronous)."""
        self._moves[i] += 1
        a = self.alpha
        decay = max(0.0, 1.0 - 3.0 * a / self._moves[i])
        pull = np.zeros(self.x.shape[1])
        if self.best_f[i] is not None:
            pull += self.x[i] - self.best_x[i]
        if self.global_x is not None:
            pull += self.x[i] - self.global_x
        p = decay * self.p[i] - a * pull
        x, flipped = reflect(self.x[i] + a * p)
        self.p[i] = np.where(flipped, -p, p)
        self.x[i] = x
        r = self._rng.uniform(-1.0, 1.0, size=x.shape)
        self.x[i] = relative_kick(x, r, self.epsilon * self._kick_scale())

    def _scout(self) -> np.ndarray:
        """A point for a slot no idle particle can fill: a kick of the global best (see the module docstring)."""
        r = self._rng.uniform(-1.0, 1.0, size=self.x.shape[1])
        if self.global_x is None:
            return relative_kick(2.0 * self.space.init_point() - 1.0, r, 1.0)
        return relative_kick(self.global_x, r, max(SCOUT_FLOOR, self.epsilon * self._kick_scale()))

    def _kick_scale(self) -> float:
        """sqrt(spread around the global best / first spread measured), in [min_kick, 1].

        The square root keeps enough exploration for short budgets (a linear ratio shrank the kick
        so fast that 8 rounds of 6 did little better than random) while still refining late.
        """
        if self.global_x is None:
            return 1.0
        spread = float(np.mean(np.linalg.norm(self.x - self.global_x, axis=1))) / math.sqrt(self.x.shape[1])
        if self._spread0 is None:
            if spread <= 0.0:
                return 1.0
            self._spread0 = spread
        return min(1.0, max(self.min_kick, math.sqrt(spread / self._spread0)))

    # -- hooks --------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Sequence[float]]:
        if self._asynchronous:
            points = []
            for k in range(n):
                i = self._idle.pop(0) if self._idle else SCOUT
                self._out[self._next_id + k] = i
                points.append(((self._scout() if i == SCOUT else self.x[i]) + 1.0) / 2.0)
            return points
        if self._population is None:
            self._population = Population(points=((self.x + 1.0) / 2.0).tolist())
        members = self._population.take(n, self._next_id, self.name)
        return [self._population.points[i] for i in members]

    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        if self._asynchronous:
            for point, ob in pairs:
                i = self._out.pop(ob.id)
                x = 2.0 * np.asarray(point, dtype=float) - 1.0 if i == SCOUT else self.x[i]
                self._note(i, x, ob.outcome)
                if i != SCOUT:
                    self._move(i)
                    self._idle.append(i)
            return
        population = self._population
        for _, ob in pairs:
            if population is None or ob.id not in population.ids:
                raise SamplerError(f"pshe2: candidate {ob.id} belongs to no open population")
            population.record(ob.id, ob.outcome)
        if population is not None and population.complete:
            self._population = None
            self._step(population.ordered_losses())

    def _become_asynchronous(self) -> None:
        """Particles of an open rounds population that were told move now; the others stay out or idle."""
        self._moves = [self.t] * self.popsize
        population, self._population = self._population, None
        if population is None:
            return
        self._out = dict(population.ids)
        told = sorted(population.losses)
        self._idle = list(range(population.handed, len(population.points)))
        for i in told:
            self._note(i, self.x[i], population.losses[i])
            self._move(i)
            self._idle.append(i)

    def _state(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "x": self.x.tolist(),
            "p": self.p.tolist(),
            "best_x": self.best_x.tolist(),
            "best_f": list(self.best_f),
            "global_x": None if self.global_x is None else self.global_x.tolist(),
            "global_f": self.global_f,
            "t": self.t,
            "spread0": self._spread0,
            "population": None if self._population is None else self._population.to_state(),
            "moves": list(self._moves),
            "idle": list(self._idle),
            "out": {str(k): i for k, i in self._out.items()},
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self.x = np.array(state["x"], dtype=float).reshape(self.popsize, self.space.dim)
        self.p = np.array(state["p"], dtype=float).reshape(self.popsize, self.space.dim)
        self.best_x = np.array(state["best_x"], dtype=float).reshape(self.popsize, self.space.dim)
        self.best_f = [load_outcome(f) for f in state["best_f"]]
        self.global_x = None if state["global_x"] is None else np.array(state["global_x"], dtype=float)
        self.global_f = load_outcome(state["global_f"])
        self.t = int(state["t"])
        self._spread0 = state["spread0"]
        self._population = Population.from_state(state["population"])
        self._moves = [int(m) for m in state.get("moves", [self.t] * self.popsize)]  # absent before async
        self._idle = [int(i) for i in state.get("idle", range(self.popsize))]
        self._out = {int(k): int(i) for k, i in state.get("out", {}).items()}
