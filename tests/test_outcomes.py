"""How a trial ended is data (``FailureKind``), not message text: rewording a reason changes nothing."""

from __future__ import annotations

import json

import pytest

import autotune
from autotune.errors import ConfigError, DiskFullError, TrialError
from autotune.events import TrialFinished
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.records import OUTCOME_FILE_NAME, TrialOutcome, TrialRecord, TrialSpec, finished_outcome
from autotune.statuses import COMPLETED, FAILED, PRUNED, STOPPED, FailureKind
from conftest import objective

SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


def _curve(config, budget, parent):
    return SimTrial(curve=(config["x"] / 2, config["x"]), duration=1.0)


class _Rewriting(SimulatedExecutor):
    """Ends the trials ``rewrite`` names as it says: (status, kind, reason)."""

    def __init__(self, rewrite):
        super().__init__(_curve, slots=2)
        self.rewrite = rewrite

    def poll(self, timeout=None):
        events = super().poll(timeout)
        for e in events:
            if isinstance(e, TrialFinished) and (e.trial_id in self.rewrite or "*" in self.rewrite):
                status, kind, reason = self.rewrite.get(e.trial_id) or self.rewrite["*"]
                e.outcome.end(status, kind, reason)
                e.outcome.value = None
        return events


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_a_disk_full_outcome_halts_the_run_whatever_its_message_says(tmp_path, schedule):
    executor = _Rewriting({2: (STOPPED, FailureKind.DISK_FULL, "ENOSPC: the volume has no room (reworded)")})
    with pytest.raises(DiskFullError, match="trial 2"):
        autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=2, popsize=3,
                     seed=0, output=tmp_path, name="d", executor=executor, schedule=schedule)
    assert autotune.load(tmp_path / "d").status == "interrupted"


def test_a_message_that_reads_like_disk_full_is_not_disk_full(tmp_path):
    executor = _Rewriting({1: (STOPPED, FailureKind.STOPPED, "disk full: only the words say so")})
    result = autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=2,
                          popsize=3, seed=0, output=tmp_path, name="w", executor=executor, schedule="rounds")
    assert result.status == "completed"
    assert {r.trial_id: r.status for r in result.records}[1] == STOPPED


def test_a_metric_never_reported_stops_the_run_by_its_kind_not_its_words(tmp_path):
    executor = _Rewriting({"*": (FAILED, FailureKind.METRIC_MISSING, "no 'score' anywhere in what it said")})
    with pytest.raises(ConfigError, match="no trial of the first round reported the metric 'score'"):
        autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=3, popsize=2,
                     seed=0, output=tmp_path, name="m", executor=executor, schedule="rounds")
    # the same words under another kind are an ordinary failure: the all-failed check answers instead
    executor = _Rewriting({"*": (FAILED, FailureKind.ERROR, "metric 'score' was never reported (reported: x)")})
    with pytest.raises(TrialError, match="all 2 trials of the first round failed"):
        autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=3, popsize=2,
                     seed=0, output=tmp_path, name="e", executor=executor, schedule="rounds")


def test_the_runner_gives_each_fault_its_kind(tmp_path, xy_space):
    result = autotune.run(objective("mixed"), space=xy_space, sampler="random", evaluator="full", rounds=3,
                          popsize=5, seed=4, output=tmp_path, name="mixed", executor="local")
    kinds = {r.status: set() for r in result.records}
    for r in result.records:
        kinds[r.status].add(r.kind)
    assert kinds[COMPLETED] == {FailureKind.NONE}
    assert kinds[FAILED] <= {FailureKind.ERROR, FailureKind.NOT_FINITE} and kinds[FAILED]
    for r in result.records:  # and the kind survives the database
        if r.status == FAILED and "nan" in r.reason:
            assert r.kind == FailureKind.NOT_FINITE


def test_outcome_files_and_records_from_before_kinds_still_load(tmp_path):
    spec = TrialSpec(trial_id=3, round=0, config={"x": 0.5}, budget=None, trial_dir="trials/000003")
    (tmp_path / spec.trial_dir).mkdir(parents=True)
    old = {"trial_id": 3, "status": PRUNED, "reason": "stopped early by the run's early-stopping rule at step 2",
           "value": 0.4, "reports": [{"step": 2, "metrics": {"score": 0.4}}]}
    (tmp_path / spec.trial_dir / OUTCOME_FILE_NAME).write_text(json.dumps(old))
    outcome = finished_outcome(tmp_path, spec)
    assert outcome is not None and outcome.kind == FailureKind.PRUNED_BY_RULE
    for status, kind in [(COMPLETED, FailureKind.NONE), (FAILED, FailureKind.ERROR), (STOPPED, FailureKind.STOPPED)]:
        assert TrialOutcome.from_dict({"trial_id": 1, "status": status}).kind == kind
        record = TrialRecord.from_parts(spec, TrialOutcome(trial_id=3, status=status)).to_dict()
        assert record["kind"] == kind.value
        del record["kind"]
        assert TrialRecord.from_dict(record).kind == kind
    # an unknown kind (a newer writer) falls back on the status
    assert TrialOutcome.from_dict({"trial_id": 1, "status": FAILED, "kind": "from_the_future"}).kind == FailureKind.ERROR
    # and a kind round-trips through the outcome file as text
    new = TrialOutcome(trial_id=3, status=STOPPED, kind=FailureKind.DISK_FULL, reason="any words")
    assert json.loads(json.dumps(new.to_dict()))["kind"] == "disk_full"
    assert TrialOutcome.from_dict(json.loads(json.dumps(new.to_dict()))).kind == FailureKind.DISK_FULL
