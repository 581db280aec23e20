"""PSHE3: particles following Hamiltonian dynamics on a learnt potential (what PSHE2 promised).

The potential is a Gaussian-process surrogate of the loss, refitted on every finished trial:
``U(x) = mean(x) - kappa * std(x)``, the lower confidence bound, in standardised units.  An ensemble
of particles explores it by Hamiltonian Monte Carlo on ``exp(-U / T)``: each sweep resamples every
particle's momentum, integrates ``leapfrog`` steps with the leapfrog scheme (mass matrix scaled to the
GP's length scales; the cube's walls reflect), and accepts or rejects the trajectory by Metropolis.
The temperature ``T`` is annealed from 1 to 1e-3 over ``sweeps`` sweeps, so the ensemble first spreads
over every low-potential basin and then settles into them.  Categorical coordinates are discrete: the
leapfrog holds them fixed and a Metropolis move per sweep tries another choice.

A batch is picked from the states the ensemble visited, greedily by potential, with each pick entered
into the GP as a fantasy observation at its posterior mean (a kriging believer): the fantasy removes
the uncertainty around the pick, so the next pick's bound is only low elsewhere, and a minimum gap
rules out near-duplicates.  Proposals not yet told (``self._pending``: other trials still running
under asynchronous scheduling) enter the same way before the dynamics start.

Why these choices:

* GP with Matern-5/2 and ARD length scales: the standard surrogate at a few dozen trials; its posterior
  mean and uncertainty are smooth, so the potential has the gradients the leapfrog needs (autograd).
* Losses are transformed by ``log1p((y - min) / (median - min))`` before standardising: quadratic near
  the best trials, logarithmic in the tail, so one terrible trial does not flatten the model.
* Failed trials (``None``, NaN, inf) are imputed one standard deviation above the worst finite loss:
  the model steers away from them without treating them as data of the right scale.  Pruned trials
  (stopped early by ``--early-stop``) rank below every completed trial and above every failure, in the
  order of :func:`~autotune.samplers._population.outcome_key` (more steps run first, then the lower
  last report): the ``m`` of them are imputed evenly between the worst completed and the failures
  (``worst + (k + 1) / (2 (m + 1))`` by rank ``k``, in standardised units).  They count towards the
  ``n_startup`` design like completed trials, so a search that prunes most trials still gets its model
  early; while no trial has completed, the model is fitted to the pruned trials' ranks alone.
* Integers are a continuous coordinate during the dynamics and snapped to their cell's canonical point
  when proposed (so the model sees exactly what was evaluated); categoricals get a mismatch kernel.
* The first ``n_startup`` trials are the ``init`` point and scrambled Sobol points.

``spread`` raises kappa along a batch, from ``kappa`` for the first pick to ``kappa * (1 + spread)``
for the last (0 by default: on BBOB at 10 x 5, ``spread=1`` halved the regret on one mixed problem
and raised it on the other).

Options for ablations: ``moves="optimise"`` replaces the dynamics by random-restart L-BFGS-B on the
same potential (the surrogate alone); ``batch="independent"`` takes the lowest-potential states
without fantasies (no batch ensemble).  State is plain JSON: observations, the generator state, the
last hyper-parameters (warm start) and the ensemble's positions.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.optimize
import torch
from scipy.stats import qmc

from ..errors import SamplerError
from ..space import CategoricalParam, FloatParam, SearchSpace
from ..space.encoding import decode_value, encode_value
from . import _gp
from ._population import imputed, load_outcome
from .base import Observation, Outcome, Sampler

T_HIGH, T_LOW = 1.0, 1e-3


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch and BLAS on one thread: the matrices are small (a few hundred rows), and on a busy
    2-core machine a second thread made each proposal 5-9 times slower."""
    before = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_limits
        limits: Any = threadpool_limits(limits=1)
    except ImportError:  # an optional speed-up: scikit-learn brings it, autotune does not require it
        limits = contextlib.nullcontext()
    torch.set_num_threads(1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def _check(name: str, value: Any, ok: bool, want: str) -> None:
    if not ok:
        raise SamplerError(f"pshe3 option {name} must be {want}, but got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def reflect01(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``x`` into ``[0, 1]`` by mirror reflection; also where an odd number of walls was crossed."""
    y = torch.remainder(x, 2.0)
    flipped = y > 1.0
    return torch.where(flipped, 2.0 - y, y), flipped


class PSHE3Sampler(Sampler):
    """Hamiltonian Monte Carlo particles on a Gaussian-process lower confidence bound (module docstring)."""

    name = "pshe3"

    def __init__(
        self,
        space: SearchSpace,
        popsize: int,
        seed: int | None = None,
        *,
        kappa: float = 1.0,
        spread: float = 0.0,
        particles: int = 32,
        sweeps: int = 24,
        leapfrog: int = 8,
        n_startup: int = 4,
        min_gap: float = 0.01,
        moves: str = "hmc",
        batch: str = "fantasy",
    ) -> None:
        super().__init__(space, popsize, seed)
        _check("kappa", kappa, _is_num(kappa) and kappa >= 0, "a number >= 0")
        for key, value, low in (("particles", particles, 2), ("sweeps", sweeps, 2), ("leapfrog", leapfrog, 1),
                                ("n_startup", n_startup, 1)):
            _check(key, value, _is_int(value) and value >= low, f"an integer >= {low}")
        _check("spread", spread, _is_num(spread) and spread >= 0, "a number >= 0")
        _check("min_gap", min_gap, _is_num(min_gap) and 0 <= min_gap < 1, "a number in [0, 1)")
        _check("moves", moves, moves in ("hmc", "optimise"), "'hmc' or 'optimise'")
        _check("batch", batch, batch in ("fantasy", "independent"), "'fantasy' or 'independent'")
        self.spread = float(spread)
        self.kappa, self.n_particles, self.sweeps, self.leapfrog = float(kappa), particles, sweeps, leapfrog
        self.n_startup, self.min_gap, self.moves, self.batch = n_startup, float(min_gap), moves, batch
        self._cont = [i for i, p in enumerate(space.params) if not isinstance(p, CategoricalParam)]
        self._cat = [i for i, p in enumerate(space.params) if isinstance(p, CategoricalParam)]
        self._choices = [len(space.params[i].choices) for i in self._cat]  # type: ignore[union-attr]
        self._rng = np.random.default_rng(seed)
        self._sobol_seed = int(self._rng.integers(2**31))
        self._observed: list[tuple[list[float], Outcome]] = []
        self._ids: list[int] = []  # candidate id of each observation, ascending
        self._design = 0  # design points handed out so far
        self._theta: list[float] | None = None
        self._ensemble: list[list[float]] = []

    # -- coordinates ------------------------------------------------------------------------------
    def _snap(self, points: np.ndarray) -> np.ndarray:
        """Move integer and categorical coordinates to the canonical point of their value."""
        out = np.clip(np.asarray(points, dtype=float), 0.0, 1.0).copy()
        for j, p in enumerate(self.space.params):
            if not isinstance(p, FloatParam):
                col = out[:, j]
                cache = {u: encode_value(p, decode_value(p, u)) for u in np.unique(col).tolist()}
                out[:, j] = [cache[u] for u in col.tolist()]
        return out

    def _split(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(continuous coordinates, category indices) of cube points."""
        cont = points[:, self._cont]
        cats = np.zeros((points.shape[0], len(self._cat)), dtype=np.int64)
        for k, (j, m) in enumerate(zip(self._cat, self._choices)):
            cats[:, k] = np.minimum((points[:, j] * m).astype(np.int64), m - 1)
        return cont, cats

    def _join(self, cont: np.ndarray, cats: np.ndarray) -> np.ndarray:
        out = np.zeros((cont.shape[0], self.space.dim))
        out[:, self._cont] = cont
        for k, (j, m) in enumerate(zip(self._cat, self._choices)):
            out[:, j] = (cats[:, k] + 0.5) / m
        return out

    # -- the model --------------------------------------------------------------------------------
    def _targets(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Observed points and standardised, transformed losses; pruned and failed trials imputed above
        the worst completed one (see the module docstring)."""
        outcomes = [f for _, f in self._observed]
        ok = [f for f in outcomes if isinstance(f, float)]
        if sum(f is not None for f in outcomes) < self.n_startup:
            return None
        if ok:
            y = np.asarray(ok, dtype=float)
            lo = float(y.min())
            scale = float(np.median(y)) - lo
            if not scale > 0:
                scale = float(y.max()) - lo
            t = np.log1p((y - lo) / scale) if scale > 0 else np.zeros_like(y)
            sd = float(t.std())
            z = (t - t.mean()) / (sd if sd > 0 else 1.0)
            worst = float(z.max())
        else:
            z, worst = np.zeros(0), 0.0
        value = imputed(outcomes, worst, 1.0)
        it = iter(z.tolist())
        targets = np.array([value[i] if i in value else next(it) for i in range(len(outcomes))])
        if not ok:
            targets = targets - targets.mean()
        points = np.array([p for p, _ in self._observed], dtype=float)
        return points, targets

    def _fit(self, points: np.ndarray, targets: np.ndarray) -> _gp.GP:
        cont, cats = self._split(points)
        starts = [_gp.default_theta(self.space.dim)]
        if self._theta is not None:
            starts.insert(0, np.asarray(self._theta, dtype=float))
        gp = _gp.fit(cont, cats, targets, len(self._cont), starts)
        self._theta = [float(v) for v in gp.theta]
        if self._pending:  # proposals still running: fantasised at the posterior mean
            pc, pk = self._split(np.array(list(self._pending.values()), dtype=float))
            xp, cp = torch.as_tensor(pc), torch.as_tensor(pk)
            with torch.no_grad():
                mean, _ = gp.predict(xp, cp)
            gp = gp.condition(xp, cp, mean)
        return gp

    def _potential(self, gp: _gp.GP, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        mean, var = gp.predict(x, c)
        return mean - self.kappa * torch.sqrt(var)

    # -- proposals --------------------------------------------------------------------------------
    def _propose(self, n: int) -> list[Sequence[float]]:
        data = self._targets()
        if data is None:
            return self._design_points(n).tolist()
        with one_thread():
            return self._model_points(n, data)

    def _model_points(self, n: int, data: tuple[np.ndarray, np.ndarray]) -> list[Sequence[float]]:
        gp = self._fit(*data)
        if self.moves == "hmc":
            pool = self._hmc(gp, n)
        else:
            pool = self._optimise(gp, n)
        return self._select(gp, pool, n, data[0]).tolist()

    def _design_points(self, n: int) -> np.ndarray:
        """The init point, then scrambled Sobol points, continuing across calls."""
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sobol = qmc.Sobol(self.space.dim, scramble=True, seed=self._sobol_seed)
            if self._design > 1:
                sobol.fast_forward(self._design - 1)
            for _ in range(n):
                out.append(self.space.init_point() if self._design == 0 else sobol.random(1)[0])
                self._design += 1
        return self._snap(np.array(out))

    def _start(self, gp: _gp.GP, count: int) -> np.ndarray:
        """Starting positions: half the last ensemble, a quarter near the best trials, the rest uniform."""
        dim = self.space.dim
        parts = []
        if self._ensemble:
            prev = np.array(self._ensemble, dtype=float)
            take = min(len(prev), count // 2)
            parts.append(prev[self._rng.permutation(len(prev))[:take]])
        order = np.argsort(gp.y.numpy()[: len(self._observed)])
        best = np.array([self._observed[i][0] for i in order[: max(1, count // 4)]], dtype=float)
        scale = np.minimum(gp.lengthscales, 0.5)
        jitter = np.zeros((len(best), dim))
        jitter[:, self._cont] = 0.1 * scale[: len(self._cont)] * self._rng.standard_normal((len(best), len(self._cont)))
        parts.append(np.clip(best + jitter, 0.0, 1.0))
        have = sum(len(p) for p in parts)
        if have < count:
            parts.append(self._rng.random((count - have, dim)))
        return np.concatenate(parts)[:count]

    def _hmc(self, gp: _gp.GP, n: int) -> np.ndarray:
        """Annealed HMC of the ensemble on exp(-U/T); returns every state it visited (cube points)."""
        count = max(self.n_particles, n)
        cont, cats = self._split(self._start(gp, count))
        x = torch.as_tensor(cont)
        c = torch.as_tensor(cats)
        step_scale = torch.as_tensor(np.clip(gp.lengthscales[: len(self._cont)], 1e-3, 0.5))
        eps = torch.full((count, 1), 0.5, dtype=torch.float64)
        dc = len(self._cont)

        def energy(xx: torch.Tensor, cc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            xx = xx.detach().requires_grad_(True)
            u = self._potential(gp, xx, cc)
            (grad,) = torch.autograd.grad(u.sum(), xx)
            return u.detach(), grad

        u, g = energy(x, c)
        visited = []
        for k in range(self.sweeps):
            temp = T_HIGH * (T_LOW / T_HIGH) ** (k / (self.sweeps - 1))
            if dc:
                p = torch.as_tensor(self._rng.standard_normal((count, dc)))
                h0 = u / temp + 0.5 * (p * p).sum(1)
                x1, p1, g1 = x, p - 0.5 * eps * step_scale * g / temp, g
                for s in range(self.leapfrog):
                    x1, flipped = reflect01(x1 + eps * step_scale * p1)
                    p1 = torch.where(flipped, -p1, p1)
                    u1, g1 = energy(x1, c)
                    p1 = p1 - (0.5 if s == self.leapfrog - 1 else 1.0) * eps * step_scale * g1 / temp
                h1 = u1 / temp + 0.5 * (p1 * p1).sum(1)
                log_r = torch.as_tensor(np.log(self._rng.random(count)))
                accept = torch.nan_to_num(h0 - h1, nan=-math.inf) > log_r
                x = torch.where(accept[:, None], x1, x)
                u = torch.where(accept, u1, u)
                g = torch.where(accept[:, None], g1, g)
                eps = torch.where(accept[:, None], eps * 1.15, eps * 0.6).clamp(1e-4, 2.0)
            if self._cat:
                x, c, u, g = self._switch_choices(gp, x, c, u, g, temp, energy)
            visited.append(self._join(x.numpy(), c.numpy()))
        self._ensemble = [list(map(float, row)) for row in visited[-1]]
        return self._with_other_choices(gp, np.concatenate(visited))

    def _with_other_choices(self, gp: _gp.GP, pool: np.ndarray, best: int = 8) -> np.ndarray:
        """Add, for the ``best`` lowest-potential states, every other choice of each categorical: the
        annealed Metropolis moves freeze choices at low temperature, so the last word is a full scan."""
        if not self._cat:
            return pool
        cont, cats = self._split(pool)
        with torch.no_grad():
            u = self._potential(gp, torch.as_tensor(cont), torch.as_tensor(cats)).numpy()
        extra = []
        for i in np.argsort(u)[:best]:
            for k, (j, m) in enumerate(zip(self._cat, self._choices)):
                for choice in range(m):
                    row = pool[i].copy()
                    row[j] = (choice + 0.5) / m
                    extra.append(row)
        return np.concatenate([pool, np.array(extra)])

    def _switch_choices(self, gp: _gp.GP, x: torch.Tensor, c: torch.Tensor, u: torch.Tensor, g: torch.Tensor,
                        temp: float, energy: Any) -> tuple[torch.Tensor, ...]:
        """A Metropolis move per particle on one categorical coordinate: try another choice."""
        count = c.shape[0]
        which = self._rng.integers(len(self._cat), size=count)
        shift = np.array([self._rng.integers(1, max(2, self._choices[k])) for k in which])
        proposal = c.numpy().copy()
        rows = np.arange(count)
        sizes = np.array(self._choices)[which]
        proposal[rows, which] = (proposal[rows, which] + shift) % sizes
        c1 = torch.as_tensor(proposal)
        u1, g1 = energy(x, c1)
        log_r = torch.as_tensor(np.log(self._rng.random(count)))
        accept = torch.nan_to_num((u - u1) / temp, nan=-math.inf) > log_r
        return (x, torch.where(accept[:, None], c1, c), torch.where(accept, u1, u),
                torch.where(accept[:, None], g1, g))

    def _optimise(self, gp: _gp.GP, n: int) -> np.ndarray:
        """Ablation: random-restart L-BFGS-B on the potential (no dynamics); returns starts and ends."""
        count = max(self.n_particles, n)
        candidates = np.concatenate([self._start(gp, count), self._rng.random((1024, self.space.dim))])
        cont, cats = self._split(candidates)
        with torch.no_grad():
            u = self._potential(gp, torch.as_tensor(cont), torch.as_tensor(cats)).numpy()
        best = np.argsort(u)[:count]
        ends = []
        dc = len(self._cont)
        if dc:
            for i in best:
                ct = torch.as_tensor(cats[i : i + 1])

                def f(v: np.ndarray, ct: torch.Tensor = ct) -> tuple[float, np.ndarray]:
                    xt = torch.tensor(v[None, :], dtype=torch.float64, requires_grad=True)
                    val = self._potential(gp, xt, ct).sum()
                    (grad,) = torch.autograd.grad(val, xt)
                    return float(val), grad.numpy()[0].copy()

                res = scipy.optimize.minimize(f, cont[i], jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * dc,
                                              options={"maxiter": 50})
                ends.append(self._join(np.asarray(res.x)[None, :], cats[i : i + 1])[0])
        return np.concatenate([candidates[best], np.array(ends).reshape(-1, self.space.dim)])

    def _select(self, gp: _gp.GP, pool: np.ndarray, n: int, observed: np.ndarray) -> np.ndarray:
        """Greedy picks by potential; with ``batch='fantasy'`` each pick is a kriging-believer fantasy."""
        pool = np.unique(self._snap(pool), axis=0)
        pend = np.array(list(self._pending.values()), dtype=float).reshape(-1, self.space.dim)
        taken = np.concatenate([observed, pend])
        fresh = np.min(np.abs(pool[:, None, :] - taken[None, :, :]).max(-1), axis=1) > 1e-9
        pool = pool[fresh]
        picks: list[np.ndarray] = []
        if len(pool):
            cont, cats = self._split(pool)
            xq, cq = torch.as_tensor(cont), torch.as_tensor(cats)
            with torch.no_grad():
                kq = gp.cross(xq, cq)
                mean = (kq @ gp.alpha).numpy()
                v = torch.linalg.solve_triangular(gp.chol, kq.T, upper=False)
                var = (gp.signal - (v * v).sum(0)).clamp_min(1e-12).numpy()
            gap = self.min_gap * math.sqrt(self.space.dim)
            alive = np.ones(len(pool), dtype=bool)
            for q in pend:
                alive &= np.linalg.norm(pool - q, axis=1) >= gap
            updates: list[np.ndarray] = []
            noise = float(gp.noise)
            while len(picks) < n and alive.any():
                kappa = self.kappa * (1.0 + self.spread * len(picks) / max(1, n - 1))
                score = np.where(alive, mean - kappa * np.sqrt(np.maximum(var, 1e-12)), np.inf)
                i = int(np.argmin(score))
                picks.append(pool[i])
                alive &= np.linalg.norm(pool - pool[i], axis=1) >= gap
                alive[i] = False
                if self.batch == "fantasy":
                    with torch.no_grad():
                        k_i = _gp.matern52(xq, cq, xq[i : i + 1], cq[i : i + 1], gp.inv_ls, len(self._cont),
                                           gp.signal)[:, 0]
                        cov = (k_i - v.T @ v[:, i]).numpy()
                    for w in updates:
                        cov = cov - w * w[i]
                    w = cov / math.sqrt(max(var[i], 1e-12) + noise)
                    updates.append(w)
                    var = var - w * w
        while len(picks) < n:  # the pool ran dry (tiny discrete space): uniform points
            picks.append(self._snap(self._rng.random((1, self.space.dim)))[0])
        return np.array(picks)

    # -- learning and state ---------------------------------------------------------------------------
    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        for point, ob in pairs:
            self._observed.append(([float(u) for u in point], ob.outcome))
            self._ids.append(ob.id)
        order = np.argsort(self._ids, kind="stable")  # the order of tells never changes what is learnt
        self._observed = [self._observed[i] for i in order]
        self._ids = [self._ids[i] for i in order]

    def _state(self) -> dict[str, Any]:
        return {
            "rng": self._rng.bit_generator.state,
            "sobol_seed": self._sobol_seed,
            "design": self._design,
            "observed": [[p, f] for p, f in self._observed],
            "ids": self._ids,
            "theta": self._theta,
            "ensemble": self._ensemble,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._sobol_seed = int(state["sobol_seed"])
        self._design = int(state["design"])
        self._observed = [([float(u) for u in p], load_outcome(f)) for p, f in state["observed"]]
        self._ids = [int(i) for i in state["ids"]]
        self._theta = None if state["theta"] is None else [float(v) for v in state["theta"]]
        self._ensemble = [[float(u) for u in row] for row in state["ensemble"]]
