"""The executor contract: trials are submitted one at a time and their outcomes polled as they end.

The driver only sees this interface, so it is tested with the in-process and simulated executors and
runs on Ray unchanged.  Executors own processes and resources; they never decide what to run.  There
is no batch barrier here: ``submit`` queues one trial (it starts as soon as a slot is free) and
``poll`` returns whatever has finished, so the driver can plan the next trial the moment a slot frees.
``run(specs)`` remains as a convenience for callers that do have a whole batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Sequence

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
    def poll(self, timeout: float | None = None) -> list[TrialOutcome]:
        """Outcomes of trials that ended since the last call, waiting up to ``timeout`` seconds (None:
        until at least one ends) when none has; ``[]`` when nothing ended in time or nothing runs."""

    @property
    @abstractmethod
    def active(self) -> int:
        """Trials submitted whose outcome has not been returned yet (queued or running)."""

    def run(self, specs: Sequence[TrialSpec]) -> Iterator[TrialOutcome]:
        """Run every spec; yield each outcome as soon as its trial ends (any order)."""
        for spec in specs:
            self.submit(spec)
        while self.active:
            yield from self.poll(None)

    def stop(self) -> list[int]:
        """Stop running and queued trials at once (Ctrl-C); returns the ids that were stopped."""
        return []

    def close(self) -> None:
        """Release workers and resources."""

    @property
    def slots(self) -> int:
        """How many trials run at once."""
        return 1

    def describe(self) -> str:
        return type(self).__name__
