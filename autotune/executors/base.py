"""The executor contract: run trial specs, yield outcomes as they finish.

The driver only sees this interface, so it is tested with the in-process executor and runs on Ray
unchanged.  Executors own processes and resources; they never decide what to run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator, Sequence

from ..records import TrialOutcome, TrialSpec
from ..targets import TrialTarget


class Executor(ABC):
    """Runs trials of one run.  ``open`` is called once before the first ``run``."""

    def open(self, run_dir: Path, target: TrialTarget, metric: str, artifacts: str | None = None) -> None:
        """``artifacts``: an object-store URI for trial folders (see :mod:`autotune.artifacts`)."""
        self.run_dir = Path(run_dir).resolve()  # absolute: workers on other nodes start in other folders
        self.target = target
        self.metric = metric
        self.artifacts = artifacts

    @abstractmethod
    def run(self, specs: Sequence[TrialSpec]) -> Iterator[TrialOutcome]:
        """Run every spec; yield each outcome as soon as its trial ends (any order)."""

    def stop(self) -> list[int]:
        """Stop running trials at once (Ctrl-C); returns the ids that were stopped."""
        return []

    def close(self) -> None:
        """Release workers and resources."""

    @property
    def slots(self) -> int:
        """How many trials run at once."""
        return 1

    def describe(self) -> str:
        return type(self).__name__
