"""Population-Based explore rules: the hyperparameters of a child that replaces a weak trial.

* ``perturb`` (Ray Tune's and Syne Tune's rule, clipped to the space): each value moves from the
  parent's. A float is multiplied by 0.8 or 1.2; on a log scale the factor is 0.8 or 1.25, one step
  either way in log space (so down then up comes back). An integer, or a choice among numbers (an
  ordered choice), moves one step of its grid, on a log integer at least one step of a 0.8 / 1.25
  factor; a categorical among other values is resampled. With probability 0.25 a value is resampled
  from the space instead. Every value is clipped to its bounds, which Ray Tune's does not do
  (ray#11936): there a learning rate can leave the space after a few perturbations.
* ``trust-gp`` (autotune's own): a Gaussian process of what one step gains, fitted on every
  (parent, child) pair of the run so far: the inputs are the parent's point in the unit cube, its
  step (lineage depth) and its standardised score, and the child's point; the target is the child's
  score minus its parent's. The child is the point of a trust region around its parent (a box in
  the cube, side ``2 * radius``) with the highest upper confidence bound of the gain (mean + 2 sd)
  among 256 scrambled-Sobol candidates and the parent's own point. The radius starts at 0.1 and
  follows the rule's recent record (TuRBO's success rule): halved after 3 children in a row that
  gained less than the median, grown by half after 2 in a row that gained more, within
  [0.02, 0.4]. Until 4 pairs exist it perturbs. PB2 (Parker-Holder et al., 2020) fits a time-varying
  GP bandit over the whole box; the trust region keeps a child near the weights it inherits.
* ``sampler`` (AutoDL Finetuner's): the run's sampler proposes the child's config anywhere in the
  space; the exploit rule only picks the checkpoint. It is not in this module (the driver asks the
  sampler), see :mod:`autotune.evaluators.pbt`.

Every rule is a pure function of the run's seed, the child's ordinal and the finished trials, so a
resumed run makes the same children: nothing of a rule is saved, and nothing can drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..schema import BY_NAME
from ..records import COMPLETED, TrialRecord
from ..space import CategoricalParam, FloatParam, IntParam, SearchSpace
from ..space.encoding import decode_value, encode_value

EXPLORE_RULES = BY_NAME["pbt_explore"].choices

PERTURB, TRUST_GP, SAMPLER = EXPLORE_RULES
RESAMPLE_PROBABILITY = 0.25
LINEAR_FACTORS = (0.8, 1.2)
LOG_FACTORS = (0.8, 1.25)


def check_explore(name: Any) -> str:
    return BY_NAME["pbt_explore"].check(name)


def rng_for(seed: int | None, ordinal: int, salt: int) -> np.random.Generator:
    """The random numbers of one child: fixed by the run's seed and the child's ordinal."""
    return np.random.default_rng([0 if seed is None else int(seed) & 0xFFFFFFFF, int(ordinal), salt])


def _ordered(p: CategoricalParam) -> bool:
    """A choice among numbers is ordered: a step moves to a neighbouring value."""
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in p.choices)


def _resample(p: Any, rng: np.random.Generator) -> Any:
    return decode_value(p, float(rng.random()))


def perturb_value(p: Any, value: Any, rng: np.random.Generator) -> Any:
    """One parameter's perturbed value (always inside the space)."""
    if rng.random() < RESAMPLE_PROBABILITY:
        return _resample(p, rng)
    up = bool(rng.random() < 0.5)
    if isinstance(p, FloatParam):
        factor = (LOG_FACTORS if p.log else LINEAR_FACTORS)[up]
        if value == 0.0 and not p.log:  # a product stays at 0: move a tenth of the range instead
            moved = value + (0.1 if up else -0.1) * (p.high - p.low)
        else:
            moved = value * factor
        return float(min(max(moved, p.low), p.high))
    if isinstance(p, IntParam):
        target = value + (p.step if up else -p.step)  # one step of the grid
        if p.log:  # a log integer (a batch size) moves by the log factor, at least one step
            scaled = int(round(value * LOG_FACTORS[up]))
            target = scaled if scaled != value else target
        return int(min(max(target, p.low), p.high))
    if _ordered(p):
        order = sorted(range(len(p.choices)), key=lambda i: p.choices[i])
        here = next(k for k, i in enumerate(order) if p.choices[i] == value)
        there = min(max(here + (1 if up else -1), 0), len(order) - 1)
        return p.choices[order[there]]
    return p.choices[int(rng.integers(len(p.choices)))]


def perturb(space: SearchSpace, config: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Ray Tune's explore, clipped: every searched value of ``config`` perturbed or resampled."""
    return {p.name: perturb_value(p, config[p.name], rng) for p in space.params}


# -- trust-gp --------------------------------------------------------------------------------------
MIN_PAIRS = 4
CANDIDATES = 256
BETA = 2.0
RADIUS_START, RADIUS_MIN, RADIUS_MAX = 0.1, 0.02, 0.4
FAILS_TO_SHRINK, WINS_TO_GROW = 3, 2
MAX_PAIRS = 300  # the most recent pairs fitted (the fit is cubic in them)


@dataclass(frozen=True)
class Pair:
    """One step of a lineage: the parent's point, step and score, the child's point and its gain."""

    parent: np.ndarray
    step: float
    score: float
    child: np.ndarray
    gain: float
    child_id: int


def step_pairs(space: SearchSpace, records: Sequence[TrialRecord], mode: str) -> list[Pair]:
    """Every completed child of a completed parent, in child order; scores sign-flipped for ``min``."""
    sign = 1.0 if mode == "max" else -1.0
    by_id = {r.trial_id: r for r in records}
    pairs = []
    for r in sorted(records, key=lambda r: r.trial_id):
        parent = by_id.get(r.parent_id) if r.parent_id is not None else None
        if parent is None or not _scored(r) or not _scored(parent):
            continue
        pairs.append(Pair(parent=_point(space, parent.config), step=float(parent.round), score=sign * parent.value,
                          child=_point(space, r.config), gain=sign * (r.value - parent.value), child_id=r.trial_id))
    return pairs


def _scored(r: TrialRecord) -> bool:
    return r.status == COMPLETED and r.value is not None and math.isfinite(r.value)


def _point(space: SearchSpace, config: Mapping[str, Any]) -> np.ndarray:
    return np.array([encode_value(p, config[p.name]) for p in space.params], dtype=float)


def trust_radius(pairs: Sequence[Pair], explored: set[int]) -> float:
    """The trust region's half side after the rule's own children so far (TuRBO's success counter)."""
    radius, wins, fails = RADIUS_START, 0, 0
    gains: list[float] = []
    for pair in pairs:
        if pair.child_id in explored and gains:
            if pair.gain > float(np.median(gains)):
                wins, fails = wins + 1, 0
            else:
                wins, fails = 0, fails + 1
            if fails >= FAILS_TO_SHRINK:
                radius, fails = max(RADIUS_MIN, radius / 2), 0
            elif wins >= WINS_TO_GROW:
                radius, wins = min(RADIUS_MAX, radius * 1.5), 0
        gains.append(pair.gain)
    return radius


def trust_gp(space: SearchSpace, parent: TrialRecord, records: Sequence[TrialRecord], mode: str,
             explored: set[int], rng: np.random.Generator) -> dict[str, Any]:
    """The child config of ``parent`` with the best upper confidence bound of the step gain."""
    pairs = step_pairs(space, records, mode)[-MAX_PAIRS:]
    if len(pairs) < MIN_PAIRS:
        return perturb(space, parent.config, rng)
    from ..samplers import _gp  # torch and scipy: only once a model is fitted
    from ..samplers.pshe3 import one_thread

    sign = 1.0 if mode == "max" else -1.0
    scores = np.array([p.score for p in pairs])
    s_mean, s_std = float(scores.mean()), float(scores.std()) or 1.0
    steps = np.array([p.step for p in pairs])
    step_scale = float(max(1.0, steps.max()))
    x = np.array([np.concatenate([p.parent, [p.step / step_scale, (p.score - s_mean) / s_std], p.child])
                  for p in pairs])
    gains = np.array([p.gain for p in pairs])
    g_mean, g_std = float(gains.mean()), float(gains.std()) or 1.0
    y = (gains - g_mean) / g_std
    here = _point(space, parent.config)
    radius = trust_radius(pairs, explored)
    from scipy.stats import qmc

    sobol = qmc.Sobol(d=space.dim, scramble=True, seed=rng)
    box = here + (2.0 * sobol.random(CANDIDATES) - 1.0) * radius
    cand = np.clip(np.vstack([here[None, :], box]), 0.0, 1.0)
    for j, p in enumerate(space.params):  # a categorical without order keeps its choice or is resampled
        if isinstance(p, CategoricalParam) and not _ordered(p):
            resample = rng.random(len(cand)) < RESAMPLE_PROBABILITY
            cand[:, j] = np.where(resample, rng.random(len(cand)), here[j])
            cand[0, j] = here[j]
    context = np.array([parent.round / step_scale, (sign * parent.value - s_mean) / s_std])
    with one_thread():
        import torch

        gp = _gp.fit(x, np.zeros((len(x), 0)), y, n_cont=x.shape[1], starts=[_gp.default_theta(x.shape[1])])
        q = np.hstack([np.repeat(here[None, :], len(cand), 0), np.repeat(context[None, :], len(cand), 0), cand])
        mean, var = gp.predict(torch.as_tensor(q, dtype=torch.float64), torch.zeros((len(q), 0), dtype=torch.long))
        ucb = (mean + BETA * var.sqrt()).detach().numpy()
    best = cand[int(np.argmax(ucb))]
    return {p.name: decode_value(p, float(u)) for p, u in zip(space.params, best)}


def explore(rule: str, space: SearchSpace, parent: TrialRecord, records: Sequence[TrialRecord], mode: str,
            seed: int | None, ordinal: int, explored: set[int]) -> dict[str, Any]:
    """The searched values of the ``ordinal``-th trial, a child of ``parent`` under ``rule``.

    ``explored``: the trials this rule made so far (the trust region follows their gains)."""
    rng = rng_for(seed, ordinal, 0xE4)
    searched = {p.name: parent.config[p.name] for p in space.params}
    if rule == PERTURB:
        return perturb(space, searched, rng)
    if rule == TRUST_GP:
        return trust_gp(space, parent, records, mode, explored, rng)
    raise ConfigError(f"explore rule {rule!r} does not make configs (the sampler does)")
