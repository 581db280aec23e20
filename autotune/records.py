"""The data that flows between evaluator, executor, worker and store.

An outcome says how its trial ended twice: ``kind`` (a :class:`~autotune.statuses.FailureKind`) for
code and ``reason`` for people.  Outcome files and records written before kinds existed load with the
kind their status implies.

Warm starts are data: a :class:`TrialSpec` names its parent checkpoint (and fall-backs), the worker
says in its :class:`TrialOutcome` which one it really loaded and what that file hashed to, and the
store keeps both in the :class:`TrialRecord`.  Paths inside specs and records are relative to the run
folder, so a run folder can move between machines and be resumed anywhere that reaches it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .artifacts import Artifacts
from .statuses import COMPLETED, FAILED, PRUNED, STOPPED, FailureKind
from .statuses import TRIAL_STATUSES as STATUSES

#: a finished trial's outcome, beside it in its trial folder
OUTCOME_FILE_NAME = "outcome.json"
LOG_FILE_NAME = "trial.log"  # a trial folder's log: its output, and the runner's notes


@dataclass(frozen=True)
class ParentRef:
    """A checkpoint a trial may warm-start from."""

    trial_id: int
    checkpoint: str  # relative to the run folder
    step: int | None = None
    hash: str | None = None  # sha256 recorded when the parent finished; checked before loading
    value: float | None = None  # the parent's metric, for the lineage view

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ParentRef":
        return cls(**d)


@dataclass(frozen=True)
class TrialSpec:
    """Everything a worker needs to run one trial: what to train, for how long, from where."""

    trial_id: int
    round: int
    config: dict[str, Any]
    budget: float | None
    trial_dir: str  # relative to the run folder
    parents: tuple[ParentRef, ...] = ()  # first is the chosen parent; the rest are fall-backs in order
    timeout: float | None = None
    #: Population-Based: the member of the population (0 .. popsize-1) this trial is the next step of;
    #: its parent is that member's last trial when it continues, a better member's when it was replaced
    member: int | None = None

    @property
    def parent(self) -> ParentRef | None:
        return self.parents[0] if self.parents else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parents"] = [p.to_dict() for p in self.parents]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        d = dict(d)
        d["parents"] = tuple(ParentRef.from_dict(p) for p in d.get("parents", ()))
        return cls(**d)


@dataclass
class TrialOutcome:
    """What a worker returns for one trial.  ``value`` is the run metric of the last report."""

    trial_id: int
    status: str
    reason: str | None = None
    value: float | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: str | None = None  # relative to the run folder
    checkpoint_step: int | None = None
    checkpoint_hash: str | None = None
    parent_id: int | None = None  # the parent actually loaded (after any fall-back)
    parent_checkpoint: str | None = None
    parent_step: int | None = None
    parent_hash: str | None = None  # sha256 of what was loaded
    parent_note: str | None = None  # why the planned parent was not used, if it was not
    started: float | None = None
    ended: float | None = None
    node: str | None = None
    gpu_ids: list[Any] = field(default_factory=list)
    log_tail: str | None = None
    attempts: int = 1
    node_id: str | None = None  # the Ray node (several nodes may share one host address)
    retry_note: str | None = None  # why an earlier attempt was retried
    in_place: bool = False  # continued from the parent's live state in this worker, not from its checkpoint file
    kept_state: bool = False  # this worker process keeps the trial's live state for a child (continue in place)
    #: how the trial ended, for code (``reason`` says it for people); by default the kind its status implies
    kind: FailureKind | None = None

    def __post_init__(self) -> None:
        self.kind = FailureKind.of(self.kind, self.status)

    def end(self, status: str, kind: FailureKind, reason: str | None) -> None:
        """Set how the trial ended: its status, the kind and the human reason together."""
        self.status, self.kind, self.reason = status, kind, reason

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = FailureKind.of(self.kind, self.status).value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialOutcome":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def write_outcome(trial_dir: Path, outcome: TrialOutcome) -> None:
    """Persist the outcome beside the trial, atomically, so a driver killed before recording it
    adopts the finished trial on resume instead of running it again."""
    tmp = trial_dir / (OUTCOME_FILE_NAME + ".tmp")
    tmp.write_text(json.dumps(outcome.to_dict()))
    os.replace(tmp, trial_dir / OUTCOME_FILE_NAME)


def finished_outcome(run_dir: str | os.PathLike[str], spec: TrialSpec,
                     artifacts: str | None = None) -> TrialOutcome | None:
    """The outcome a worker left for ``spec`` (in the run folder or the object store), if its trial
    ran to the end."""
    rel = f"{spec.trial_dir}/{OUTCOME_FILE_NAME}"
    try:
        text = Artifacts(artifacts).read_text(rel) if artifacts else (Path(run_dir) / rel).read_text()
        if text is None:
            return None
        outcome = TrialOutcome.from_dict(json.loads(text))
    except (OSError, ValueError, TypeError):
        return None
    return outcome if outcome.trial_id == spec.trial_id else None


@dataclass
class TrialRecord:
    """One finished trial as stored: its spec, its outcome and the sampler's view of it."""

    trial_id: int
    round: int
    config: dict[str, Any]
    budget: float | None
    status: str
    reason: str | None
    value: float | None
    reports: list[dict[str, Any]]
    planned_parent_id: int | None
    parent_id: int | None
    parent_checkpoint: str | None
    parent_step: int | None
    parent_hash: str | None
    parent_note: str | None
    checkpoint: str | None
    checkpoint_step: int | None
    checkpoint_hash: str | None
    started: float | None
    ended: float | None
    node: str | None
    gpu_ids: list[Any]
    log_tail: str | None
    trial_dir: str
    attempts: int = 1
    node_id: str | None = None
    retry_note: str | None = None
    checkpoint_removed: bool = False  # deleted from disk by ``keep_checkpoints``; the path stays as lineage
    member: int | None = None  # see TrialSpec.member
    in_place: bool = False  # continued in place from its parent's live state (lineage and parent hash as on disk)
    kind: FailureKind | None = None  # see TrialOutcome.kind

    def __post_init__(self) -> None:
        self.kind = FailureKind.of(self.kind, self.status)
        if self.status != COMPLETED:  # a crashed trial's last report is in ``reports``, never its score
            self.value = None

    @classmethod
    def from_parts(cls, spec: TrialSpec, outcome: TrialOutcome) -> "TrialRecord":
        return cls(
            trial_id=spec.trial_id,
            round=spec.round,
            config=dict(spec.config),
            budget=spec.budget,
            status=outcome.status,
            reason=outcome.reason,
            value=outcome.value,
            reports=list(outcome.reports),
            planned_parent_id=spec.parent.trial_id if spec.parent else None,
            parent_id=outcome.parent_id,
            parent_checkpoint=outcome.parent_checkpoint,
            parent_step=outcome.parent_step,
            parent_hash=outcome.parent_hash,
            parent_note=outcome.parent_note,
            checkpoint=outcome.checkpoint,
            checkpoint_step=outcome.checkpoint_step,
            checkpoint_hash=outcome.checkpoint_hash,
            started=outcome.started,
            ended=outcome.ended,
            node=outcome.node,
            gpu_ids=list(outcome.gpu_ids),
            log_tail=outcome.log_tail,
            trial_dir=spec.trial_dir,
            attempts=outcome.attempts,
            node_id=outcome.node_id,
            retry_note=outcome.retry_note,
            in_place=outcome.in_place,
            member=spec.member,
            kind=outcome.kind,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = FailureKind.of(self.kind, self.status).value
        return d

    def fields(self) -> dict[str, Any]:
        """The fields as ``to_dict`` has them, not copied: for serialising at once (``to_dict``
        deep-copies every report, the larger part of the cost of writing a short trial)."""
        d = {name: getattr(self, name) for name in self.__dataclass_fields__}
        d["kind"] = FailureKind.of(self.kind, self.status).value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialRecord":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class TrialTally:
    """What a run's summary needs of a finished trial (its status, metric value and end), read without
    its record: the runs list counts and ranks thousands of trials from these."""

    trial_id: int
    status: str
    value: float | None = None
    ended: float | None = None

    @classmethod
    def of(cls, record: TrialRecord) -> TrialTally:
        return cls(record.trial_id, record.status, record.value, record.ended)
