"""The executor contract: submit one trial at a time, poll for events, stop a trial.

The driver only sees this interface, so it is tested with the in-process and simulated executors and
runs on Ray unchanged.  Executors own processes and resources; they never decide what to run.  There
is no batch barrier here: ``submit`` queues one trial (it starts as soon as a slot is free) and
``poll`` returns the events since the last call (:class:`~autotune.events.TrialStarted`,
:class:`~autotune.events.TrialReported`, :class:`~autotune.events.TrialFinished`), so the driver can
plan the next trial the moment a slot frees.  ``run(specs)`` remains as a convenience for callers
that do have a whole batch.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..events import ExecutorEvent, TrialFinished
from ..records import TrialOutcome, TrialSpec
from ..targets import TrialTarget


class Executor(ABC):
    """Runs trials of one run.  ``open`` is called once before the first ``submit``."""

    def open(self, run_dir: Path, target: TrialTarget, metric: str, artifacts: str | None = None) -> None:
        """``artifacts``: an object-store URI for trial folders (see :mod:`autotune.artifacts`)."""
        self.run_dir = Path(run_dir).resolve()  # absolute: workers on other nodes start in other folders
        self.target = target
        self.metric = metric
        self.artifacts = artifacts

    @abstractmethod
    def submit(self, spec: TrialSpec) -> None:
        """Queue one trial; it starts as soon as a slot is free."""

    @abstractmethod
    def poll(self, timeout: float | None = None) -> list[ExecutorEvent]:
        """Events since the last call, waiting up to ``timeout`` seconds (None: until a trial ends) when
        there are none; ``[]`` when nothing happened in time or nothing runs.  Every submitted trial
        ends with exactly one :class:`TrialFinished`."""

    @property
    @abstractmethod
    def active(self) -> int:
        """Trials submitted whose outcome has not been returned yet (queued or running)."""

    def run(self, specs: Sequence[TrialSpec]) -> Iterator[TrialOutcome]:
        """Run every spec; yield each outcome as soon as its trial ends (any order)."""
        for spec in specs:
            self.submit(spec)
        while self.active:
            for event in self.poll(None):
                if isinstance(event, TrialFinished):
                    yield event.outcome

    def stop(self) -> list[int]:
        """Stop running and queued trials at once (Ctrl-C); returns the ids that were running.  Queued
        trials never started: nothing is recorded for them."""
        return []

    #: in-process executors ask this at each report whether the trial should stop (early stopping);
    #: the driver sets it.  Executors whose trials run elsewhere are told through :meth:`prune`.
    report_judge: Callable[[int, dict[str, Any]], bool] | None = None

    #: True when the run has an early-stopping rule, so every report gets a :meth:`verdict` (the driver sets it)
    judging: bool = False

    def verdict(self, trial_id: int, step: int, stop: bool) -> None:
        """The rule's verdict on the report a trial made at ``step``.  A trial that waits for it at that
        report (see the Ray executor) stops there instead of at its next report.  By default: prune."""
        if stop:
            self.prune(trial_id)

    def prune(self, trial_id: int) -> None:
        """The early-stopping rule stopped this trial: tell it at its next report, and end it after a
        grace period if it does not stop.  By default: end it now."""
        self.stop_trial(trial_id)

    def stop_trial(self, trial_id: int) -> bool:
        """Stop one running trial (it still ends with a :class:`TrialFinished`); False if it is not
        running here."""
        return False

    def close(self) -> None:
        """Release workers and resources."""

    @property
    def slots(self) -> int:
        """How many trials run at once."""
        return 1

    def warm(self) -> set[int]:
        """Trials whose live state an idle worker keeps (see continue in place): a child of one of them
        started now continues in place. The Population-Based planner gives such a member its turn first."""
        return set()

    def now(self) -> float:
        """The executor's clock in seconds (wall time here; the simulated executor's fake clock), which
        the driver's ``time_budget`` is counted on."""
        return time.time()

    def describe(self) -> str:
        return type(self).__name__
