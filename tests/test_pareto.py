"""autotune.pareto: non-dominated fronts, crowding, hypervolume (against Optuna's own) and constraints."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from autotune.errors import ConfigError
from autotune.pareto import Constraint, crowding, dominates, fronts, hypervolume, order, pareto_set, total_violation


def test_dominance_and_fronts():
    pts = [(1, 5), (2, 2), (5, 1), (3, 3), (4, 4), (2, 2)]
    assert dominates((1, 1), (1, 2)) and not dominates((1, 2), (1, 2)) and not dominates((1, 5), (5, 1))
    assert fronts(pts) == [[0, 1, 2, 5], [3], [4]]  # equal points share a front
    assert fronts([]) == []


def test_crowding_gives_the_ends_infinity_and_the_middle_its_spread():
    pts = [(0.0, 4.0), (1.0, 2.0), (3.0, 1.0), (4.0, 0.0)]
    d = crowding(pts, [0, 1, 2, 3])
    assert d[0] == d[3] == math.inf
    assert d[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4) and d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)


def test_order_puts_feasible_fronts_first_and_infeasible_by_violation():
    pts = [(1, 5), (2, 2), (5, 1), (3, 3), (0, 0), (0.5, 0.5)]
    viol = [0, 0, 0, 0, 2.0, 0.5]  # the two best points break a constraint
    ranked = order(pts, viol)
    assert set(ranked[:3]) == {0, 1, 2} and ranked[3] == 3 and ranked[4:] == [5, 4]
    assert pareto_set(pts, viol) == [0, 1, 2]
    assert pareto_set(pts, [1.0] * 6) == []


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_hypervolume_matches_optunas(dims):
    from optuna._hypervolume import compute_hypervolume

    rng = random.Random(dims)
    for _ in range(20):
        pts = [tuple(rng.random() for _ in range(dims)) for _ in range(rng.randint(1, 25))]
        ref = (1.1,) * dims
        assert hypervolume(pts, ref) == pytest.approx(compute_hypervolume(np.array(pts), np.array(ref)), rel=1e-9)


def test_hypervolume_edges():
    assert hypervolume([], (1, 1)) == 0.0
    assert hypervolume([(2, 0.5)], (1, 1)) == 0.0  # beyond the reference: nothing
    assert hypervolume([(0.5, 0.5), (0.5, 0.5)], (1, 1)) == pytest.approx(0.25)
    assert hypervolume([(0.0, 0.5), (0.5, 0.0)], (1, 1)) == pytest.approx(0.75)


def test_constraints_parse_and_follow_optunas_sign():
    c = Constraint.parse("latency_ms <= 20")
    assert (c.metric, c.op, c.bound) == ("latency_ms", "<=", 20.0) and str(c) == "latency_ms <= 20"
    assert c.violation({"latency_ms": 15}) == -5 and c.violation({"latency_ms": 25}) == 5
    assert c.violation({"latency_ms": 20}) == 0  # on the bound: satisfied
    assert c.violation({}) == math.inf and c.violation({"latency_ms": float("nan")}) == math.inf
    strict = Constraint.parse("params>1e6")
    assert strict.violation({"params": 1e6}) > 0 and strict.violation({"params": 2e6}) < 0
    assert total_violation([-1.0, 2.0, 0.5]) == 2.5 and total_violation([-1.0, 0.0]) == 0.0
    for bad in ("latency_ms == 20", "<= 20", "latency ms <= 20", "latency_ms <= fast"):
        with pytest.raises(ConfigError, match="expected METRIC <= NUMBER"):
            Constraint.parse(bad)
