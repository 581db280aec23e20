"""PSHE3 specifics: the conformance suite in test_samplers.py covers the protocol; these check what makes
PSHE3 what it is (batch diversity, pending candidates, failures, mixed spaces, the dynamics)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from autotune.errors import SamplerError
from autotune.samplers import Candidate, Observation, make_sampler
from autotune.samplers.pshe3 import PSHE3Sampler, reflect01
from autotune.space import SearchSpace

CUBE = SearchSpace.from_dict({"params": {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(4)}})
MIXED = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "init": 1e-3},
    "layers": {"type": "int", "low": 1, "high": 4},
    "width": {"type": "int", "low": 8, "high": 512, "log": True},
    "opt": {"type": "categorical", "choices": ["adam", "sgd", "rmsprop"]},
}})
OPTIMUM = np.array([0.2, 0.7, 0.35, 0.6])


def sphere(c: Candidate) -> float:
    return float(np.sum((np.asarray(c.point) - OPTIMUM) ** 2))


def warmed(space: SearchSpace = CUBE, rounds: int = 2, popsize: int = 6, seed: int = 0,
           **options: object) -> PSHE3Sampler:
    sampler = make_sampler("pshe3", space, popsize, seed, **options)
    for _ in range(rounds):
        batch = sampler.ask(popsize)
        sampler.tell([Observation(c.id, sphere(c) if space is CUBE else float(np.sum(c.point))) for c in batch])
    assert isinstance(sampler, PSHE3Sampler)
    return sampler


def min_distance(points: np.ndarray) -> float:
    d = np.linalg.norm(points[:, None, :] - points[None, :, :], axis=-1)
    return float(d[np.triu_indices(len(points), 1)].min())


def test_starts_at_init_then_fills_space() -> None:
    sampler = make_sampler("pshe3", MIXED, 4, seed=0)
    batch = sampler.ask(4)
    assert batch[0].config["lr"] == 1e-3
    assert len({c.point for c in batch}) == 4


def test_a_batch_is_diverse() -> None:
    sampler = warmed()
    points = np.array([c.point for c in sampler.ask(8)])
    assert min_distance(points) >= sampler.min_gap * math.sqrt(CUBE.dim) - 1e-12


def test_pending_candidates_repel_later_asks() -> None:
    """Asynchronous use: ask(1) while earlier proposals still run must not propose them again."""
    sampler = warmed()
    running = [sampler.ask(1)[0] for _ in range(5)]
    points = np.array([c.point for c in running])
    assert min_distance(points) >= sampler.min_gap * math.sqrt(CUBE.dim) - 1e-12
    sampler.tell([Observation(c.id, sphere(c)) for c in running])
    assert sampler.pending_ids == []


def test_batch_without_fantasies_still_has_no_duplicates() -> None:
    sampler = warmed(batch="independent")
    points = np.array([c.point for c in sampler.ask(6)])
    assert min_distance(points) > 0


def test_learns_the_sphere() -> None:
    sampler = warmed(rounds=5)
    best = min(f for _, f in sampler._observed if f is not None)
    random_best = min(sphere(Candidate(0, tuple(p), {})) for p in np.random.default_rng(0).random((30, 4)))
    assert best < 0.2 * random_best


def failing_region(c: Candidate) -> float | None:
    return None if c.point[0] < 0.4 else 1.0 + float(np.sum((np.asarray(c.point) - 0.8) ** 2))


def test_failures_are_imputed_worse_than_the_worst() -> None:
    """Trials fail where x0 < 0.4; the model must move away from that region."""
    sampler = make_sampler("pshe3", CUBE, 6, 1)
    late = []
    for r in range(6):
        batch = sampler.ask(6)
        sampler.tell([Observation(c.id, failing_region(c))
                      for c in batch])
        if r >= 4:
            late += [c.point[0] for c in batch]
    assert np.mean(np.array(late) < 0.4) <= 1 / 6


def test_all_failures_keep_a_space_filling_design() -> None:
    sampler = make_sampler("pshe3", CUBE, 4, 0)
    seen = []
    for _ in range(3):
        batch = sampler.ask(4)
        sampler.tell([Observation(c.id, math.nan) for c in batch])
        seen += [c.point for c in batch]
    assert len(set(seen)) == 12


def test_mixed_points_are_canonical() -> None:
    """Integers and choices are proposed at their cell's canonical point, so the model sees what ran."""
    sampler = warmed(MIXED, rounds=3, popsize=4)
    for c in sampler.ask(5):
        assert np.allclose(MIXED.encode(c.config)[1:], np.asarray(c.point)[1:], atol=0)
        assert MIXED.validate_config(c.config) == c.config


def test_ablation_options_resume_exactly() -> None:
    for options in ({"moves": "optimise"}, {"batch": "independent"}):
        original = warmed(**options)
        resumed = make_sampler("pshe3", CUBE, 6, 0, **options)
        resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
        assert [c.point for c in original.ask(3)] == [c.point for c in resumed.ask(3)]


@pytest.mark.parametrize("options, match", [
    ({"kappa": -1}, "kappa must be a number >= 0"),
    ({"moves": "sgd"}, "moves must be 'hmc' or 'optimise'"),
    ({"batch": "all"}, "batch must be 'fantasy' or 'independent'"),
    ({"particles": 1}, "particles must be an integer >= 2"),
    ({"min_gap": 1.5}, r"min_gap must be a number in \[0, 1\)"),
])
def test_bad_options_are_clear_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(SamplerError, match=match):
        make_sampler("pshe3", CUBE, 4, 0, **options)


def test_reflection_folds_into_the_cube_and_reports_odd_crossings() -> None:
    x, flipped = reflect01(torch.tensor([-0.25, 0.5, 1.25, 2.5, -1.5]))
    assert torch.allclose(x, torch.tensor([0.25, 0.5, 0.75, 0.5, 0.5]))
    assert flipped.tolist() == [True, False, True, False, False]  # -1.5 and 2.5 cross two walls


def test_dynamics_lower_the_ensembles_potential() -> None:
    """The annealed HMC ensemble ends in low-potential states, below where such an ensemble starts."""
    sampler = warmed(rounds=3)
    data = sampler._targets()
    assert data is not None
    gp = sampler._fit(*data)
    start = sampler._start(gp, sampler.n_particles)
    pool = sampler._hmc(gp, 6)
    end = np.array(sampler._ensemble)

    def potential(points: np.ndarray) -> np.ndarray:
        cont, cats = sampler._split(points)
        with torch.no_grad():
            return sampler._potential(gp, torch.as_tensor(cont), torch.as_tensor(cats)).numpy()

    assert len(pool) == sampler.sweeps * sampler.n_particles
    assert np.median(potential(end)) < np.median(potential(start))
