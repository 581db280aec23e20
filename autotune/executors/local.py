"""In-process executor: trials run one after another in this process.

For tests and debugging; it has no isolation (a trial calling ``os._exit`` ends the driver too) and
no time limit.  Real searches use the Ray executor.
"""

from __future__ import annotations

from typing import Iterator, Sequence

from ..records import TrialOutcome, TrialSpec
from ..trial_runner import run_trial
from .base import Executor


class LocalExecutor(Executor):
    def run(self, specs: Sequence[TrialSpec]) -> Iterator[TrialOutcome]:
        for spec in specs:
            yield run_trial(self.target, spec, self.run_dir, self.metric, artifacts=self.artifacts)

    def describe(self) -> str:
        return "in-process"
