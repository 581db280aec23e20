"""Asynchronous scheduling on the simulated executor (fake clock): busy slots, Population-Based parents
chosen when a trial starts, exact resume after a driver killed at any moment, and a driver whose
reads per trial do not grow with the run."""

from __future__ import annotations

import math
import random

import pytest

import autotune
from autotune.api import resume
from autotune.errors import RunInterrupted
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.ranking import Leaderboard
from autotune.records import COMPLETED
from autotune.results import locate_run
from autotune.samplers import sampler_names
from autotune.store import Store
from conftest import objective

SPACE = {"metric": "score", "mode": "max",
         "params": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                    "y": {"type": "float", "low": 0.0, "high": 1.0}}}


def model(config, budget, parent):
    """Duration 1-4 s depending on the config (as batch size or epochs would); score peaks at (0.3, 0.7),
    reached over two reports."""
    x, y = config["x"], config["y"]
    rng = random.Random(f"{x:.12f}{y:.12f}")
    final = -((x - 0.3) ** 2 + (y - 0.7) ** 2)
    return SimTrial(curve=(final - 0.1, final), duration=1.0 + 3.0 * rng.random())


def go(tmp_path, name, executor, **kw):
    opts = dict(sampler="random", evaluator="full", rounds=6, popsize=4, seed=0)
    opts.update(kw)
    return autotune.run(objective("quadratic"), space=SPACE, output=tmp_path, name=name,
                        executor=executor, **opts)


def test_async_keeps_every_slot_busy_where_rounds_wait(tmp_path):
    busy = {}
    for schedule in ("rounds", "async"):
        ex = SimulatedExecutor(model, slots=4)
        result = go(tmp_path, schedule, ex, schedule=schedule)
        assert len(result.records) == 24 and all(r.status == COMPLETED for r in result.records)
        busy[schedule] = ex.busy_fraction()
    assert busy["rounds"] < 0.8  # each round waits for its slowest trial
    assert busy["async"] > 0.9  # idle only while the last trials drain
    # more slots than a population: asynchronous uses all of them
    wide = SimulatedExecutor(model, slots=8)
    go(tmp_path, "wide", wide, popsize=4, rounds=10)
    assert wide.busy_fraction() > 0.85


def test_async_trials_start_the_moment_a_slot_frees(tmp_path):
    ex = SimulatedExecutor(model, slots=3)
    result = go(tmp_path, "starts", ex)
    ends = sorted(r.ended for r in result.records)
    starts = sorted(r.started for r in result.records)
    # the first three start at 0; every later start is some trial's end (no waiting for a round)
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert all(any(math.isclose(s, e) for e in ends) for s in starts[3:])
    by_start = sorted(result.records, key=lambda r: (r.started, r.trial_id))
    assert [r.trial_id for r in by_start] == list(range(24))  # planned in the order slots freed


@pytest.mark.parametrize("sampler", sampler_names())
def test_every_sampler_runs_asynchronously_with_more_slots_than_its_population(tmp_path, sampler):
    opts = {"bayes-gp": {"n_startup_trials": 6}}.get(sampler)
    result = go(tmp_path, sampler, SimulatedExecutor(model, slots=6), sampler=sampler, popsize=4, rounds=4,
                sampler_options=opts)
    assert sorted(r.trial_id for r in result.records) == list(range(16))
    assert len({tuple(sorted(r.config.items())) for r in result.records}) == 16  # no proposal repeated
    store, run_id, _ = locate_run(tmp_path / sampler)
    state = store.get_blob(run_id, "driver_state")
    assert state["specs"] == [] and state["sampler"]["pending"] == {}
    assert state["sampler"]["told"] == [[0, 15]]  # every id 0-15 told once


def test_pbt_async_parents_are_the_best_finished_when_the_child_starts(tmp_path):
    result = go(tmp_path, "pbt", SimulatedExecutor(model, slots=3), evaluator="pbt", rounds=8, popsize=4,
                pbt_exploit="round-robin", pbt_explore="sampler")
    records = {r.trial_id: r for r in result.records}
    assert all(records[i].parent_id is None and records[i].round == 0 for i in range(4))  # first popsize from scratch
    warm = [r for r in result.records if r.trial_id >= 4]
    assert warm and all(r.parent_id is not None for r in warm)
    for child in warm:
        parent = records[child.parent_id]
        assert parent.ended <= child.started  # finished before the child started
        finished = [r for r in result.records if r.ended <= child.started and r.trial_id != child.trial_id
                    and r.status == COMPLETED]
        board = Leaderboard("max")
        for r in finished:
            board.add(r)
        top = {board.at(i).trial_id for i in range(max(1, math.ceil(0.5 * len(board))))}
        assert parent.trial_id in top, (child.trial_id, parent.trial_id, sorted(top))
        assert child.round == parent.round + 1  # the generation is the lineage depth
        assert child.parent_hash == parent.checkpoint_hash and child.parent_step == parent.checkpoint_step
        assert child.checkpoint_step == parent.checkpoint_step + 2  # two reports per trial
    assert max(r.round for r in result.records) >= 2


def test_keep_checkpoints_async_never_deletes_a_parent_being_loaded(tmp_path):
    ex = SimulatedExecutor(model, slots=3)
    result = go(tmp_path, "keep", ex, evaluator="pbt", rounds=8, popsize=4, keep_checkpoints=2)
    kept = [r for r in result.records if r.checkpoint and not r.checkpoint_removed]
    best_two = sorted(result.records, key=lambda r: (-r.value, r.trial_id))[:2]
    assert {r.trial_id for r in kept} == {r.trial_id for r in best_two}
    for child in result.records:
        if child.parent_id is not None:  # its parent's checkpoint existed when it was planned
            assert child.parent_note is None


class Killed(BaseException):
    """A driver killed without warning (SIGKILL): no handler runs."""


@pytest.mark.parametrize("rules", [("round-robin", "sampler"), ("quantile", "perturb"), ("quantile", "trust-gp")],
                         ids=lambda r: "-".join(r))
@pytest.mark.parametrize("kill_at", [1, 2, 3, 5, 8, 13, 21, 27, 33, 38])
def test_a_driver_killed_at_any_write_resumes_exactly(tmp_path, monkeypatch, kill_at, rules):
    """Kill the driver at its Nth database write (a trial record or a state save); resume must finish
    with every trial once, never start again a trial that was recorded, and leave nothing in flight."""
    _kill_and_resume(tmp_path, monkeypatch, kill_at, rules)


@pytest.mark.parametrize("kill_at", [3, 13, 27])
def test_a_driver_killed_while_children_continue_in_place_resumes_exactly(tmp_path, monkeypatch, kill_at):
    """The same with trials that keep their live state: children continue in place where they can (the
    resumed run's fresh workers keep nothing from before the kill), and lineage stays exact."""
    result = _kill_and_resume(tmp_path, monkeypatch, kill_at, ("quantile", "perturb"), keep=2)
    assert any(r.in_place for r in result.records)


def _kill_and_resume(tmp_path, monkeypatch, kill_at, rules, keep=0):
    def executor():
        return SimulatedExecutor(model, slots=3, keep_states=keep, load_s=0.5 if keep else 0.0)

    writes = {"n": 0}
    real_record, real_blob = Store.record_trial, Store.put_blob

    def counting(real):
        def wrapper(self, *a, **k):
            writes["n"] += 1
            if writes["n"] == kill_at:
                raise Killed()
            return real(self, *a, **k)
        return wrapper

    monkeypatch.setattr(Store, "record_trial", counting(real_record))
    monkeypatch.setattr(Store, "put_blob", counting(real_blob))
    with pytest.raises(Killed):
        go(tmp_path, "k", executor(), sampler="hazero", evaluator="pbt", rounds=5, popsize=4,
           pbt_exploit=rules[0], pbt_explore=rules[1])
    monkeypatch.setattr(Store, "record_trial", real_record)
    monkeypatch.setattr(Store, "put_blob", real_blob)
    store, run_id, _ = locate_run(tmp_path / "k")
    recorded = {r.trial_id for r in store.trials(run_id) if r.status == COMPLETED}
    store.set_attr(run_id, "status", "interrupted")  # what the dashboard shows for a dead driver
    again = executor()
    result = resume(tmp_path / "k", executor=again)
    started_again = again.started
    assert result.status == "completed"
    assert sorted(r.trial_id for r in result.records) == list(range(20))
    assert all(r.status == COMPLETED for r in result.records)
    assert not recorded & set(started_again), "a recorded trial ran again"
    assert len(started_again) == len(set(started_again))
    state = store.get_blob(run_id, "driver_state")
    assert state["specs"] == [] and state["sampler"]["pending"] == {}
    assert state["sampler"]["told"] == [[0, 19]]  # the sampler heard of every trial exactly once
    for r in result.records:  # lineage stays verified across the kill
        if r.parent_id is not None:
            assert r.parent_hash == result.records[r.parent_id].checkpoint_hash
            assert r.parent_step == result.records[r.parent_id].checkpoint_step
    return result


def test_ctrl_c_records_running_trials_as_stopped_and_resume_runs_them(tmp_path):
    class Interrupting(SimulatedExecutor):
        def poll(self, timeout=None):
            if self.last_end is not None and self.last_end > 4.0:
                raise KeyboardInterrupt
            return super().poll(timeout)

    with pytest.raises(RunInterrupted):
        go(tmp_path, "c", Interrupting(model, slots=3))
    before = autotune.load(tmp_path / "c").records
    stopped = {r.trial_id for r in before if r.status == "stopped"}
    assert len(stopped) == 3  # the three trials running at the moment
    result = resume(tmp_path / "c", executor=SimulatedExecutor(model, slots=3))
    assert sorted(r.trial_id for r in result.records) == list(range(24))
    assert all(r.status == COMPLETED for r in result.records)  # no trial left stopped or running


def test_a_run_keeps_its_schedule_on_resume(tmp_path):
    with pytest.raises(RunInterrupted):
        class Once(SimulatedExecutor):
            def poll(self, timeout=None):
                if self.last_end is not None:
                    raise KeyboardInterrupt
                return super().poll(timeout)
        go(tmp_path, "r", Once(model, slots=2), schedule="rounds")
    result = resume(tmp_path / "r", executor=SimulatedExecutor(model, slots=2))
    assert [r.round for r in result.records] == [i // 4 for i in range(24)]  # still in rounds of popsize


def test_driver_reads_per_trial_do_not_grow_with_the_run(tmp_path, monkeypatch):
    """The driver reads the trials from the database once per run, and the run's attributes a fixed
    number of times, however many trials it runs (the per-trial cost is writes only)."""
    counts = {"trials": 0, "attrs": 0}
    real_trials = Store.trials
    real_attrs = Store.attrs

    def trials(self, run_id):
        counts["trials"] += 1
        return real_trials(self, run_id)

    def attrs(self, run_id):
        counts["attrs"] += 1
        return real_attrs(self, run_id)

    monkeypatch.setattr(Store, "trials", trials)
    monkeypatch.setattr(Store, "attrs", attrs)
    reads = []
    for rounds in (3, 12):
        counts.update(trials=0, attrs=0)
        ex = SimulatedExecutor(model, slots=4)
        go(tmp_path, f"n{rounds}", ex, rounds=rounds, evaluator="pbt", keep_checkpoints=3)
        reads.append(dict(counts))
    assert reads[0] == reads[1], reads


def test_schedule_comes_from_the_space_defaults_and_flags_override(tmp_path):
    from autotune.api import prepare
    from autotune.errors import AutotuneError

    space = {**SPACE, "defaults": {"schedule": "rounds"}}
    settings, *_ = prepare(objective("quadratic"), space=space, output=tmp_path)
    assert settings.schedule == "rounds"
    settings, *_ = prepare(objective("quadratic"), space=space, output=tmp_path, schedule="ASYNC")
    assert settings.schedule == "async"
    settings, *_ = prepare(objective("quadratic"), space=SPACE, output=tmp_path)
    assert settings.schedule == "async"  # the default
    bad = tmp_path / "bad.yaml"
    bad.write_text("metric: score\ndefaults: {schedule: sometimes}\nparams: {x: {type: float, low: 0, high: 1}}\n")
    with pytest.raises(AutotuneError, match=r"bad.yaml.*schedule.*'async' or 'rounds'"):
        prepare(objective("quadratic"), space=str(bad), output=tmp_path)
    with pytest.raises(AutotuneError, match="schedule must be 'async' or 'rounds'"):
        prepare(objective("quadratic"), space=SPACE, output=tmp_path, schedule="later")


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_no_trial_starts_after_the_time_budget_and_the_running_ones_finish(tmp_path, schedule):
    """Trials of 10 s on 2 slots with a 25 s budget: starts at 0, 10 and 20 s, none at 30 s; the run is
    completed with 6 of its 40 trials, says why, and lost nothing (every trial finished)."""
    def steady(config, budget, parent):
        return SimTrial(curve=(config["x"],), duration=10.0)

    ex = SimulatedExecutor(steady, slots=2)
    result = go(tmp_path, schedule, ex, schedule=schedule, rounds=20, popsize=2, time_budget=25)
    assert len(result.records) == 6 and all(r.status == COMPLETED for r in result.records)
    assert sorted(ex.started) == sorted(r.trial_id for r in result.records)
    assert ex.clock.now == 30.0  # the last two trials, started at 20 s, were let finish
    assert result.status == "completed" and result.time_budget_spent is not None
    unlimited = go(tmp_path, schedule + "-all", SimulatedExecutor(steady, slots=2), schedule=schedule, rounds=3,
                   popsize=2)
    assert len(unlimited.records) == 6 and unlimited.time_budget_spent is None


def test_time_budget_from_the_space_defaults_flags_and_durations(tmp_path, capsys):
    from autotune.api import prepare
    from autotune.errors import AutotuneError, ConfigError
    from autotune.schema import BY_NAME

    space = {**SPACE, "defaults": {"time_budget": 600}}
    settings, *_ = prepare(objective("quadratic"), space=space, output=tmp_path)
    assert settings.time_budget == 600
    settings, *_ = prepare(objective("quadratic"), space=space, output=tmp_path, time_budget=30)
    assert settings.time_budget == 30
    duration = BY_NAME["time_budget"].parse  # what --time-budget reads
    assert [duration(t) for t in ("90", "90s", "30m", "1.5h")] == [90, 90, 1800, 5400]
    for bad in ("soon", "-5m", "0", "h"):
        with pytest.raises(ConfigError, match="time_budget must be a number of seconds > 0"):
            duration(bad)
    with pytest.raises(AutotuneError, match="time_budget"):
        prepare(objective("quadratic"), space=SPACE, output=tmp_path, time_budget=-1)
    bad = tmp_path / "bad.yaml"
    bad.write_text("metric: score\ndefaults: {time_budget: forever}\nparams: {x: {type: float, low: 0, high: 1}}\n")
    with pytest.raises(AutotuneError, match=r"bad.yaml.*time_budget.*seconds"):
        prepare(objective("quadratic"), space=str(bad), output=tmp_path)
