"""Book-keeping for samplers that learn from whole populations (CMA-ES, PSHE2).

A population is proposed once, handed out in order over one or more ``ask`` calls and learnt from
once every member has been told, whatever order and however many ``tell`` calls that took.  Asking
for more than what is left of the current population before it has been told cannot be served (the
next population depends on this one's outcomes) and raises :class:`SamplerProtocolError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import SamplerProtocolError
from .base import Outcome


@dataclass
class Population:
    """One population: its points (in the sampler's own coordinates) and what was told about them."""

    points: list[list[float]]
    handed: int = 0
    ids: dict[int, int] = field(default_factory=dict)  # candidate id -> member index
    losses: dict[int, Outcome] = field(default_factory=dict)  # member index -> outcome (see ``Outcome``)

    @property
    def left(self) -> int:
        return len(self.points) - self.handed

    @property
    def complete(self) -> bool:
        return len(self.losses) == len(self.points)

    def take(self, n: int, first_id: int, sampler: str) -> list[int]:
        """Hand out the next ``n`` members, to be given ids ``first_id, first_id + 1, ...``."""
        if n > self.left:
            pending = self.handed - len(self.losses)
            raise SamplerProtocolError(
                f"{sampler} proposes whole populations of {len(self.points)}: ask({n}) asks for more than the "
                f"{self.left} candidate(s) left in the current population; tell the outcomes of its "
                f"{pending} pending candidate(s) first, or ask at most popsize at a time"
            )
        members = list(range(self.handed, self.handed + n))
        for k, member in enumerate(members):
            self.ids[first_id + k] = member
        self.handed += n
        return members

    def record(self, cid: int, outcome: Outcome) -> None:
        """Store the outcome of candidate ``cid``; failed losses (NaN, inf) are stored as None."""
        if isinstance(outcome, (int, float)) and not math.isfinite(outcome):
            outcome = None
        self.losses[self.ids.pop(cid)] = outcome

    def ordered_losses(self) -> list[Outcome]:
        return [self.losses[i] for i in range(len(self.points))]

    def to_state(self) -> dict[str, Any]:
        return {
            "points": [list(map(float, p)) for p in self.points],
            "handed": self.handed,
            "ids": {str(k): v for k, v in self.ids.items()},
            "losses": {str(k): v for k, v in self.losses.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Population | None:
        if state is None:
            return None
        return cls(
            points=[list(map(float, p)) for p in state["points"]],
            handed=int(state["handed"]),
            ids={int(k): int(v) for k, v in state["ids"].items()},
            losses={int(k): load_outcome(v) for k, v in state["losses"].items()},
        )


def load_outcome(v: Any) -> Outcome:
    """An outcome read back from a saved state."""
    if v is None:
        return None
    if isinstance(v, list):
        return [int(v[0]), None if v[1] is None else float(v[1])]
    return float(v)


def outcome_key(outcome: Outcome) -> tuple[int, float, float]:
    """The order of outcomes, best first: completed by loss; then pruned trials, the one that ran more
    steps first and, at equal steps, the lower last loss; then failures (all tied)."""
    if outcome is None:
        return (2, 0.0, 0.0)
    if isinstance(outcome, list):
        steps, last = outcome
        return (1, -float(steps or 0), math.inf if last is None else float(last))
    return (0, float(outcome), 0.0)


def better(outcome: Outcome, than: Outcome) -> bool:
    """Whether ``outcome`` is a new best against ``than`` (None: no best yet); a failure never is."""
    return outcome is not None and (than is None or outcome_key(outcome) < outcome_key(than))


def ranked_losses(outcomes: Sequence[Outcome]) -> list[float]:
    """Outcomes as losses for updates that need numbers (CMA-ES, a population's bests), in the order
    of :func:`outcome_key`: pruned trials rank below every completed trial, failures below them all.

    Completed losses stay as they are.  With ``W`` the worst completed loss (0 if none) and
    ``G = 1 + |W|``, the pruned and failed trials get :func:`imputed` values.  A failure is never scored as
    0 (the best loss of many objectives), and a pruned trial's last report never competes with a final score.
    """
    finite = [x for x in outcomes if x is not None and not isinstance(x, list)]
    worst = max(finite) if finite else 0.0
    value = imputed(outcomes, worst, 1.0 + abs(worst))
    return [value[i] if i in value else float(x) for i, x in enumerate(outcomes)]  # type: ignore[arg-type]


def imputed(outcomes: Sequence[Outcome], worst: float, gap: float) -> dict[int, float]:
    """Values for the pruned and failed outcomes (by index), above ``worst`` (the worst completed value):
    the ``m`` pruned ones ``worst + gap * (k + 1) / (2 (m + 1))`` by rank ``k`` of :func:`outcome_key` (so
    below ``worst + gap / 2``), every failure ``worst + gap``."""
    pruned = sorted((i for i, x in enumerate(outcomes) if isinstance(x, list)),
                    key=lambda i: outcome_key(outcomes[i]))
    value = {i: worst + gap * (k + 1) / (2 * (len(pruned) + 1)) for k, i in enumerate(pruned)}
    value.update({i: worst + gap for i, x in enumerate(outcomes) if x is None})
    return value
