"""In-process executor: trials run one after another in this process.

For tests and debugging; it has no isolation (a trial calling ``os._exit`` ends the driver too) and
no time limit.  Real searches use the Ray executor.  One slot: ``poll`` runs the oldest queued trial
to its end and returns its events (started, each report, finished).  Every trial runs in this process,
so a child whose parent's live state is still kept here (``trial.keep``) continues in place.
"""

from __future__ import annotations

import time
from collections import deque

from ..events import ExecutorEvent, TrialFinished, TrialReported, TrialStarted
from ..records import TrialSpec
from ..trial_runner import run_trial
from .base import Executor


class LocalExecutor(Executor):
    def __init__(self) -> None:
        self._queue: deque[TrialSpec] = deque()

    def submit(self, spec: TrialSpec) -> None:
        self._queue.append(spec)

    def poll(self, timeout: float | None = None) -> list[ExecutorEvent]:
        if not self._queue:
            return []
        spec = self._queue.popleft()
        events: list[ExecutorEvent] = [TrialStarted(spec.trial_id, time.time())]

        def on_report(entry: dict) -> bool:
            events.append(TrialReported(spec.trial_id, int(entry["step"]), dict(entry.get("metrics") or {}),
                                        float(entry.get("time") or time.time())))
            return bool(self.report_judge and self.report_judge(spec.trial_id, entry))

        outcome = run_trial(self.target, spec, self.run_dir, self.metric, artifacts=self.artifacts,
                            on_report=on_report)
        return [*events, TrialFinished(outcome)]

    @property
    def active(self) -> int:
        return len(self._queue)

    def stop(self) -> list[int]:
        self._queue.clear()  # queued trials never started: nothing to record, resume runs them
        return []

    def describe(self) -> str:
        return "in-process"
