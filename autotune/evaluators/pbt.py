"""Population-Based: later trials warm-start from the best checkpoints of earlier ones.

The population has ``popsize`` members; the first trial of each trains from scratch with a config the
sampler proposes. Two exploit rules choose what each later trial continues from:

* ``quantile`` (Ray Tune's and Syne Tune's truncation selection): a member's last trial is ranked
  against the trials of its own generation (the same lineage depth, so the same training), never
  against trials steps ahead or behind. In the bottom ``quantile_fraction`` (at least one of two,
  at most half) the member is replaced: its next trial is a child of one of the top quantile, drawn
  at random, with hyperparameters from the explore rule (:mod:`autotune.evaluators.explore`).
  Otherwise the member continues its own lineage with its own hyperparameters. A failed trial, or
  one whose checkpoint is gone, is always replaced. In rounds, every member of the round before is
  judged at once. Asynchronously, a member whose last trial has ended gets the verdict its whole
  generation would give, as soon as it is sure: it continues once enough of its generation rank
  below it, is replaced once too few can still come below it, and waits while its trials' peers in
  flight could still change that. The next trial goes to a member so judged, of the lowest
  generation first, then one whose live state an idle worker keeps (it continues in place), then
  the one waiting longest.
* ``round-robin`` (AutoDL Finetuner's): the trials of all earlier rounds that left a checkpoint are
  ranked, the top fraction (``top_fraction``, default the top half) become parents, and new trials
  are assigned to them in turn, best first; each new config comes from the sampler.

With the ``sampler`` explore rule every config after the first generation is the sampler's (with
``quantile``, a continuing member gets one too): the exploit rule picks only the checkpoint.

Each spec also lists other good parents, in rank order, as fall-backs for a checkpoint that turns out
missing or corrupt when the child starts. With ``keep_checkpoints`` set, trials whose checkpoints
were deleted leave the pool. Every decision is a function of the run's seed, the trial's ordinal and
the trials finished or in flight, so a resumed run decides the same.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from ..errors import ConfigError
from ..schema import BY_NAME
from ..ranking import Leaderboard, loss_of
from ..records import COMPLETED, ParentRef, TrialRecord, TrialSpec
from ..space import SearchSpace
from .base import MAX_FALLBACKS, Evaluator, Plan, PopulationView
from .explore import SAMPLER, check_explore, explore, rng_for

EXPLOIT_RULES = BY_NAME["pbt_exploit"].choices

QUANTILE, ROUND_ROBIN = EXPLOIT_RULES


def check_exploit(name: Any) -> str:
    return BY_NAME["pbt_exploit"].check(name)


def quantile_split(n: int, fraction: float) -> int:
    """How many trials of ``n`` make the top (and the bottom) quantile: Ray Tune's rule, at most half."""
    k = int(math.ceil(n * fraction))
    return min(k, n // 2)


class PopulationBasedEvaluator(Evaluator):
    name = "pbt"

    def __init__(self, *args: Any, space: SearchSpace | None = None, explore: str = SAMPLER,
                 exploit: str = ROUND_ROBIN, quantile_fraction: float = 0.25, seed: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.explore_rule = check_explore(explore)
        self.exploit_rule = check_exploit(exploit)
        BY_NAME["quantile_fraction"].check(quantile_fraction)
        if self.explore_rule != SAMPLER and space is None:
            raise ConfigError(f"the {self.explore_rule} explore rule needs the search space")
        self.quantile_fraction = float(quantile_fraction)
        self.space = space
        self.seed = seed

    @staticmethod
    def can_parent(record: TrialRecord) -> bool:
        """Admission to the parent pool (with a :class:`Leaderboard`, which also asks for a score)."""
        return record.status == COMPLETED and bool(record.checkpoint) and not record.checkpoint_removed

    @staticmethod
    def _ref(r: TrialRecord) -> ParentRef:
        return ParentRef(trial_id=r.trial_id, checkpoint=r.checkpoint, step=r.checkpoint_step,  # type: ignore[arg-type]
                         hash=r.checkpoint_hash, value=r.value)

    # -- quantile ------------------------------------------------------------------------------
    def choose_next(self, ordinal: int, popsize: int, view: PopulationView) -> Plan | None:
        if self.exploit_rule == ROUND_ROBIN:
            return super().choose_next(ordinal, popsize, view)
        if ordinal < popsize:
            return Plan(generation=0, member=ordinal)
        heads = self._heads(view.records, view.inflight)
        ready = []
        for member, tid in heads.items():
            head = view.records.get(tid)
            if head is not None:  # its last trial has ended: the member is free for its next step
                ready.append((head.round, head.trial_id not in view.warm, head.ended or 0.0, head.trial_id, member))
        if not ready:
            return None
        # the lowest generation first (no member runs ahead of one waiting), then one whose state an idle
        # worker keeps (it continues in place), then the longest waiting; the first whose verdict is sure
        records = list(view.records.values())
        for *_, tid, member in sorted(ready):
            head = view.records[tid]
            # the other members that may still finish a trial of head's generation
            coming = sum(1 for m, t in heads.items() if m != member and (
                view.inflight[t].round <= head.round if t in view.inflight else view.records[t].round < head.round))
            plan = self._judge(head, member, self._peers(head, view), view.pool, records, ordinal, coming)
            if plan is not None:
                return plan
        return None  # every ready member's verdict waits for trials in flight

    @staticmethod
    def _peers(head: TrialRecord, view: PopulationView) -> list[TrialRecord]:
        return view.by_generation.get(head.round) or [r for r in view.records.values() if r.round == head.round]

    def choose_round(self, round: int, n: int, history: Sequence[TrialRecord]) -> list[Plan]:
        if self.exploit_rule == ROUND_ROBIN:
            return super().choose_round(round, n, history)
        if round == 0:
            return [Plan(generation=0, member=i) for i in range(n)]
        previous = [r for r in history if r.round == round - 1 and r.member is not None]
        heads = {r.member: r for r in previous}
        pool = Leaderboard(self.mode, self.can_parent)
        for r in history:
            pool.add(r)
        plans = []
        for member in range(n):
            head = heads.get(member)
            ordinal = round * n + member
            if head is None:  # a member that never ran (a run resumed from an older version): the best parent
                plans.append(self._replace(None, member, previous, pool, history, ordinal))
            else:
                plans.append(self._judge(head, member, previous, pool, history, ordinal))
        return [Plan(p.parents, round, p.member, p.config) for p in plans]

    def _heads(self, records: Any, inflight: Any) -> dict[int, int]:
        """Each member's latest trial (finished or in flight)."""
        heads: dict[int, int] = {}
        for group in (records.values(), inflight.values()):
            for r in group:
                if r.member is not None and r.trial_id > heads.get(r.member, -1):
                    heads[r.member] = r.trial_id
        return heads

    def _ranked(self, peers: Sequence[TrialRecord]) -> list[TrialRecord]:
        scored = [(loss, r.trial_id, r) for r in peers if (loss := loss_of(r, self.mode)) is not None]
        return [r for _, _, r in sorted(scored, key=lambda t: (t[0], t[1]))]

    def _judge(self, head: TrialRecord, member: int, peers: Sequence[TrialRecord], pool: Leaderboard,
               records: Sequence[TrialRecord], ordinal: int, coming: int = 0) -> Plan | None:
        """Continue ``head``'s lineage, or replace the member when ``head`` is in the bottom quantile.

        ``coming`` (asynchronous): how many trials of ``head``'s generation may still finish.  The verdict
        is the one the whole generation would give: ``head`` continues once enough finished peers rank
        below it that it cannot end in the bottom quantile, is replaced once too few can, and otherwise
        waits (None).  Judged among the few that finished first, one of two would be replaced, and the
        first to finish would always continue."""
        ranked = self._ranked(peers)
        if head.trial_id not in pool:  # failed, or its checkpoint is gone: replaced now
            k = quantile_split(len(ranked), self.quantile_fraction)
            return self._replace(head, member, ranked[:k] if k else ranked[:1], pool, records, ordinal)
        mine = (loss_of(head, self.mode), head.trial_id)  # scored: it is in the pool
        below = sum(1 for r in ranked if (loss_of(r, self.mode), r.trial_id) > mine)
        k = quantile_split(len(ranked) + coming, self.quantile_fraction)  # the most it can be
        if below >= k:  # it cannot fall into the bottom quantile
            return self._continue(head, member, ranked[:k], pool)
        if below + coming < k:  # not enough can still come below it: bottom, whatever comes
            return self._replace(head, member, ranked[:k] if k else ranked[:1], pool, records, ordinal)
        return None

    def _continue(self, head: TrialRecord, member: int, top: Sequence[TrialRecord], pool: Leaderboard) -> Plan:
        """The member's next step continues ``head``, with the top trials as fall-backs."""
        fallbacks = [r for r in top if r.trial_id != head.trial_id and r.trial_id in pool]
        refs = (self._ref(head), *[self._ref(r) for r in fallbacks][:MAX_FALLBACKS])
        return Plan(parents=refs, generation=head.round + 1, member=member, config=self._own(head))

    def _replace(self, head: TrialRecord | None, member: int, top: Sequence[TrialRecord], pool: Leaderboard,
                 records: Sequence[TrialRecord], ordinal: int) -> Plan:
        """The member's next trial: a child of a top trial (drawn at random), explored from it."""
        top = [r for r in top if r.trial_id in pool and (head is None or r.trial_id != head.trial_id)]
        if not top:  # nobody of this generation to copy: the best parents of the run
            top = [pool.at(i) for i in range(min(len(pool), max(1, math.ceil(self.quantile_fraction * len(pool)))))]
            top = [r for r in top if head is None or r.trial_id != head.trial_id] or top
        if not top:  # no checkpoint anywhere yet: from scratch, as the first generation
            return Plan(generation=0, member=member)
        rng = rng_for(self.seed, ordinal, 0x5E1)
        parent = top[int(rng.integers(len(top)))]
        others = [r for r in top if r.trial_id != parent.trial_id]
        refs = (self._ref(parent), *[self._ref(r) for r in others][:MAX_FALLBACKS])
        config = None
        if self.explore_rule != SAMPLER:
            assert self.space is not None
            config = explore(self.explore_rule, self.space, parent, records, self.mode, self.seed, ordinal,
                             self._explored(records))
        return Plan(parents=refs, generation=parent.round + 1, member=member, config=config)

    def _own(self, head: TrialRecord) -> dict[str, Any] | None:
        """A continuing member keeps its searched values (the sampler proposes new ones under ``sampler``)."""
        if self.explore_rule == SAMPLER or self.space is None:
            return None
        return {p.name: head.config[p.name] for p in self.space.params}

    @staticmethod
    def _explored(records: Sequence[TrialRecord]) -> set[int]:
        """Trials that replaced a member (their parent was another member's)."""
        member_of = {r.trial_id: r.member for r in records}
        return {r.trial_id for r in records
                if r.parent_id is not None and r.member is not None and member_of.get(r.parent_id) != r.member}

    # -- round-robin ---------------------------------------------------------------------------
    def _next_parents(self, ordinal: int, popsize: int, pool: Leaderboard) -> tuple[tuple[ParentRef, ...], int]:
        k = min(len(pool), max(1, math.ceil(self.top_fraction * pool.seen))) if len(pool) else 0
        if ordinal < popsize or k == 0:
            return (), 0
        first = ordinal % k
        chosen = [pool.at((first + j) % k) for j in range(min(k, 1 + MAX_FALLBACKS))]
        return tuple(self._ref(r) for r in chosen), chosen[0].round + 1

    def ranked_parents(self, earlier: Sequence[TrialRecord]) -> list[ParentRef]:
        """The parent pool: best first, ties broken by the older trial."""
        usable = [r for r in earlier if r.status == COMPLETED and r.checkpoint and r.value is not None]
        sign = -1.0 if self.mode == "max" else 1.0
        usable.sort(key=lambda r: (sign * float(r.value), r.trial_id))  # type: ignore[arg-type]
        k = max(1, math.ceil(self.top_fraction * len(usable))) if usable else 0
        return [self._ref(r) for r in usable[:k] if not r.checkpoint_removed]

    def _parents(self, round: int, n: int, earlier: Sequence[TrialRecord]) -> list[tuple]:
        pool = self.ranked_parents(earlier) if round > 0 else []
        if not pool:
            return [() for _ in range(n)]
        k = len(pool)
        return [tuple(pool[(i + j) % k] for j in range(k)) for i in range(n)]


__all__ = ["EXPLOIT_RULES", "PopulationBasedEvaluator", "QUANTILE", "ROUND_ROBIN", "TrialSpec", "check_exploit",
           "quantile_split"]
