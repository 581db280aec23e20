"""Evaluators turn candidates into trial specs: config, budget and parent checkpoint.

``plan`` serves synchronous rounds (a whole population at once); ``plan_next`` serves asynchronous
scheduling (one trial, the moment a slot frees, from the finished trials ranked at that moment).
They plan; they never run anything.  Warm starts are data in the spec (``TrialSpec.parents``), so the
lineage of every trial can be shown and audited from the records alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Collection, Mapping, Sequence

from ..ranking import Leaderboard
from ..records import ParentRef, TrialRecord, TrialSpec
from ..samplers.base import Candidate

#: fall-back parents listed in an asynchronously planned spec, after the chosen one (a spec stays
#: small however long the run: a thousand trials in, the top half would be five hundred)
MAX_FALLBACKS = 4


@dataclass(frozen=True)
class Plan:
    """What an evaluator decided for one trial before it has an id: its parents (chosen first, then
    fall-backs), its generation, its population member, and its searched values, or ``None`` when the
    sampler is to propose them."""

    parents: tuple[ParentRef, ...] = ()
    generation: int = 0
    member: int | None = None
    config: dict[str, Any] | None = None


@dataclass
class PopulationView:
    """What the driver knows when it plans an asynchronous trial: the finished trials, the trials in
    flight, and the parent pool (finished trials whose checkpoints can be loaded, ranked now)."""

    records: Mapping[int, TrialRecord]
    inflight: Mapping[int, TrialSpec]
    pool: Leaderboard
    by_generation: Mapping[int, list[TrialRecord]] = field(default_factory=dict)
    #: trials whose live state an idle worker keeps: a child of one continues in place if it starts now
    warm: Collection[int] = ()


def trial_dir_name(trial_id: int) -> str:
    """Each trial's private folder, relative to the run folder."""
    return f"trials/{trial_id:06d}"


class Evaluator(ABC):
    """Plans the trials of one round."""

    name: ClassVar[str] = ""

    def __init__(
        self,
        budget: float | None = None,
        mode: str = "max",
        timeout: float | None = None,
        fixed: dict[str, Any] | None = None,
        top_fraction: float = 0.5,
    ) -> None:
        self.budget = budget
        self.mode = mode
        self.timeout = timeout
        self.fixed = dict(fixed or {})
        self.top_fraction = top_fraction

    def choose_round(self, round: int, n: int, history: Sequence[TrialRecord]) -> list[Plan]:
        """Synchronous rounds: the plans of a round's ``n`` trials, from every finished trial before it."""
        parents = self._parents(round, n, [r for r in history if r.round < round])
        return [Plan(parents=parents[i], generation=round) for i in range(n)]

    def choose_next(self, ordinal: int, popsize: int, view: PopulationView) -> Plan | None:
        """Asynchronous: the plan of the ``ordinal``-th trial (0-based), or None when no trial can start
        until one in flight ends.  Its generation is the lineage depth for Population-Based trials,
        ``ordinal // popsize`` otherwise, so per-round views still read well."""
        parents, generation = self._next_parents(ordinal, popsize, view.pool)
        return Plan(parents=parents, generation=generation)

    def spec_for(self, candidate: Candidate, plan: Plan, round: int | None = None) -> TrialSpec:
        """The spec of a planned trial, once its candidate (its id and searched values) is known."""
        return TrialSpec(
            trial_id=candidate.id,
            round=plan.generation if round is None else round,
            config={**self.fixed, **candidate.config},
            budget=self.budget,
            trial_dir=trial_dir_name(candidate.id),
            parents=plan.parents,
            timeout=self.timeout,
            member=plan.member,
        )

    def plan(self, round: int, candidates: Sequence[Candidate], history: Sequence[TrialRecord]) -> list[TrialSpec]:
        """Specs for this round's candidates, given every finished trial of earlier rounds."""
        parents = self._parents(round, len(candidates), [r for r in history if r.round < round])
        return [
            TrialSpec(
                trial_id=c.id,
                round=round,
                config={**self.fixed, **c.config},
                budget=self.budget,
                trial_dir=trial_dir_name(c.id),
                parents=parents[i],
                timeout=self.timeout,
            )
            for i, c in enumerate(candidates)
        ]

    def plan_next(self, candidate: Candidate, ordinal: int, popsize: int, pool: Leaderboard) -> TrialSpec:
        """The spec of the ``ordinal``-th trial of an asynchronous run (0-based).

        ``pool``: finished trials that can be parents, ranked now.  Its ``round`` is the trial's
        generation, so per-round views still read well: the lineage depth for Population-Based
        trials, ``ordinal // popsize`` otherwise."""
        parents, generation = self._next_parents(ordinal, popsize, pool)
        return TrialSpec(
            trial_id=candidate.id,
            round=generation,
            config={**self.fixed, **candidate.config},
            budget=self.budget,
            trial_dir=trial_dir_name(candidate.id),
            parents=parents,
            timeout=self.timeout,
        )

    def _next_parents(self, ordinal: int, popsize: int, pool: Leaderboard) -> tuple[tuple[ParentRef, ...], int]:
        """Parents (chosen first, then fall-backs) and generation of an asynchronous trial: from scratch."""
        return (), ordinal // max(1, popsize)

    @abstractmethod
    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        """For each of ``n`` new trials, the parent checkpoints to try in order (empty: from scratch)."""
