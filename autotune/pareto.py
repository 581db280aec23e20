"""Several objectives and constraints: Pareto ranks, crowding, hypervolume, and constraint expressions.

Losses are minimised (a ``max`` objective is sign-flipped first, as :func:`autotune.ranking.loss_of`
does for one).  Constraints follow Optuna's convention: a value ``<= 0`` is satisfied, and a trial is
feasible when every one is.  Ranking follows MO-PBT (Dushatskiy et al., 2023) and NSGA-II: feasible
trials by non-dominated front, then by crowding distance (the spread a selection keeps); infeasible
ones after them all, by how far they miss.  Pure functions over plain sequences: the pbt evaluator,
multi-objective ASHA, the samplers and the readers share them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from .errors import ConfigError

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every loss and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def fronts(points: Sequence[Point]) -> list[list[int]]:
    """Indices by non-dominated front, best front first (the fast non-dominated sort of NSGA-II)."""
    n = len(points)
    beaten_by = [0] * n
    beats: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                beats[i].append(j)
                beaten_by[j] += 1
            elif dominates(points[j], points[i]):
                beats[j].append(i)
                beaten_by[i] += 1
    out: list[list[int]] = []
    current = [i for i in range(n) if beaten_by[i] == 0]
    while current:
        out.append(current)
        nxt = []
        for i in current:
            for j in beats[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    nxt.append(j)
        current = sorted(nxt)
    return out


def crowding(points: Sequence[Point], front: Sequence[int]) -> dict[int, float]:
    """NSGA-II's crowding distance of each member of one front: the ends of every objective get inf."""
    dist = {i: 0.0 for i in front}
    if len(front) <= 2:
        return {i: math.inf for i in front}
    for k in range(len(points[front[0]])):
        order = sorted(front, key=lambda i: (points[i][k], i))
        lo, hi = points[order[0]][k], points[order[-1]][k]
        dist[order[0]] = dist[order[-1]] = math.inf
        if hi == lo:
            continue
        for a, b, c in zip(order, order[1:], order[2:]):
            dist[b] += (points[c][k] - points[a][k]) / (hi - lo)
    return dist


def order(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """Every index, best first: feasible ones by front, then by crowding (wider first), then by index;
    infeasible ones (a positive total violation) after them, least violation first."""
    viol = list(violations) if violations is not None else [0.0] * len(points)
    feasible = [i for i in range(len(points)) if viol[i] <= 0]
    ranked: list[int] = []
    sub = [points[i] for i in feasible]
    for front in fronts(sub):
        members = [feasible[i] for i in front]
        dist = crowding(points, members)
        ranked.extend(sorted(members, key=lambda i: (-dist[i], i)))
    ranked.extend(sorted((i for i in range(len(points)) if viol[i] > 0), key=lambda i: (viol[i], i)))
    return ranked


def pareto_set(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """The first front among the feasible points (by index); empty when none is feasible."""
    viol = list(violations) if violations is not None else [0.0] * len(points)
    feasible = [i for i in range(len(points)) if viol[i] <= 0]
    first = fronts([points[i] for i in feasible])
    return sorted(feasible[i] for i in first[0]) if first else []


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume the points dominate up to ``reference`` (losses; points not below it in every loss add
    nothing).  Exact: a sweep in 2-D, slicing along the last objective above that (HSO), which is fast
    for the fronts of a search (hundreds of points, 2-4 objectives)."""
    pts = [tuple(float(x) for x in p) for p in points if all(x < r for x, r in zip(p, reference))]
    if not pts:
        return 0.0
    ref = tuple(float(r) for r in reference)
    first = fronts(pts)[0]
    return _hv(sorted({pts[i] for i in first}), ref)


def _hv(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    d = len(ref)
    if d == 1:
        return ref[0] - min(p[0] for p in pts)
    if d == 2:
        total, best_y = 0.0, ref[1]
        for x, y in sorted(pts):
            if y < best_y:
                total += (ref[0] - x) * (best_y - y)
                best_y = y
        return total
    by_last = sorted(pts, key=lambda p: p[-1])
    total = 0.0
    for k, p in enumerate(by_last):
        top = by_last[k + 1][-1] if k + 1 < len(by_last) else ref[-1]
        if top <= p[-1]:
            continue
        below = [q[:-1] for q in by_last[:k + 1]]
        slab = [below[i] for i in fronts(below)[0]]
        total += _hv(sorted(set(slab)), ref[:-1]) * (top - p[-1])
    return total


# -- constraints ------------------------------------------------------------------------------------
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric OP bound``, as a space file writes it (``"latency_ms <= 20"``)."""

    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        m = _CONSTRAINT.match(str(text))
        if m is None:
            raise ConfigError(f"constraint {text!r}: expected METRIC <= NUMBER (or >=, <, >), "
                              "for example 'latency_ms <= 20'")
        return cls(m.group(1), m.group(2), float(m.group(3)))

    def violation(self, metrics: Mapping[str, float]) -> float:
        """Optuna's convention: ``<= 0`` is satisfied; a missing or non-finite metric is infinitely far."""
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(float(value)):
            return math.inf
        value = float(value)
        gap = value - self.bound if self.op in ("<=", "<") else self.bound - value
        if gap == 0 and self.op in ("<", ">"):  # on the bound of a strict one: missed, by the least
            return math.ulp(abs(self.bound) or 1.0)
        return gap

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def total_violation(values: Sequence[float]) -> float:
    """The sum of the positive parts: 0 when every constraint holds."""
    return sum(max(0.0, v) for v in values)


__all__ = ["Constraint", "crowding", "dominates", "fronts", "hypervolume", "order", "pareto_set",
           "total_violation"]
