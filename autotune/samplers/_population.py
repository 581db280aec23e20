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


@dataclass
class Population:
    """One population: its points (in the sampler's own coordinates) and what was told about them."""

    points: list[list[float]]
    handed: int = 0
    ids: dict[int, int] = field(default_factory=dict)  # candidate id -> member index
    losses: dict[int, float | None] = field(default_factory=dict)  # member index -> loss, None if failed

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

    def record(self, cid: int, loss: float | None) -> None:
        """Store the outcome of candidate ``cid``; failures (None, NaN, inf) are stored as None."""
        good = loss is not None and math.isfinite(loss)
        self.losses[self.ids.pop(cid)] = float(loss) if good else None  # type: ignore[arg-type]

    def ordered_losses(self) -> list[float | None]:
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
            losses={int(k): (None if v is None else float(v)) for k, v in state["losses"].items()},
        )


def worst_ranked(losses: Sequence[float | None]) -> list[float]:
    """Replace failures by a value worse than every finite loss, so rank-based updates put them last.

    A failure is never scored as 0 (which would be the best loss of many objectives); all failures tie.
    """
    finite = [x for x in losses if x is not None]
    worst = max(finite) if finite else 0.0
    penalty = worst + 1.0 + abs(worst)
    return [penalty if x is None else x for x in losses]
