"""Statuses, and how a trial ended: the one place that names them.

* Run statuses (a run's ``status`` attribute) and trial statuses (a record's ``status``).
* :class:`FailureKind`: why a trial did not complete, as data.  A trial's ``reason`` is the human
  message beside it; code branches on the kind, never on the message, so rewording a message
  changes nothing but what people read.
* The phases of the driver's saved state.

Every other module imports these names instead of repeating string literals; this module imports
nothing of autotune's, so any module can.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

# -- run statuses --------------------------------------------------------------------------------
CREATED = "created"  # the run exists, its driver has not started
RUNNING = "running"  # a driver is running it (or died: see liveness.run_status); also a live trial's status
INTERRUPTED = "interrupted"  # stopped (Ctrl-C, killed driver, full disk, database fault): `autotune resume` continues it
RUN_COMPLETED = "completed"
RUN_FAILED = "failed"  # the driver stopped on an error (a bug in the trial, a settings error)
RUN_STATUSES = (CREATED, RUNNING, INTERRUPTED, RUN_COMPLETED, RUN_FAILED)

# -- trial statuses ------------------------------------------------------------------------------
COMPLETED = "completed"
FAILED = "failed"
STOPPED = "stopped"  # stopped from outside (Ctrl-C, disk full): resume runs it again
PRUNED = "pruned"  # stopped early by the run's early-stopping rule (Optuna's PRUNED): final, not a failure
TRIAL_STATUSES = (COMPLETED, FAILED, STOPPED, PRUNED)
FINAL = (COMPLETED, FAILED, PRUNED)  # a trial that ended so is never run again
#: a trial planned or queued, not yet started (shown by the dashboard; never stored)
PENDING = "pending"
#: the status of a database row of an attempt a stopped driver left running: resume ran the trial again
SUPERSEDED = "superseded"

# -- the driver's saved state --------------------------------------------------------------------
PLANNED, TOLD = "planned", "told"  # trials planned (and maybe running); a round's results told to the sampler


class FailureKind(str, Enum):
    """How a trial ended, beside its human ``reason``.  ``NONE``: it completed."""

    NONE = "none"
    ERROR = "error"  # the trial raised or exited non-zero, or autotune failed while running it
    NO_REPORTS = "no_reports"  # the trial reported nothing
    METRIC_MISSING = "metric_missing"  # it reported, never the run metric
    NOT_FINITE = "not_finite"  # the run metric's last value was NaN or infinite
    TIMEOUT = "timeout"  # it ran past the trial timeout
    CHECKPOINT = "checkpoint"  # its checkpoint (or the parent it loaded) was unreadable or could not be stored
    LOST = "lost"  # its worker or node was lost, or no worker could start for it
    PRUNED_BY_RULE = "pruned_by_rule"  # the run's early-stopping rule stopped it (status ``pruned``)
    STOPPED = "stopped"  # stopped with the run or by the search (status ``stopped``): resume runs it again
    DISK_FULL = "disk_full"  # no space left while it saved its results (status ``stopped``): the run halts

    @classmethod
    def of(cls, value: Any, status: str | None) -> "FailureKind":
        """``value`` as a kind; where it is missing or unknown (outcomes and records written before
        kinds), the kind a trial of that ``status`` has by default."""
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            return _DEFAULT_KIND.get(status or "", cls.ERROR)


_DEFAULT_KIND = {
    COMPLETED: FailureKind.NONE,
    FAILED: FailureKind.ERROR,
    STOPPED: FailureKind.STOPPED,
    PRUNED: FailureKind.PRUNED_BY_RULE,
}
