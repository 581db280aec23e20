"""Population-Based training's explore and exploit rules (autotune.evaluators.explore and .pbt).

Explore: ``perturb`` moves each value from the parent's (factors on floats, one step on grids, a
resample with probability 0.25, always clipped to the space); ``trust-gp`` proposes near the parent
from a Gaussian process of step gains; ``sampler`` leaves configs to the sampler. Exploit:
``quantile`` replaces the bottom quantile of a generation by children of its top quantile, the rest
continue their own lineage with their own hyperparameters; ``round-robin`` is AutoDL Finetuner's.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

import autotune
from autotune.errors import ConfigError
from autotune.evaluators.explore import (
    LOG_FACTORS,
    PERTURB,
    TRUST_GP,
    explore,
    perturb_value,
    rng_for,
    step_pairs,
    trust_radius,
)
from autotune.evaluators.pbt import quantile_split
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.records import COMPLETED
from autotune.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from conftest import cli, error_line, objective

LR = FloatParam("lr", 1e-5, 1e-1, log=True)
MOMENTUM = FloatParam("momentum", 0.0, 0.99)
BATCH = IntParam("batch", 8, 256, log=True)
LAYERS = IntParam("layers", 1, 9, step=2)
WIDTH = CategoricalParam("width", (64, 128, 256, 512))
OPT = CategoricalParam("opt", ("sgd", "adam", "adamw"))
SPACE = SearchSpace((LR, MOMENTUM, BATCH, LAYERS, WIDTH, OPT))


def moves(p, value, n=4000, seed=0):
    """The values ``perturb_value`` gives over ``n`` draws, as a list."""
    rng = np.random.default_rng(seed)
    return [perturb_value(p, value, rng) for _ in range(n)]


def test_a_log_float_moves_by_a_factor_of_0_8_or_1_25_else_is_resampled():
    out = moves(LR, 1e-3)
    moved = [v for v in out if math.isclose(v, 8e-4) or math.isclose(v, 1.25e-3)]
    assert 0.70 < len(moved) / len(out) < 0.80  # 0.25 of the draws are resamples
    assert abs(sum(math.isclose(v, 8e-4) for v in moved) / len(moved) - 0.5) < 0.05
    assert LOG_FACTORS[0] * LOG_FACTORS[1] == pytest.approx(1.0)  # down then up comes back
    resampled = [v for v in out if v not in moved]
    assert min(resampled) < 1e-4 and max(resampled) > 1e-2  # from the whole space, not near the parent


def test_a_linear_float_moves_by_0_8_or_1_2_and_stays_in_its_bounds():
    assert {round(v, 9) for v in moves(MOMENTUM, 0.5) if v in (0.4, 0.6)} == {0.4, 0.6}
    top = moves(MOMENTUM, 0.99)
    assert all(0.0 <= v <= 0.99 for v in top) and 0.99 in top  # x1.2 is clipped, never 1.188
    low = moves(LR, 1e-5)
    assert all(1e-5 <= v <= 1e-1 for v in low) and min(low) == 1e-5


def test_integers_move_one_step_of_their_grid_and_ordered_choices_a_neighbour():
    layers = set(moves(LAYERS, 5, n=400))
    assert {3, 7} <= layers and layers <= {1, 3, 5, 7, 9}
    assert set(moves(LAYERS, 9, n=400)) <= {1, 3, 5, 7, 9}  # clipped at the top of the grid
    batches = moves(BATCH, 32)
    assert {26, 40} <= set(batches)  # 32 x 0.8, 32 x 1.25 (a log integer moves by the factor)
    assert set(moves(BATCH, 8, n=400)) >= {8, 10}  # from the bottom: 8 x 0.8 is clipped to 8
    assert all(8 <= b <= 256 for b in batches)
    widths = moves(WIDTH, 128)
    near = [w for w in widths if w in (64, 256)]
    assert 0.82 < len(near) / len(widths) < 0.93  # 0.75 neighbours, plus resamples that land there (0.125)
    assert 0.03 < widths.count(128) / len(widths) < 0.09  # only a resample stays put
    assert set(moves(WIDTH, 512, n=400)) <= set(WIDTH.choices)


def test_a_categorical_is_resampled():
    out = moves(OPT, "sgd", n=3000)
    assert {"sgd", "adam", "adamw"} == set(out)
    assert all(abs(out.count(c) / len(out) - 1 / 3) < 0.05 for c in OPT.choices)


@pytest.mark.parametrize("rule", [PERTURB, TRUST_GP])
def test_explore_rules_make_valid_configs_the_same_way_every_time(rule):
    """The conformance of explore rules: valid configs, a pure function of seed, ordinal and history."""
    records = _history()
    parent = records[-1]
    made = [explore(rule, SPACE, parent, records, "max", 7, ordinal, set()) for ordinal in range(30, 36)]
    for config in made:
        SPACE.validate_config(config)  # raises on a value outside the space
    again = [explore(rule, SPACE, parent, records, "max", 7, ordinal, set()) for ordinal in range(30, 36)]
    assert made == again  # a resumed run explores the same
    other = [explore(rule, SPACE, parent, records, "max", 8, ordinal, set()) for ordinal in range(30, 36)]
    assert made != other
    assert len({repr(c) for c in made}) > 1


def test_trust_gp_stays_in_its_trust_region_and_learns_the_step_gain():
    """Children whose learning rate is near 3e-3 gain; the rule's children move there, inside the region."""
    records = _history(n=40)
    parent = max(records, key=lambda r: r.value)
    here = SPACE.encode({k: parent.config[k] for k in SPACE.names})
    pairs = step_pairs(SPACE, records, "max")
    radius = trust_radius(pairs, set())
    for ordinal in range(50, 56):
        config = explore(TRUST_GP, SPACE, parent, records, "max", 0, ordinal, set())
        point = SPACE.encode(config)
        numeric = [i for i, p in enumerate(SPACE.params) if not (isinstance(p, CategoricalParam) and p is OPT)]
        assert np.all(np.abs(point[numeric] - here[numeric]) <= radius + 0.5 / 4 + 1e-9)  # within a grid cell of the box
        assert abs(math.log10(config["lr"]) - math.log10(3e-3)) <= abs(math.log10(parent.config["lr"]) - math.log10(3e-3)) + 0.45


def test_the_trust_region_shrinks_after_failures_and_grows_after_successes():
    from autotune.evaluators.explore import RADIUS_START, Pair

    def pair(i, gain):
        return Pair(np.zeros(1), 0.0, 0.0, np.zeros(1), gain, child_id=i)

    base = [pair(i, 1.0) for i in range(5)]
    fails = base + [pair(10 + i, 0.0) for i in range(3)]
    assert trust_radius(fails, {10, 11, 12}) == RADIUS_START / 2
    assert trust_radius(fails, set()) == RADIUS_START  # only the rule's own children count
    wins = base + [pair(10 + i, 2.0) for i in range(2)]
    assert trust_radius(wins, {10, 11}) == pytest.approx(RADIUS_START * 1.5)


def test_quantile_split_is_ray_tunes_rule_at_most_half():
    assert [quantile_split(n, 0.25) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]
    assert quantile_split(10, 0.5) == 5 and quantile_split(3, 0.5) == 1


def _history(n: int = 12):
    """A run's records: parents and children whose gain peaks at lr=3e-3."""
    from autotune.records import TrialRecord

    rng = random.Random(3)
    out = []
    for i in range(n):
        config = {"lr": 10 ** rng.uniform(-5, -1), "momentum": rng.uniform(0, 0.99), "batch": rng.choice([16, 32, 64]),
                  "layers": rng.choice([1, 3, 5]), "width": rng.choice([64, 128]), "opt": rng.choice(["sgd", "adam"])}
        parent = out[rng.randrange(len(out))] if out and i >= 4 else None
        gain = 1.0 - abs(math.log10(config["lr"]) - math.log10(3e-3))
        value = (parent.value if parent else 0.0) + gain
        out.append(TrialRecord(trial_id=i, round=(parent.round + 1) if parent else 0, config=config, budget=1,
                               status=COMPLETED, reason=None, value=value, reports=[], planned_parent_id=None,
                               parent_id=parent.trial_id if parent else None, parent_checkpoint=None, parent_step=None,
                               parent_hash=None, parent_note=None, checkpoint=f"trials/{i}/checkpoint",
                               checkpoint_step=1, checkpoint_hash="h", started=i, ended=i + 1, node=None, gpu_ids=[],
                               log_tail=None, trial_dir=f"trials/{i}", member=i % 4))
    return out


# -- exploit, through the driver -------------------------------------------------------------------
PBT_SPACE = {"metric": "score", "mode": "max", "budget": 1,
             "params": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}}}


def curve(config, budget, parent):
    """One report per trial; the score grows by a step that peaks at lr=0.03 (x does not matter)."""
    start = parent.value if parent is not None else 0.0
    gain = 1.0 - abs(math.log10(config["lr"]) - math.log10(0.03))
    rng = random.Random(f"{config['x']:.12f}")
    return SimTrial(curve=(start + gain,), duration=1.0 + rng.random())


def searched(record):
    return {k: record.config[k] for k in ("x", "lr")}


def run(tmp_path, name, **kw):
    opts = dict(sampler="random", evaluator="pbt", rounds=6, popsize=8, seed=1, output=tmp_path, name=name,
                pbt_exploit="quantile", pbt_explore="perturb")
    opts.update(kw)
    return autotune.run(objective("quadratic"), space=PBT_SPACE, executor=SimulatedExecutor(curve, slots=4), **opts)


def test_quantile_in_rounds_replaces_the_bottom_and_the_rest_continue(tmp_path):
    result = run(tmp_path, "r", schedule="rounds")
    frame = result.trials  # the member is data, in the DataFrame (and the API) too
    assert list(frame["member"]) == [r.member for r in result.records] and not frame["in_place"].any()
    by_round: dict[int, list] = {}
    for r in result.records:
        by_round.setdefault(r.round, []).append(r)
    k = quantile_split(8, 0.25)
    assert k == 2
    for rnd in range(1, 6):
        before = sorted(by_round[rnd - 1], key=lambda r: (-r.value, r.trial_id))
        heads = {r.member: r for r in before}
        top, bottom = {r.trial_id for r in before[:k]}, {r.trial_id for r in before[-k:]}
        assert sorted(r.member for r in by_round[rnd]) == list(range(8))  # every member takes one step
        for child in by_round[rnd]:
            head = heads[child.member]
            if head.trial_id in bottom:  # replaced: a child of the top quantile, explored from it
                assert child.parent_id in top and child.parent_id != head.trial_id
                assert searched(child) != searched(result.records[child.parent_id])
            else:  # continues its own lineage with its own hyperparameters
                assert child.parent_id == head.trial_id and searched(child) == searched(head)
            parent = result.records[child.parent_id]
            assert child.parent_hash == parent.checkpoint_hash and child.parent_step == parent.checkpoint_step


def test_quantile_async_gives_each_member_the_verdict_of_its_whole_generation(tmp_path):
    """Asynchronously a member is judged as in rounds (the bottom quantile of all its generation is
    replaced), as soon as the verdict is sure, not among the few trials that finished first."""
    # seed 2: one where judging a member among the first of its generation to finish gives other verdicts
    result = run(tmp_path, "a", schedule="async", rounds=8, seed=2)
    records = result.records
    assert sorted({r.member for r in records}) == list(range(8))
    generations: dict[int, list] = {}
    for r in records:
        generations.setdefault(r.round, []).append(r)
    k = quantile_split(8, 0.25)
    replaced = continued = 0
    for child in records[8:]:
        parent = records[child.parent_id]
        previous = max((r for r in records if r.member == child.member and r.trial_id < child.trial_id),
                       key=lambda r: r.trial_id)  # the member's last trial before this one
        assert previous.ended <= child.started and child.round == parent.round + 1
        generation = sorted(generations[previous.round], key=lambda r: (-r.value, r.trial_id))
        assert len(generation) == 8  # a verdict came only once sure: the generation was completed
        bottom = {r.trial_id for r in generation[-k:]}
        if parent.trial_id == previous.trial_id:
            continued += 1
            assert previous.trial_id not in bottom and searched(child) == searched(previous)
        else:
            replaced += 1
            assert previous.trial_id in bottom and parent.round == previous.round
            known = sorted((r for r in generation if r.ended <= child.started), key=lambda r: (-r.value, r.trial_id))
            assert parent.trial_id in {r.trial_id for r in known[:k]}
    assert replaced and continued


def _view(rows, inflight=(), popsize=4):
    """A PopulationView of finished trials ``(id, member, round, value or None)`` and trials in flight
    ``(id, member, round)``."""
    from autotune.evaluators.base import PopulationView
    from autotune.ranking import Leaderboard
    from autotune.records import FAILED, TrialRecord, TrialSpec

    records = {}
    for tid, member, rnd, value in rows:
        records[tid] = TrialRecord(
            trial_id=tid, round=rnd, config={"x": 0.5, "lr": 0.01}, budget=1,
            status=COMPLETED if value is not None else FAILED, reason=None, value=value, reports=[],
            planned_parent_id=None, parent_id=None, parent_checkpoint=None, parent_step=None, parent_hash=None,
            parent_note=None, checkpoint=f"trials/{tid}/checkpoint" if value is not None else None, checkpoint_step=1,
            checkpoint_hash="h", started=tid, ended=tid + 1, node=None, gpu_ids=[], log_tail=None,
            trial_dir=f"trials/{tid}", member=member)
    flying = {tid: TrialSpec(trial_id=tid, round=rnd, config={"x": 0.5, "lr": 0.01}, budget=1,
                             trial_dir=f"trials/{tid}", member=member) for tid, member, rnd in inflight}
    pool = Leaderboard("max", lambda r: r.status == COMPLETED and bool(r.checkpoint))
    for r in records.values():
        pool.add(r)
    return PopulationView(records=records, inflight=flying, pool=pool)


def _evaluator():
    from autotune.evaluators.pbt import PopulationBasedEvaluator
    from autotune.space import SearchSpace

    return PopulationBasedEvaluator(mode="max", space=SearchSpace.from_dict({"params": PBT_SPACE["params"]}), explore="perturb",
                                    exploit="quantile", seed=0)


def test_an_async_member_waits_while_its_generations_trials_in_flight_could_change_its_verdict():
    ev = _evaluator()
    # members 0 and 1 finished generation 0 (0 scored higher), 2 and 3 still run it; 1 in 4 is replaced
    plan = ev.choose_next(4, 4, _view([(0, 0, 0, 0.9), (1, 1, 0, 0.5)], [(2, 2, 0), (3, 3, 0)]))
    assert plan.member == 0 and plan.parents[0].trial_id == 0  # one below it already: it continues
    # member 1 alone is ready: one of the two in flight may still score below it, so it waits
    assert ev.choose_next(5, 4, _view([(0, 0, 0, 0.9), (1, 1, 0, 0.5)], [(2, 2, 0), (3, 3, 0), (4, 0, 1)])) is None
    # both others finished above it: the bottom of four, replaced by a child of the top
    plan = ev.choose_next(5, 4, _view([(0, 0, 0, 0.9), (1, 1, 0, 0.5), (2, 2, 0, 0.7), (3, 3, 0, 0.8)],
                                      [(4, 0, 1)]))
    assert plan.member == 1 and plan.parents[0].trial_id == 0 and plan.generation == 1
    # a failed trial neither waits nor holds the others up: 2 failed, 3 runs, and 1 is sure once 3 ends
    rows = [(0, 0, 0, 0.9), (1, 1, 0, 0.5), (2, 2, 0, None)]
    plan = ev.choose_next(5, 4, _view(rows, [(3, 3, 0), (4, 0, 1)]))
    assert plan.member == 2 and plan.parents[0].trial_id == 0  # 1 waits; the failed member is replaced at once
    assert ev.choose_next(5, 4, _view(rows, [(3, 3, 0), (4, 0, 1), (5, 2, 1)])) is None
    plan = ev.choose_next(6, 4, _view([*rows, (3, 3, 0, 0.6)], [(4, 0, 1), (5, 2, 1)]))
    assert plan.member == 1 and plan.parents[0].trial_id != 1  # the lowest of three scored: replaced


def test_the_population_does_not_collapse_to_one_learning_rate(tmp_path):
    """Perturbation keeps the spread of the last generation's learning rates (FIRE PBT's worry)."""
    result = run(tmp_path, "spread", schedule="rounds", rounds=10, popsize=8)
    last = [r for r in result.records if r.round == 9]
    logs = [math.log10(r.config["lr"]) for r in last]
    assert len({round(v, 6) for v in logs}) >= 3
    assert max(r.value for r in last) > max(r.value for r in result.records if r.round == 0) + 5


def test_explore_and_exploit_come_from_the_space_defaults_and_flags_override(tmp_path):
    space = tmp_path / "s.yaml"
    import yaml

    space.write_text(yaml.safe_dump({**PBT_SPACE, "defaults": {"pbt_explore": "trust-gp", "quantile_fraction": 0.5}}))
    result = autotune.run(objective("quadratic"), space=str(space), sampler="random", rounds=1, popsize=2,
                          output=tmp_path, name="d", executor="local")
    s = result.settings
    assert (s.pbt_explore, s.pbt_exploit, s.quantile_fraction) == ("trust-gp", "quantile", 0.5)
    result = autotune.run(objective("quadratic"), space=str(space), sampler="random", rounds=1, popsize=2,
                          output=tmp_path, name="f", executor="local", pbt_explore="sampler", pbt_exploit="round-robin")
    assert (result.settings.pbt_explore, result.settings.pbt_exploit) == ("sampler", "round-robin")


def test_bad_explore_settings_name_what_was_expected(tmp_path):
    with pytest.raises(ConfigError, match=r"pbt_explore must be one of 'perturb', 'trust-gp', 'sampler', but got 'jitter'"):
        autotune.run(objective("quadratic"), space=PBT_SPACE, output=tmp_path, name="x", executor="local",
                     pbt_explore="jitter")
    with pytest.raises(ConfigError, match=r"quantile_fraction must be a number in \(0, 0.5\], but got 0.75"):
        autotune.run(objective("quadratic"), space=PBT_SPACE, output=tmp_path, name="y", executor="local",
                     quantile_fraction=0.75)
    space = tmp_path / "bad.yaml"
    space.write_text("metric: score\ndefaults:\n  pbt_exploit: best\nparams:\n  x: {type: float, low: 0, high: 1}\n")
    proc = cli("run", objective("quadratic"), "--space", str(space), "--executor", "local", "--output", str(tmp_path))
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert "bad.yaml" in line and "pbt_exploit" in line and "'quantile' or 'round-robin'" in line
    proc = cli("run", "--help")
    assert "--pbt-explore" in proc.stdout and "trust-gp" in proc.stdout and "--quantile-fraction" in proc.stdout


def test_async_members_advance_level_and_continue_in_place_where_their_state_is_warm(tmp_path):
    """A member never runs a generation ahead of one waiting (unless that one waits for its generation's
    verdict); among the members of the lowest generation, one whose live state an idle worker keeps goes
    first, so most continuing steps run in place."""
    def steady(config, budget, parent):
        start = parent.value if parent is not None else 0.0
        return SimTrial(curve=(start + 1.0 - abs(math.log10(config["lr"]) - math.log10(0.03)),), duration=1.0)

    ex = SimulatedExecutor(steady, slots=2, load_s=0.5, keep_states=2)
    result = autotune.run(objective("quadratic"), space=PBT_SPACE, executor=ex, sampler="random", evaluator="pbt",
                          rounds=8, popsize=5, seed=3, output=tmp_path, name="warm")
    records = result.records
    for child in records[5:]:
        earlier = [r for r in records if r.trial_id < child.trial_id]
        heads = {}
        for r in earlier:
            heads[r.member] = r
        waiting = [h for h in heads.values() if h.ended <= child.started and h.member != child.member]
        mine = heads[child.member]
        for h in waiting:  # nobody left behind, but one whose generation's verdict is not yet sure
            assert mine.round <= h.round or any(r.round == h.round and r.ended > child.started
                                                for r in records), child.trial_id
    continuing = [r for r in records[5:] if records[r.parent_id].member == r.member]
    assert continuing and sum(r.in_place for r in continuing) >= 0.6 * len(continuing)
