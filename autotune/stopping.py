"""Early stopping: rules that stop losing trials at their reports (``--early-stop none|asha|median``).

A rule sees every report of every trial, as ``(trial, step, value)`` where ``step`` counts the trial's
own training (its report step minus the step it warm-started from, so Population-Based children are
compared on what they trained themselves) and ``value`` is the run metric.  It answers whether the
trial should stop.  The driver then tells the trial at its next report (see :mod:`autotune.trial`) and
records it as pruned.  Rules work on "larger is better" values; the driver flips ``mode: min``.

``asha``: asynchronous successive halving (Li et al., MLSys 2020; Ray Tune's ``ASHAScheduler``, Optuna's
``SuccessiveHalvingPruner``).  Rungs at ``grace_period x reduction_factor^k`` steps; a trial reaching a
rung goes on only if its value is in the top ``1 / reduction_factor`` of the values recorded at that rung
so far (itself included).  ``median``: Vizier's median rule (Optuna's ``MedianPruner``): after
``grace_period`` steps, stop a trial whose best value so far is worse than the median of the other
trials' values at the same step, once ``min_trials`` others have reported there.

The rules keep no state of their own that the records lack: on resume the driver replays the reports of
the finished trials into a fresh rule.
"""

from __future__ import annotations

import bisect
import math
import statistics
from typing import Any

from .errors import ConfigError
from .schema import BY_NAME

RULES = BY_NAME["early_stop"].choices


class StoppingRule:
    """Never stops anything (``none``)."""

    name = "none"

    def report(self, trial_id: int, step: int, value: float) -> bool:
        """Record a report; True when the trial should stop."""
        return False


class ASHA(StoppingRule):
    name = "asha"

    def __init__(self, grace_period: int = 1, reduction_factor: float = 3.0, max_t: int | None = None) -> None:
        if isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period < 1:
            raise ConfigError(f"early stop asha: grace_period must be an integer >= 1, but got {grace_period!r}")
        if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, (int, float)) or reduction_factor <= 1:
            raise ConfigError(f"early stop asha: reduction_factor must be a number > 1, but got {reduction_factor!r}")
        self.grace_period, self.reduction_factor, self.max_t = grace_period, float(reduction_factor), max_t
        self.rungs: dict[int, list[float]] = {}  # rung step -> sorted values recorded there
        self._reached: dict[int, int] = {}  # trial -> highest rung it has been judged at

    def rung_steps(self, up_to: int) -> list[int]:
        out, k = [], 0
        while True:
            r = int(round(self.grace_period * self.reduction_factor ** k))
            if r > up_to or (self.max_t is not None and r >= self.max_t):
                return out
            if not out or r > out[-1]:
                out.append(r)
            k += 1

    def report(self, trial_id: int, step: int, value: float) -> bool:
        if not math.isfinite(value):
            return False
        done = self._reached.get(trial_id, 0)
        stop = False
        for rung in self.rung_steps(step):
            if rung <= done:
                continue
            self._reached[trial_id] = rung
            values = self.rungs.setdefault(rung, [])
            bisect.insort(values, value)
            keep = max(1, int(len(values) / self.reduction_factor))  # the top 1/eta, at least the best
            cutoff = values[-keep]
            if value < cutoff:
                stop = True
        return stop


class MedianRule(StoppingRule):
    name = "median"

    def __init__(self, grace_period: int = 1, min_trials: int = 3) -> None:
        if isinstance(grace_period, bool) or not isinstance(grace_period, int) or grace_period < 1:
            raise ConfigError(f"early stop median: grace_period must be an integer >= 1, but got {grace_period!r}")
        if isinstance(min_trials, bool) or not isinstance(min_trials, int) or min_trials < 1:
            raise ConfigError(f"early stop median: min_trials must be an integer >= 1, but got {min_trials!r}")
        self.grace_period, self.min_trials = grace_period, min_trials
        self.at: dict[int, dict[int, float]] = {}  # step -> trial -> value
        self.best: dict[int, float] = {}  # trial -> best value so far

    def report(self, trial_id: int, step: int, value: float) -> bool:
        if not math.isfinite(value):
            return False
        self.best[trial_id] = max(self.best.get(trial_id, -math.inf), value)
        others = [v for t, v in self.at.get(step, {}).items() if t != trial_id]
        self.at.setdefault(step, {})[trial_id] = value
        if step < self.grace_period or len(others) < self.min_trials:
            return False
        return self.best[trial_id] < statistics.median(others)


def make_rule(name: str, options: dict[str, Any] | None = None) -> StoppingRule:
    """A rule by name, with its options (``grace_period``, ``reduction_factor``, ``max_t``, ``min_trials``)."""
    key = str(name).strip().lower()
    classes: dict[str, type[StoppingRule]] = {"none": StoppingRule, "asha": ASHA, "median": MedianRule}
    if key not in classes:
        raise ConfigError(f"unknown early stop rule {name!r}; valid: {', '.join(RULES)}")
    try:
        return classes[key](**(options or {}))
    except TypeError as e:
        raise ConfigError(f"early stop {key}: {e}".replace("__init__() ", "")) from None
