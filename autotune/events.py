"""Events: the one place that names them (statuses live in :mod:`autotune.statuses`).

* Executor events: what :meth:`Executor.poll` returns as trials start, report and finish.
* Progress events: what the driver tells a progress callback (the CLI's status line, benchmarks).

Everything else imports these names instead of repeating string literals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .records import TrialOutcome, TrialRecord, TrialSpec


# -- executor events -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TrialStarted:
    """A worker began the trial (``at``: the executor's clock)."""

    trial_id: int
    at: float
    node: str | None = None


@dataclass(frozen=True)
class TrialReported:
    """An intermediate report of a running trial: its step and metrics."""

    trial_id: int
    step: int
    metrics: dict[str, Any]
    at: float


@dataclass(frozen=True)
class TrialFinished:
    """The trial ended; its outcome says how."""

    outcome: TrialOutcome

    @property
    def trial_id(self) -> int:
        return self.outcome.trial_id


ExecutorEvent = Union[TrialStarted, TrialReported, TrialFinished]


# -- progress events -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStart:
    run_dir: str
    schedule: str
    rounds: int
    total: int  # trials in the whole run
    done: int  # trials already finished (a resumed run)
    round: int = 0  # rounds: the round it starts (or continues) at


@dataclass(frozen=True)
class RoundStart:
    round: int
    rounds: int
    trials: int
    todo: int
    slots: int
    mode: str


@dataclass(frozen=True)
class TrialStart:
    spec: TrialSpec
    running: int
    done: int
    total: int
    slots: int
    mode: str


@dataclass(frozen=True)
class TrialEnd:
    record: TrialRecord
    done: int
    total: int
    running: int = 0
    best: TrialRecord | None = None
    round: int | None = None  # rounds: the round it belonged to


@dataclass(frozen=True)
class RoundEnd:
    round: int
    rounds: int
    best: TrialRecord | None
    records: list[TrialRecord] = field(default_factory=list)


ProgressEvent = Union[RunStart, RoundStart, TrialStart, TrialEnd, RoundEnd]
