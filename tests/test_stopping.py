"""Early stopping: the rules (ASHA, median), and pruned trials in the records, the database and the CLI,
with both evaluators and both schedules on the simulated executor, a Python objective told at its
report in-process, and a trial on Ray told through the report bus."""

from __future__ import annotations

import json
import math

import optuna
import pytest
from conftest import cli, objective

import autotune
from autotune.errors import ConfigError
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.stopping import ASHA, MedianRule, make_rule

SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


# -- the rules ----------------------------------------------------------------------------------------
def test_asha_keeps_the_top_third_at_each_rung():
    rule = ASHA(grace_period=1, reduction_factor=3)
    assert rule.rung_steps(10) == [1, 3, 9]
    assert rule.report(0, 1, 0.5) is False  # the first at a rung always goes on
    assert rule.report(1, 1, 0.9) is False  # better than everything there
    assert rule.report(2, 1, 0.1) is True  # below the top third of {0.1, 0.5, 0.9}
    assert rule.report(0, 2, 0.0) is False  # between rungs: nothing to judge
    assert rule.report(1, 3, 0.95) is False
    assert rule.report(0, 3, 0.6) is True  # at rung 3: worse than trial 1 there


def test_asha_options_are_checked():
    with pytest.raises(ConfigError, match="reduction_factor must be a number > 1"):
        make_rule("asha", {"reduction_factor": 1})
    with pytest.raises(ConfigError, match="unexpected keyword argument 'patience'"):
        make_rule("asha", {"patience": 2})
    with pytest.raises(ConfigError, match="unknown early stop rule 'hyperband'"):
        make_rule("hyperband")


def test_median_rule_stops_a_trial_below_the_median_of_the_others_at_that_step():
    rule = MedianRule(grace_period=2, min_trials=2)
    for t, v in ((0, 0.5), (1, 0.6), (2, 0.7)):
        assert rule.report(t, 1, v) is False
        assert rule.report(t, 2, v) is False or t == 0
    assert rule.report(3, 1, 0.1) is False  # before the grace period
    assert rule.report(3, 2, 0.2) is True  # best 0.2 < median(0.5, 0.6, 0.7)
    assert rule.report(4, 2, 0.65) is False


# -- pruned trials in a run ---------------------------------------------------------------------------
def model(config, budget, parent):
    """10 epochs; the asymptote is set by x, so bad configs are bad from the first epoch."""
    x = config["x"]
    start = (parent.step or 0) if parent else 0
    asym = 1.0 - (x - 0.3) ** 2
    return SimTrial(curve=tuple(asym * (1 - math.exp(-(start + e + 1) / 3)) for e in range(10)), duration=10.0)


@pytest.mark.parametrize("schedule", ["async", "rounds"])
@pytest.mark.parametrize("evaluator", ["full", "pbt"])
@pytest.mark.parametrize("rule", ["asha", "median"])
def test_losing_trials_are_pruned_with_their_reports_and_checkpoint(tmp_path, rule, evaluator, schedule):
    ex = SimulatedExecutor(model, slots=4)
    result = autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator=evaluator, rounds=5,
                          popsize=4, seed=0, output=tmp_path, name="es", executor=ex, schedule=schedule,
                          early_stop=rule)
    pruned = [r for r in result.records if r.status == "pruned"]
    completed = [r for r in result.records if r.status == "completed"]
    assert len(result.records) == 20 and pruned and completed
    for r in pruned:  # a rule may also stop a trial at its last report (a pbt step's final epoch)
        assert r.value is None and r.reports and len(r.reports) <= 10
        assert r.checkpoint and r.checkpoint_step == r.reports[-1]["step"]
        assert "early-stopping rule" in r.reason
    assert any(len(r.reports) < 10 for r in pruned)  # and it stops trials before their end
    assert result.best.status == "completed"  # the best is among completed trials
    # pruning saved simulated trial-time
    assert ex.busy_s < 20 * 10.0
    study = optuna.load_study(study_name="es", storage=f"sqlite:///{tmp_path / 'es' / 'autotune.db'}")
    states = {t.user_attrs["trial_id"]: t.state for t in study.trials}
    assert {tid for tid, s in states.items() if s == optuna.trial.TrialState.PRUNED} == {r.trial_id for r in pruned}
    frame = result.trials
    assert (frame["status"] == "pruned").sum() == len(pruned)


def test_none_prunes_nothing(tmp_path):
    result = autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=3,
                          popsize=4, seed=0, output=tmp_path, name="none", executor=SimulatedExecutor(model, 4))
    assert all(r.status == "completed" and len(r.reports) == 10 for r in result.records)


def test_a_python_objective_is_told_at_its_report_in_process(tmp_path):
    """The in-process executor asks the rule at each report: ``report`` raises, the runner records it."""
    space = {**SPACE, "fixed": {"steps": 6}}
    result = autotune.run(objective("many_reports"), space=space, sampler="random", evaluator="full", rounds=3,
                          popsize=4, seed=1, output=tmp_path, name="told", executor="local", early_stop="asha",
                          early_stop_options={"grace_period": 1, "reduction_factor": 2})
    pruned = [r for r in result.records if r.status == "pruned"]
    assert pruned
    for r in pruned:
        log = (tmp_path / "told" / r.trial_dir / "trial.log").read_text()
        assert "cleaned up after should_stop" in log  # the objective saw trial.should_stop
        assert len(r.reports) < 6 and r.checkpoint
    shown = cli("show", str(tmp_path / "told"))
    assert f"{len(pruned)} pruned" in shown.stdout, shown.stdout
    doc = json.loads(cli("show", str(tmp_path / "told"), "--json").stdout)
    assert sum(t["status"] == "pruned" for t in doc["trials"]) == len(pruned)


def test_an_objective_that_submits_and_returns_when_told_is_recorded_pruned(tmp_path):
    """``Trial.submit`` does not raise: a loop that ends itself (a Trainer callback) still counts as pruned."""
    space = {**SPACE, "fixed": {"steps": 6}}
    result = autotune.run(objective("submits"), space=space, sampler="random", evaluator="full", rounds=3,
                          popsize=4, seed=1, output=tmp_path, name="sub", executor="local", early_stop="asha",
                          early_stop_options={"grace_period": 1, "reduction_factor": 2})
    pruned = [r for r in result.records if r.status == "pruned"]
    assert pruned and all(r.status in ("completed", "pruned") for r in result.records)
    for r in pruned:
        log = (tmp_path / "sub" / r.trial_dir / "trial.log").read_text()
        assert f"ended its own loop at step {r.reports[-1]['step']}" in log
        assert len(r.reports) < 6 and r.checkpoint


@pytest.mark.slow
def test_a_trial_on_ray_is_told_through_the_report_bus(tmp_path):
    space = {**SPACE, "fixed": {"steps": 6, "pause": 0.3}}
    result = autotune.run(objective("many_reports"), space=space, sampler="random", evaluator="full", rounds=3,
                          popsize=2, seed=1, output=tmp_path, name="ray", early_stop="asha",
                          early_stop_options={"grace_period": 2, "reduction_factor": 2})
    pruned = [r for r in result.records if r.status == "pruned"]
    assert pruned and all(r.status in ("completed", "pruned") for r in result.records)
    for r in pruned:  # stopped by its own report raising, not killed: its log says it cleaned up
        log = (tmp_path / "ray" / r.trial_dir / "trial.log").read_text()
        assert "cleaned up after should_stop" in log
        # ASHA stops only at its rungs (steps 2 and 4 here), and a trial on Ray waits for the verdict on
        # the report it made, so it stops at the rung it lost at, not one report (an epoch) later
        assert r.reports[-1]["step"] in (2, 4), [rep["step"] for rep in r.reports]


@pytest.mark.parametrize("schedule", ["async", "rounds"])
@pytest.mark.parametrize("sampler", ["bayes", "hazero", "pshe2", "pshe3"])
def test_samplers_learn_from_pruned_trials_in_a_run(tmp_path, sampler, schedule):
    """The driver tells pruned trials as pruned, with their reports from the trial's own start: Optuna's
    study gets PRUNED trials with those intermediate values; autotune's samplers keep their rule."""
    from autotune.results import locate_run
    from autotune.samplers import make_sampler
    from autotune.space import SearchSpace

    result = autotune.run(objective("quadratic"), space=SPACE, sampler=sampler, evaluator="full", rounds=4,
                          popsize=4, seed=0, output=tmp_path, name="learn", executor=SimulatedExecutor(model, 4),
                          schedule=schedule, early_stop="asha")
    pruned = {r.trial_id: r for r in result.records if r.status == "pruned"}
    assert pruned and len(result.records) == 16
    store, run_id, _ = locate_run(tmp_path / "learn")
    state = store.driver_state(run_id)["sampler"]
    told = make_sampler(sampler, SearchSpace.from_dict({"params": SPACE["params"]}), 4, 0)
    told.set_asynchronous(schedule == "async")
    told.load_state_dict(state)
    if sampler == "bayes":
        trials = told.study.trials
        got = {t.number: t for t in trials if t.state == optuna.trial.TrialState.PRUNED}
        assert len(got) == len(pruned)
        for tid, record in pruned.items():  # candidate ids are trial ids; Optuna numbers follow them
            curve = {r["step"]: -r["metrics"]["score"] for r in record.reports}
            assert got[tid].intermediate_values == pytest.approx(curve)
    elif sampler == "pshe3":
        outcomes = dict(zip(told._ids, (f for _, f in told._observed)))
        for tid, record in pruned.items():
            assert outcomes[tid] == [len(record.reports), -record.reports[-1]["metrics"]["score"]]


def test_pruned_trials_are_counted_apart_everywhere(tmp_path, capsys):
    """The records, the DataFrame, ``export``, ``show``, the API and optuna agree on the pruned trials,
    and none of them counts a pruned trial as failed."""
    import csv

    from fastapi.testclient import TestClient

    from autotune.cli import main as cli_main
    from autotune.dashboard.app import create_app

    result = autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=4,
                          popsize=4, seed=1, output=tmp_path, name="count", executor=SimulatedExecutor(model, 4),
                          early_stop="asha")
    n_pruned = sum(r.status == "pruned" for r in result.records)
    n_completed = sum(r.status == "completed" for r in result.records)
    assert n_pruned and n_completed + n_pruned == 16
    assert (result.trials["status"] == "pruned").sum() == n_pruned
    assert result.trials.loc[result.trials["status"] == "pruned", "value"].isna().all()

    run_dir = tmp_path / "count"
    assert cli_main(["export", str(run_dir), "--output", str(tmp_path / "t.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert sum(r["status"] == "pruned" for r in rows) == n_pruned
    assert not any(r["status"] == "failed" for r in rows)

    capsys.readouterr()
    assert cli_main(["show", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert f"0 failed, {n_pruned} pruned" in shown

    client = TestClient(create_app([tmp_path]))
    (run,) = client.get("/api/runs").json()["runs"]
    assert (run["trials_done"], run["trials_failed"], run["trials_pruned"]) == (n_completed, 0, n_pruned)
    trials = client.get("/api/runs/count/trials").json()
    rows = trials["trials"] if isinstance(trials, dict) else trials
    assert sum(t["status"] == "pruned" for t in rows) == n_pruned


@pytest.mark.parametrize("budget, steps", [(None, None), (0.5, 1), (1.0, 1), (1.5, 2), (2.5, 3), (3.0, 3)])
def test_a_trials_budget_is_whole_reports_rounded_up(tmp_path, budget, steps):
    """The rule both training-loop callbacks stop by: a fractional budget rounds up (never half to even)."""
    from autotune.trial import Trial

    trial = Trial(id=0, round=0, budget=budget, dir=tmp_path, config={}, metric="m", start_step=4)
    assert trial.budget_steps == steps
    assert trial.resumed_step == 0  # no parent checkpoint: the loop starts from scratch
    child = Trial(id=1, round=1, budget=budget, dir=tmp_path, config={}, metric="m", parent_checkpoint="p",
                  start_step=4)
    assert child.resumed_step == 4
