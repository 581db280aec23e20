"""Samplers: one conformance suite run against every registered sampler, plus the registry and a few
sampler-specific checks.  Every test builds fresh samplers; nothing needs Ray."""

from __future__ import annotations

import hashlib
import json
import math
import random
import zlib
from collections.abc import Callable
from typing import Any

import cma
import numpy as np
import pytest
from optuna.trial import TrialState

from autotune.errors import SamplerError, SamplerProtocolError
from autotune.samplers import (
    SAMPLERS,
    Candidate,
    Observation,
    Sampler,
    make_sampler,
    resolve_sampler_name,
    sampler_names,
)
from autotune.samplers.pshe2 import reflect
from autotune.space import SearchSpace

NAMES = sampler_names()
POP = 3
#: TPE starts model-based proposals after one population so the suite exercises them.  GP proposals in
#: a batch on this mixed space take seconds each on 2 cores, so the suite keeps GP in its start-up phase
#: and test_bayes_gp_model_reproduces_and_resumes exercises its model on a small space.
OPTIONS: dict[str, dict[str, Any]] = {"bayes": {"n_startup_trials": POP}, "bayes-gp": {"n_startup_trials": 1000}}

MIXED = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True, "init": 1e-3},
    "drop": {"type": "float", "low": 0.0, "high": 0.5},
    "layers": {"type": "int", "low": 1, "high": 4},
    "width": {"type": "int", "low": 8, "high": 512, "log": True, "init": 64},
    "every": {"type": "int", "low": 0, "high": 100, "step": 25},
    "opt": {"type": "categorical", "choices": ["adam", "sgd", 3, True, None], "init": "sgd"},
}})


#: a small 2-d space on which the GP's model-based proposals stay quick
SMALL = SearchSpace.from_dict({"params": {"a": {"type": "float", "low": 1e-3, "high": 1.0, "log": True},
                                          "b": {"type": "float", "low": -1.0, "high": 1.0}}})


def make(name: str, seed: int | None = 0, popsize: int = POP, space: SearchSpace = MIXED, **options: Any) -> Sampler:
    return make_sampler(name, space, popsize, seed, **{**OPTIONS.get(name, {}), **options})


def bowl(c: Candidate) -> float:
    """A smooth loss on the unit cube, minimal at 0.3 in every coordinate."""
    return float(np.sum((np.asarray(c.point) - 0.3) ** 2))


def run(sampler: Sampler, rounds: int, loss: Callable[[Candidate], float | None] = bowl) -> list[Candidate]:
    """The driver's loop: ask a population, tell one observation per candidate."""
    seen = []
    for _ in range(rounds):
        batch = sampler.ask(sampler.popsize)
        sampler.tell([Observation(c.id, loss(c)) for c in batch])
        seen += batch
    return seen


def same(a: list[Candidate], b: list[Candidate]) -> bool:
    return [(c.id, c.point, c.config) for c in a] == [(c.id, c.point, c.config) for c in b]


# -- registry -------------------------------------------------------------------------------------
def test_registry_names_and_aliases() -> None:
    assert NAMES == ["hazero", "pshe2", "bayes", "bayes-gp", "random", "pshe3"]
    assert set(SAMPLERS) == set(NAMES)
    for alias, canonical in {"cmaes": "hazero", "hamiltonian": "pshe2", "tpe": "bayes", "gp": "bayes-gp",
                             "HAZero": "hazero", " Random ": "random", "BAYES-GP": "bayes-gp"}.items():
        assert resolve_sampler_name(alias) == canonical
    sampler = make_sampler("CMAES", MIXED, 4, seed=1)
    assert sampler.name == "hazero" and sampler.popsize == 4


def test_unknown_names_and_options_are_clear_errors() -> None:
    with pytest.raises(SamplerError, match=r"unknown sampler 'cma'; valid names: hazero, pshe2, bayes, bayes-gp, random"):
        make_sampler("cma", MIXED, 4)
    with pytest.raises(SamplerError, match=r"sampler 'pshe2' has no option 'alpah'; its options are: alpha=0.5"):
        make_sampler("pshe2", MIXED, 4, alpah=0.3)
    with pytest.raises(SamplerError, match="popsize must be an integer >= 1"):
        make_sampler("random", MIXED, 0)
    with pytest.raises(SamplerError, match="seed must be an integer >= 0"):
        make_sampler("random", MIXED, 2, seed=-1)
    with pytest.raises(SamplerError, match="hazero needs popsize >= 2"):
        make_sampler("hazero", MIXED, 1)
    with pytest.raises(SamplerError, match=r"alpha must be a number in \(0, 1\]"):
        make_sampler("pshe2", MIXED, 2, alpha=0.0)


# -- rounds mode is pinned ------------------------------------------------------------------------
def digest(candidates: list[Candidate]) -> str:
    """A short hash of the proposals' points, rounded to 6 decimals (-0.0 folded into 0.0)."""
    points = np.round(np.array([c.point for c in candidates]), 6) + 0.0
    return hashlib.sha256(json.dumps(points.tolist()).encode()).hexdigest()[:16]


#: the first 3 populations (seed 0, suite options, MIXED, bowl loss) of each sampler, computed before
#: asynchronous scheduling was added: rounds mode must keep proposing exactly these
GOLDEN = {"hazero": "a2eae8f210965e08", "pshe2": "000e76ee1bc942fe", "bayes": "606d8805b3b5d3e2",
          "bayes-gp": "b83b50e9d6f1d059", "random": "32bdace09bb94646"}
#: 2 rounds of 2 on SMALL with 2 start-up trials: the Optuna models' own proposals
GOLDEN_MODEL = {"bayes": "241a1d16c00643b7", "bayes-gp": "4490aef834e328cb"}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_rounds_mode_proposals_are_unchanged(name: str) -> None:
    assert digest(run(make(name, seed=0), rounds=3)) == GOLDEN[name]


@pytest.mark.parametrize("name", sorted(GOLDEN_MODEL))
def test_rounds_mode_model_proposals_are_unchanged(name: str) -> None:
    sampler = make_sampler(name, SMALL, 2, 0, n_startup_trials=2)
    assert digest(run(sampler, rounds=2)) == GOLDEN_MODEL[name]


# -- conformance: every sampler -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_proposals_lie_inside_the_space(name: str) -> None:
    sampler = make(name)
    seen = run(sampler, rounds=3)
    assert len(seen) == 3 * POP
    assert [c.id for c in seen] == list(range(3 * POP))
    for c in seen:
        assert len(c.point) == MIXED.dim and all(0.0 <= u <= 1.0 for u in c.point)
        assert c.config == MIXED.decode(np.array(c.point))
        assert MIXED.validate_config(c.config) == c.config
        assert all(type(v) in (float, int, str, bool, type(None)) for v in c.config.values())
    assert sampler.pending_ids == []


@pytest.mark.parametrize("name", NAMES)
def test_failed_and_nan_observations_are_accepted(name: str) -> None:
    sampler = make(name)
    outcomes = iter([None, math.nan, 0.5, math.inf, -math.inf, None, None, None, None, 0.2, None, math.nan])
    seen = run(sampler, rounds=4, loss=lambda c: next(outcomes))  # the third round fails entirely
    after = run(sampler, rounds=1)
    for c in seen + after:
        assert MIXED.validate_config(c.config) == c.config
    assert len({c.point for c in after}) == POP  # still proposing, and not one collapsed point


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_proposals(name: str) -> None:
    first, again, other = (run(make(name, seed=s), rounds=3) for s in (7, 7, 8))
    assert same(first, again)
    assert not same(first, other)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("told_of_last_batch", [POP, 1])
def test_state_dict_resumes_exactly(name: str, told_of_last_batch: int) -> None:
    original = make(name, seed=3)
    run(original, rounds=1)
    batch = original.ask(POP)
    original.tell([Observation(c.id, bowl(c)) for c in batch[:told_of_last_batch]])
    state = json.loads(json.dumps(original.state_dict()))  # must survive JSON

    resumed = make(name, seed=3)
    resumed.load_state_dict(state)
    assert resumed.pending_ids == original.pending_ids == [c.id for c in batch[told_of_last_batch:]]
    for sampler in (original, resumed):
        sampler.tell([Observation(c.id, bowl(c)) for c in batch[told_of_last_batch:]])
    assert same(run(original, rounds=2), run(resumed, rounds=2))


@pytest.mark.parametrize("name", NAMES)
def test_unseeded_sampler_still_resumes_exactly(name: str) -> None:
    original = make(name, seed=None)
    run(original, rounds=1)
    resumed = make(name, seed=None)
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert same(run(original, rounds=2), run(resumed, rounds=2))


@pytest.mark.parametrize("name", NAMES)
def test_protocol_misuse_raises_clear_errors(name: str) -> None:
    sampler = make(name)
    batch = sampler.ask(POP)
    with pytest.raises(SamplerProtocolError, match="candidate 99 was never proposed"):
        sampler.tell([Observation(99, 1.0)])
    with pytest.raises(SamplerProtocolError, match=f"candidate {batch[0].id} was already told"):
        sampler.tell([Observation(batch[0].id, 1.0), Observation(batch[0].id, 2.0)])
    sampler.tell([Observation(batch[0].id, 1.0)])  # the failed calls changed nothing
    with pytest.raises(SamplerProtocolError, match=f"candidate {batch[0].id} was already told"):
        sampler.tell([Observation(batch[0].id, 1.0)])
    with pytest.raises(SamplerProtocolError, match="n >= 1"):
        sampler.ask(0)
    sampler.tell([Observation(c.id, 1.0) for c in batch[1:]])
    assert len(sampler.ask(POP)) == POP


@pytest.mark.parametrize("name", NAMES)
def test_other_batch_sizes_and_tells_in_parts(name: str) -> None:
    whole, parts = make(name), make(name)
    run(whole, rounds=1)
    first, rest = parts.ask(1), parts.ask(POP - 1)  # a population asked in two parts
    assert [c.id for c in first + rest] == list(range(POP))
    batch = first + rest
    parts.tell([Observation(c.id, bowl(c)) for c in reversed(batch[1:])])  # told in two parts, any order
    parts.tell([Observation(batch[0].id, bowl(batch[0]))])
    assert same(run(whole, rounds=2), run(parts, rounds=2))  # learnt exactly as from one tell

    big = make(name)
    if SAMPLERS[name].needs_full_population:
        big.ask(POP - 1)
        with pytest.raises(SamplerProtocolError, match=r"whole populations of 3: ask\(2\) asks for more than the 1"):
            big.ask(2)
    else:
        assert len(big.ask(POP + 2)) == POP + 2


# -- asynchronous scheduling: every sampler ---------------------------------------------------------
def async_loss(c: Candidate) -> float | None:
    """The bowl, except that every 7th candidate fails (None) and every 11th reports NaN."""
    if c.id % 7 == 4:
        return None
    if c.id % 11 == 6:
        return math.nan
    return bowl(c)


class AsyncDriver:
    """The asynchronous driver's calls, seeded: ``ask(1)`` while fewer than ``max_pending`` are out (at
    random when some are), otherwise tell one pending candidate picked at random."""

    def __init__(self, sampler: Sampler, trials: int, seed: int, max_pending: int,
                 loss: Callable[[Candidate], float | None] = async_loss) -> None:
        self.sampler, self.trials, self.max_pending, self.loss = sampler, trials, max_pending, loss
        self.rng = random.Random(seed)
        self.pending: list[Candidate] = []
        self.seen: list[Candidate] = []
        self.most_pending = 0

    def step(self) -> bool:
        """One ask or one tell; False once every trial was asked and told."""
        can_ask = len(self.seen) < self.trials and len(self.pending) < self.max_pending
        if not can_ask and not self.pending:
            return False
        if can_ask and (not self.pending or self.rng.random() < 0.7):
            (c,) = self.sampler.ask(1)
            self.pending.append(c)
            self.seen.append(c)
            self.most_pending = max(self.most_pending, len(self.pending))
        else:
            c = self.pending.pop(self.rng.randrange(len(self.pending)))
            self.sampler.tell([Observation(c.id, self.loss(c))])
        return True

    def run(self, steps: int | None = None) -> AsyncDriver:
        while (steps is None or steps > 0) and self.step():
            steps = None if steps is None else steps - 1
        return self

    def fork(self, sampler: Sampler) -> AsyncDriver:
        """The same driver, from this moment on, driving ``sampler`` (a resumed copy)."""
        twin = AsyncDriver(sampler, self.trials, 0, self.max_pending, self.loss)
        twin.rng.setstate(self.rng.getstate())
        twin.pending, twin.seen, twin.most_pending = list(self.pending), list(self.seen), self.most_pending
        return twin


def make_async(name: str, **kwargs: Any) -> Sampler:
    sampler = make(name, **kwargs)
    sampler.set_asynchronous(True)
    return sampler


@pytest.mark.parametrize("name", NAMES)
def test_asynchronous_conformance(name: str) -> None:
    seed = zlib.crc32(name.encode())
    trials = 6 * POP
    sampler = make_async(name, seed=seed % 1000)
    assert sampler.asynchronous
    driver = AsyncDriver(sampler, trials, seed, max_pending=POP + 2)
    driver.run(steps=random.Random(seed).randrange(3, 2 * trials - 3))  # a random moment
    state = json.loads(json.dumps(sampler.state_dict()))  # must survive JSON
    assert state["asynchronous"] is True

    resumed = make_async(name, seed=seed % 1000)
    resumed.load_state_dict(state)
    assert resumed.pending_ids == sampler.pending_ids == sorted(c.id for c in driver.pending)
    twin = driver.fork(resumed)
    driver.run()
    twin.run()
    assert same(driver.seen, twin.seen)  # resumed exactly
    assert driver.most_pending == POP + 2  # more candidates pending than popsize
    assert [c.id for c in driver.seen] == list(range(trials))
    for c in driver.seen:
        assert len(c.point) == MIXED.dim and all(0.0 <= u <= 1.0 for u in c.point)
        assert c.config == MIXED.decode(np.array(c.point))
        assert MIXED.validate_config(c.config) == c.config
    assert len({c.point for c in driver.seen[-POP - 2:]}) == POP + 2  # not one collapsed point
    assert sampler.pending_ids == []

    (c,) = sampler.ask(1)  # the protocol is checked as in rounds
    with pytest.raises(SamplerProtocolError, match="candidate 999 was never proposed"):
        sampler.tell([Observation(999, 1.0)])
    with pytest.raises(SamplerProtocolError, match=f"candidate {c.id} was already told"):
        sampler.tell([Observation(c.id, 1.0), Observation(c.id, 2.0)])
    sampler.tell([Observation(c.id, 1.0)])
    with pytest.raises(SamplerProtocolError, match=f"candidate {c.id} was already told"):
        sampler.tell([Observation(c.id, 1.0)])
    with pytest.raises(SamplerProtocolError, match="n >= 1"):
        sampler.ask(0)
    with pytest.raises(SamplerError, match="cannot go back to rounds"):
        sampler.set_asynchronous(False)


@pytest.mark.parametrize("name", NAMES)
def test_a_rounds_state_resumes_in_either_schedule(name: str) -> None:
    original = make(name, seed=3)
    run(original, rounds=1)
    batch = original.ask(POP)
    original.tell([Observation(batch[0].id, bowl(batch[0]))])
    state = json.loads(json.dumps(original.state_dict()))
    assert state.pop("asynchronous") is False  # and a state saved before the flag existed lacks it

    old = make(name, seed=3)
    old.load_state_dict(state)
    assert not old.asynchronous
    converted = make_async(name, seed=3)
    converted.load_state_dict(state)  # a rounds run resumed asynchronously
    assert converted.asynchronous and converted.pending_ids == [c.id for c in batch[1:]]
    for sampler in (original, old):
        sampler.tell([Observation(c.id, bowl(c)) for c in batch[1:]])
    assert same(run(original, rounds=2), run(old, rounds=2))  # rounds mode continues exactly

    driver = AsyncDriver(converted, trials=POP + 12, seed=5, max_pending=POP + 2)
    driver.pending, driver.seen = list(batch[1:]), list(batch)  # ids 3..5; 3 told already
    driver.run()
    assert [c.id for c in driver.seen] == list(range(POP, 2 * POP + 12)) and converted.pending_ids == []
    assert driver.most_pending == POP + 2


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_fresh_sampler_may_go_back_to_rounds(name: str) -> None:
    sampler = make_async(name, seed=0)
    sampler.set_asynchronous(False)
    assert not sampler.asynchronous and sampler.state_dict()["asynchronous"] is False
    assert digest(run(sampler, rounds=3)) == GOLDEN[name]  # switching a fresh sampler disturbed nothing


@pytest.mark.parametrize("name", NAMES)
def test_asynchronous_runs_improve_on_the_first_population(name: str) -> None:
    popsize = 4
    sampler = make_async(name, seed=1, popsize=popsize)
    seen = AsyncDriver(sampler, trials=40, seed=2, max_pending=popsize + 2, loss=bowl).run().seen
    losses = [bowl(c) for c in seen]
    assert min(losses[popsize:]) < min(losses[:popsize])
    if name in ("hazero", "pshe2", "bayes"):  # the learning ones also move their typical proposal
        assert float(np.median(losses[-2 * popsize:])) < float(np.median(losses[:popsize]))


# -- behaviour: learning samplers beat random search ----------------------------------------------
SPHERE = SearchSpace.from_dict({"params": {f"x{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(4)}})
OPTIMUM = np.array([0.2, 0.7, 0.35, 0.6])


def sphere_best(name: str, seed: int, rounds: int = 8, popsize: int = 6) -> float:
    """Best loss found on a 4-d sphere with its optimum off-centre, at a budget of rounds x popsize."""
    sampler = make_sampler(name, SPHERE, popsize, seed)
    losses = [float(np.sum((np.array(list(c.config.values())) - OPTIMUM) ** 2)) for c in run(
        sampler, rounds, lambda c: float(np.sum((np.array(list(c.config.values())) - OPTIMUM) ** 2)))]
    return min(losses)


@pytest.fixture(scope="module")
def random_median() -> float:
    return float(np.median([sphere_best("random", seed) for seed in range(21)]))


@pytest.mark.parametrize("name", ["hazero", "pshe2", "bayes"])
def test_beats_random_search_on_an_off_centre_sphere(name: str, random_median: float) -> None:
    median = float(np.median([sphere_best(name, seed) for seed in range(11)]))
    assert median < random_median


@pytest.mark.parametrize("name", ["hazero", "pshe2", "bayes"])
def test_failures_are_not_scored_as_zero(name: str) -> None:
    """Trials fail where x0 < 0.4; elsewhere the loss is at least 1.  A sampler that read a failure as 0
    would crowd into the failing region; one that ranks failures worst moves away from it."""
    def loss(c: Candidate) -> float | None:
        x = np.array(list(c.config.values()))
        return None if x[0] < 0.4 else 1.0 + float(np.sum((x - np.array([0.8, 0.5, 0.5, 0.5])) ** 2))

    seen = run(make_sampler(name, SPHERE, 6, 1), rounds=8, loss=loss)
    late = np.array([c.config["x0"] for c in seen[-12:]])
    assert np.mean(late < 0.4) <= 1 / 6
    assert np.mean(late) > 0.55


# -- sampler specifics ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bayes", "bayes-gp"])
def test_optuna_samplers_see_failed_trials_as_failed(name: str) -> None:
    sampler = make(name)
    batch = sampler.ask(POP)
    sampler.tell([Observation(batch[0].id, None), Observation(batch[1].id, math.nan), Observation(batch[2].id, 0.5)])
    trials = sampler.study.trials  # type: ignore[attr-defined]
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].value == 0.5
    for trial, candidate in zip(trials, batch):  # the candidate is the trial's params, through the space
        assert MIXED.decode(MIXED.encode(trial.params)) == candidate.config


def test_bayes_gp_model_reproduces_and_resumes() -> None:
    space = SMALL
    outcomes = {2: None}  # candidate 2 (in the first model-based round) fails

    def loss(c: Candidate) -> float | None:
        return outcomes.get(c.id, bowl(c))

    def fresh() -> Sampler:
        return make_sampler("bayes-gp", space, 2, 11, n_startup_trials=2)

    original, twin = fresh(), fresh()
    head = run(original, rounds=2, loss=loss)
    resumed = fresh()
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    tail = run(original, rounds=1, loss=loss)
    assert same(tail, run(resumed, rounds=1, loss=loss))
    assert same(head + tail, run(twin, rounds=3, loss=loss))
    states = [t.state for t in original.study.trials]  # type: ignore[attr-defined]
    assert states.count(TrialState.FAIL) == 1 and states.count(TrialState.COMPLETE) == 5


def test_hazero_starts_at_init_and_ranks_failures_worst(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = make("hazero", seed=5, popsize=8)
    points = np.array([c.point for c in sampler.ask(8)])
    assert np.allclose(points.mean(axis=0), MIXED.init_point(), atol=0.25)  # sampled around init
    told: list[list[float]] = []
    es = sampler._es  # type: ignore[attr-defined]
    original_tell = es.tell
    monkeypatch.setattr(es, "tell", lambda xs, fs: (told.append(list(fs)), original_tell(xs, fs)))
    ids = sorted(sampler.pending_ids)
    losses = [-3.0, None, 2.0, math.nan, -1.0, 0.5, None, 1.0]
    sampler.tell([Observation(i, f) for i, f in zip(ids, losses)])
    (fitness,) = told
    finite = [f for f in losses if f is not None and math.isfinite(f)]
    for f, raw in zip(fitness, losses):
        if raw is None or not math.isfinite(raw):
            assert f > max(finite)  # worst, not 0 (0 would beat 2.0, 1.0 and 0.5)


def test_hazero_resamples_after_a_wholly_failed_population_and_restarts_on_collapse() -> None:
    sampler = make("hazero", seed=2)
    failed = run(sampler, rounds=1, loss=lambda c: None)
    assert (sampler._es.countiter, sampler.restarts) == (0, 0)  # type: ignore[attr-defined]  # nothing learnt
    again = run(sampler, rounds=1)
    assert {c.point for c in failed}.isdisjoint({c.point for c in again})
    flat = make("hazero", seed=2)
    run(flat, rounds=3, loss=lambda c: 1.0)  # a flat landscape makes pycma stop (tolfun / flat fitness)
    assert flat.restarts >= 1  # type: ignore[attr-defined]
    assert len(run(flat, rounds=1)) == POP
    capped = make("hazero", seed=2, max_restarts=0)
    run(capped, rounds=1, loss=lambda c: 1.0)
    with pytest.raises(SamplerError, match="restart"):
        capped.ask(POP)


def test_pshe2_particles_are_independent_and_start_at_init() -> None:
    sampler = make("pshe2", seed=4, popsize=4)
    batch = sampler.ask(4)
    assert np.allclose(batch[0].point, MIXED.init_point())  # the first particle sits at init
    assert len({c.point for c in batch}) == 4
    sampler.tell([Observation(batch[0].id, None)] + [Observation(c.id, bowl(c)) for c in batch[1:]])
    momentum = sampler.p  # type: ignore[attr-defined]
    assert len({tuple(row) for row in momentum.tolist()}) == 4  # one momentum row per particle
    assert sampler.best_f[0] is None  # type: ignore[attr-defined]  # a failure is never a best
    assert sampler.global_f == min(bowl(c) for c in batch[1:])  # type: ignore[attr-defined]


def test_pshe2_reflects_at_the_bounds() -> None:
    x, flipped = reflect(np.array([0.5, 1.25, -1.5, 3.5, -1.0, 1.0]))
    assert np.allclose(x, [0.5, 0.75, -0.5, -0.5, -1.0, 1.0])
    assert flipped.tolist() == [False, True, True, False, False, False]
    sampler = make("pshe2", seed=0, popsize=6, alpha=1.0, epsilon=0.2)
    points = np.array([c.point for c in run(sampler, rounds=8, loss=lambda c: -float(np.sum(c.point)))])
    assert ((points >= 0.0) & (points <= 1.0)).all()
    # pulled hard into the corner (1, ..., 1), particles bounce off its faces; clipping would park them there
    assert not (points[POP * 2:] == 1.0).any()


# -- sampler specifics under asynchronous scheduling ------------------------------------------------
def test_hazero_async_tells_every_popsize_results_and_repairs_stale_points(monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[tuple[int, Any]] = []  # (generation told, check_points) for every pycma tell
    original_tell = cma.CMAEvolutionStrategy.tell

    def spy(es: Any, solutions: Any, function_values: Any, check_points: Any = None, **kw: Any) -> Any:
        told.append((es.countiter, check_points))
        return original_tell(es, solutions, function_values, check_points=check_points, **kw)

    monkeypatch.setattr(cma.CMAEvolutionStrategy, "tell", spy)
    sampler = make_async("hazero", seed=5, popsize=5)  # popsize 5: pycma also injects a selective mirror
    first = sampler.ask(12)  # 12 > popsize pending, all from generation 0's distribution
    assert len({c.point for c in first}) == 12

    def tell(batch: list[Candidate]) -> None:
        sampler.tell([Observation(c.id, bowl(c)) for c in batch])

    tell(first[:4])
    assert told == []  # 4 results of 5: no generation yet
    tell(first[4:5])
    assert told == [(0, None)] and sampler._es.countiter == 1  # type: ignore[attr-defined]
    tell(first[5:10])  # 5 more results with no ask in between, all sampled before the update: repaired
    assert told[1] == (1, [0, 1, 2, 3, 4]) and sampler._es.countiter == 2  # type: ignore[attr-defined]
    newer = sampler.ask(3)  # from generation 2
    tell([first[10], newer[0], newer[1], first[11]])
    tell([newer[2]])
    assert told[2] == (2, [0, 3]) and sampler.repaired == 7  # type: ignore[attr-defined]
    assert sampler.pending_ids == []

    flat = make_async("hazero", seed=2, max_restarts=0)  # restarts work asynchronously too
    out = flat.ask(POP + 2)
    flat.tell([Observation(c.id, 1.0) for c in out[:POP]])  # a flat generation: pycma stops
    assert flat.restarts == 1  # type: ignore[attr-defined]
    with pytest.raises(SamplerError, match="restart"):
        flat.ask(1)
    flat.tell([Observation(c.id, 0.5) for c in out[POP:]])  # late results are still accepted
    assert flat._best_f == 0.5  # type: ignore[attr-defined]
    again = make_async("hazero", seed=2)
    driver = AsyncDriver(again, trials=6 * POP, seed=1, max_pending=POP + 2, loss=lambda c: 1.0).run()
    assert again.restarts >= 1 and len(driver.seen) == 6 * POP  # type: ignore[attr-defined]


def test_pshe2_async_moves_only_the_particle_whose_trial_ended() -> None:
    sampler: Any = make_async("pshe2", seed=4, popsize=3)
    batch = sampler.ask(3)
    for i, c in enumerate(batch):  # particle i at its position
        assert np.allclose(c.point, (sampler.x[i] + 1.0) / 2.0)
    x_before, p_before = sampler.x.copy(), sampler.p.copy()

    def moved() -> list[int]:
        return [i for i in range(3) if not np.array_equal(sampler.x[i], x_before[i])]

    sampler.tell([Observation(batch[1].id, 0.4)])  # particle 1 ends first: it alone moves, at once
    assert moved() == [1] and sampler.best_f == [None, 0.4, None] and sampler.global_f == 0.4
    best = x_before[1]
    assert np.array_equal(sampler.global_x, best)
    (again,) = sampler.ask(1)  # the idle particle is particle 1, at its new position
    assert np.allclose(again.point, (sampler.x[1] + 1.0) / 2.0)

    x_before = sampler.x.copy()
    sampler.tell([Observation(batch[0].id, 0.9)])  # particle 0 moves with the global best as it stands
    assert moved() == [0] and np.array_equal(sampler.p[2], p_before[2])
    # first move (t = 1): no friction term; its own best is where it stands, so only the global pull acts
    assert np.allclose(sampler.p[0], -0.5 * (x_before[0] - best))

    (third,) = sampler.ask(1)  # particle 0 is idle again
    assert np.allclose(third.point, (sampler.x[0] + 1.0) / 2.0)
    scouts = sampler.ask(2)  # no idle particle left: scouts, kicked copies of the global best
    kick = np.abs(2.0 * np.array([c.point for c in scouts]) - 1.0 - best)
    assert 0 < kick.max() <= 0.2 * 2 and scouts[0].point != scouts[1].point  # at most epsilon of the way to an edge
    x_before = sampler.x.copy()
    sampler.tell([Observation(scouts[0].id, 0.1)])  # a better scout moves the global best, no particle
    assert moved() == [] and sampler.global_f == 0.1
    assert np.allclose(sampler.global_x, 2.0 * np.array(scouts[0].point) - 1.0)
    assert sampler.best_f == [0.9, 0.4, None]


def test_bayes_gp_async_treats_running_trials_as_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna._gp.acqf as acqf
    from optuna.samplers._gp import sampler as gp_sampler

    running: list[int] = []  # how many running trials each qLogEI was built with

    class SpyQLogEI(acqf.qLogEI):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            running.append(len(kwargs["normalized_params_of_running_trials"]))
            super().__init__(*args, **kwargs)

    lazy = gp_sampler.acqf_module  # Optuna's lazy module copies the real one's names on first use
    assert lazy.qLogEI is acqf.qLogEI
    for module in (acqf, lazy):
        monkeypatch.setattr(module, "qLogEI", SpyQLogEI)

    def fresh() -> Sampler:
        sampler = make_sampler("bayes-gp", SMALL, 2, 11, n_startup_trials=2)
        sampler.set_asynchronous(True)
        return sampler

    sampler = fresh()
    start = sampler.ask(2)
    sampler.tell([Observation(c.id, bowl(c)) for c in start])
    (first,) = sampler.ask(1)  # model-based, nothing running: plain logEI
    assert running == []
    state = json.loads(json.dumps(sampler.state_dict()))
    (second,) = sampler.ask(1)  # `first` is still running: qLogEI over it
    assert running == [1] and second.point != first.point
    resumed = fresh()
    resumed.load_state_dict(state)
    assert same(resumed.ask(1), [second])


def test_told_ids_are_saved_as_ranges_and_old_lists_still_load() -> None:
    from autotune.samplers.base import id_ranges, ids_of

    assert id_ranges({0, 1, 2, 5, 7, 8}) == [[0, 2], [5, 5], [7, 8]]
    assert ids_of([[0, 2], [5, 5], [7, 8]]) == {0, 1, 2, 5, 7, 8}
    assert ids_of([0, 1, 2, 5]) == {0, 1, 2, 5}  # a state saved before ranges
    sampler = make("random")
    run(sampler, 4)
    assert sampler.state_dict()["told"] == [[0, 4 * POP - 1]]  # constant size however long the run
    old = sampler.state_dict()
    old["told"] = list(range(4 * POP))
    fresh = make("random")
    fresh.load_state_dict(old)
    with pytest.raises(SamplerProtocolError, match="already told"):
        fresh.tell([Observation(3, 0.0)])


# -- pruned trials (early stopping) -----------------------------------------------------------------
def pruned(c: Candidate, steps: int, last: float) -> Observation:
    """A trial stopped after ``steps`` reports, its losses falling towards ``last``."""
    curve = tuple((s, last + (steps - s) * 0.1) for s in range(1, steps + 1))
    return Observation(c.id, last, pruned_step=steps, curve=curve)


def test_pruned_trials_rank_below_completed_and_above_failed() -> None:
    from autotune.samplers._population import outcome_key, ranked_losses

    # completed 5.0 and 1.0; pruned after 3 steps at 0.2 and 0.9, after 1 step at -7 (a last report better
    # than every final score); failed
    outcomes = [5.0, [3, 0.9], None, [1, -7.0], 1.0, [3, 0.2], [2, None]]
    values = ranked_losses(outcomes)
    order = sorted(range(len(outcomes)), key=lambda i: values[i])
    assert order == [4, 0, 5, 1, 6, 3, 2]
    assert order == sorted(range(len(outcomes)), key=lambda i: outcome_key(outcomes[i]))
    assert values[4] == 1.0 and values[0] == 5.0  # completed losses are kept
    assert max(values[i] for i in (5, 1, 6, 3)) < values[2] and values[2] > 5.0
    assert ranked_losses([[2, 0.1], None]) == [0.25, 1.0]  # nothing completed: still ordered, never 0
    obs = Observation(0, 0.3, pruned_step=2)
    assert obs.pruned and obs.failed and obs.outcome == [2, 0.3]
    assert Observation(0, math.nan, pruned_step=4).outcome == [4, None]
    assert Observation(0, 0.3).outcome == 0.3 and Observation(0, math.inf).outcome is None


@pytest.mark.parametrize("schedule", ["rounds", "async"])
@pytest.mark.parametrize("name", NAMES)
def test_pruned_observations_are_learnt_and_resume_exactly(name: str, schedule: str) -> None:
    """Every sampler accepts pruned trials in both schedules, and its state (JSON) resumes exactly."""
    def tell_some(sampler: Sampler, rounds: int) -> list[Candidate]:
        seen = []
        for _ in range(rounds):
            batch = sampler.ask(POP)
            sampler.tell([pruned(c, 1 + c.id % 3, bowl(c)) if c.id % 2 else Observation(c.id, bowl(c))
                          for c in batch])
            seen += batch
        return seen

    original = make(name, seed=4)
    original.set_asynchronous(schedule == "async")
    tell_some(original, 3)
    resumed = make(name, seed=4)
    resumed.set_asynchronous(schedule == "async")
    resumed.load_state_dict(json.loads(json.dumps(original.state_dict())))
    assert same(tell_some(original, 2), tell_some(resumed, 2))
    assert all(MIXED.validate_config(c.config) == c.config for c in run(original, rounds=1))


def test_hazero_ranks_pruned_trials_between_completed_and_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = make("hazero", seed=5, popsize=6)
    batch = sampler.ask(6)
    told: list[list[float]] = []
    es = sampler._es  # type: ignore[attr-defined]
    original_tell = es.tell
    monkeypatch.setattr(es, "tell", lambda xs, fs: (told.append(list(fs)), original_tell(xs, fs)))
    sampler.tell([Observation(batch[0].id, 2.0), pruned(batch[1], 1, -9.0), Observation(batch[2].id, None),
                  pruned(batch[3], 3, 0.5), Observation(batch[4].id, 1.0), pruned(batch[5], 3, 0.1)])
    (fitness,) = told
    assert sorted(range(6), key=lambda i: fitness[i]) == [4, 0, 5, 3, 1, 2]
    assert sampler._best_f == 1.0  # type: ignore[attr-defined]  # a last report is not a best


def test_pshe2_takes_a_pruned_trial_as_best_only_until_one_completes() -> None:
    sampler = make("pshe2", seed=1, popsize=3)
    sampler.set_asynchronous(True)
    a, b, c = sampler.ask(3)
    sampler.tell([pruned(a, 1, 0.05), pruned(b, 2, 0.4)])  # b ran further: the better of the two
    assert sampler.global_f == [2, 0.4]  # type: ignore[attr-defined]
    assert np.allclose(sampler.global_x, 2 * np.asarray(b.point) - 1)  # type: ignore[attr-defined]
    sampler.tell([Observation(c.id, 3.0)])  # completed, with a worse loss than either last report
    assert sampler.global_f == 3.0  # type: ignore[attr-defined]
    assert sampler.best_f == [[1, 0.05], [2, 0.4], 3.0]  # type: ignore[attr-defined]


def test_pshe3_imputes_pruned_trials_between_completed_and_failed() -> None:
    sampler = make("pshe3", seed=0, popsize=4, space=SMALL, n_startup=3)
    batch = sampler.ask(4)
    sampler.tell([Observation(batch[0].id, 0.5), pruned(batch[1], 1, 0.0), Observation(batch[2].id, None),
                  pruned(batch[3], 2, 0.9)])
    _, targets = sampler._targets()  # type: ignore[attr-defined]
    assert sorted(range(4), key=lambda i: targets[i]) == [0, 3, 1, 2]
    only_pruned = make("pshe3", seed=0, popsize=3, space=SMALL, n_startup=2)
    first = only_pruned.ask(3)
    only_pruned.tell([pruned(first[0], 1, 0.1), pruned(first[1], 3, 0.7), Observation(first[2].id, None)])
    _, targets = only_pruned._targets()  # type: ignore[attr-defined]  # a model before anything completed
    assert sorted(range(3), key=lambda i: targets[i]) == [1, 0, 2]
    assert len(only_pruned.ask(2)) == 2


@pytest.mark.parametrize("name", ["bayes", "bayes-gp"])
def test_optuna_samplers_get_pruned_trials_with_their_intermediate_values(name: str) -> None:
    sampler = make(name)
    batch = sampler.ask(POP)
    sampler.tell([pruned(batch[0], 3, 0.25), Observation(batch[1].id, 0.5), Observation(batch[2].id, None)])
    trials = sampler.study.trials  # type: ignore[attr-defined]
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL]
    assert trials[0].intermediate_values == {1: pytest.approx(0.45), 2: pytest.approx(0.35), 3: 0.25}
    assert trials[0].value == 0.25  # Optuna's own rule: a pruned trial's value is its last report
    assert len(sampler.ask(POP)) == POP


@pytest.mark.parametrize("name", NAMES)
def test_adopted_configs_get_ids_are_told_and_never_reach_the_model(name: str) -> None:
    """Population-Based children explored from their parents (not proposed by the sampler) are adopted:
    an id, told once like any candidate, never learnt from; the sampler's own proposals are unchanged."""
    seed = zlib.crc32(name.encode()) % 1000
    plain, mixed = make_async(name, seed=seed), make_async(name, seed=seed)
    own_plain, own_mixed = [], []
    rng = random.Random(seed)
    for step in range(4 * POP):
        (c,) = plain.ask(1)
        plain.tell([Observation(c.id, bowl(c))])
        own_plain.append(c)
        (d,) = mixed.ask(1)
        mixed.tell([Observation(d.id, bowl(d))])
        own_mixed.append(d)
        config = MIXED.decode(np.array([rng.random() for _ in range(MIXED.dim)]))
        adopted = mixed.adopt(config)
        assert adopted.config == MIXED.validate_config(config) and adopted.id in mixed.pending_ids
        if step % 2:  # a resume with an adopted candidate pending
            state = json.loads(json.dumps(mixed.state_dict()))
            mixed = make_async(name, seed=seed)
            mixed.load_state_dict(state)
        mixed.tell([Observation(adopted.id, -100.0)])  # a loss that would pull any model that saw it
    assert [(c.point, c.config) for c in own_plain] == [(c.point, c.config) for c in own_mixed]
    assert mixed.pending_ids == []
    with pytest.raises(SamplerProtocolError, match="already told"):
        mixed.tell([Observation(own_mixed[-1].id + 1, 1.0)])
