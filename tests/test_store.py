"""The results database's writes: what plain Optuna reads back, one transaction per write, live rows
kept until the next write, and SQLite's durability setting."""

from __future__ import annotations

import math
import sqlite3
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event

from autotune.errors import StoreError
from autotune.records import TrialOutcome, TrialRecord, TrialSpec
from autotune.store import DB_FILE_NAME, LAST_REPORT_ATTR, RECORD_ATTR, Store, sqlite_url

DISTS = {"lr": FloatDistribution(1e-4, 1.0, log=True), "bs": IntDistribution(8, 64),
         "opt": CategoricalDistribution(["sgd", "adam"])}
PARAMS = {"lr": 0.01, "bs": 32, "opt": "adam"}


def record(trial_id: int, status: str = "completed", value: float | None = 0.5, steps: int = 3) -> TrialRecord:
    now = time.time()
    reports = [{"step": s, "metrics": {"score": 0.1 * s, "loss": 1.0 / s}, "time": now} for s in range(1, steps + 1)]
    spec = TrialSpec(trial_id=trial_id, round=trial_id // 2, config=dict(PARAMS), budget=None,
                     trial_dir=f"trials/{trial_id:06d}")
    out = TrialOutcome(trial_id=trial_id, status=status, value=value, reports=reports, started=now - 2.0, ended=now,
                       reason=None if status == "completed" else "it failed", node="here")
    return TrialRecord.from_parts(spec, out)


@pytest.fixture
def store(tmp_path):
    store = Store(sqlite_url(tmp_path))
    store.run_id_ = store.create_run("r", "max", {"settings": {"metric": "score"}})
    return store


def commits(store: Store) -> list[int]:
    """A list that counts the store's commits that wrote something, from now on."""
    seen: list[int] = []
    wrote = {"now": False}

    def execute(con, cursor, statement, *rest):
        wrote["now"] = wrote["now"] or statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))

    def commit(con):
        if wrote["now"]:
            seen.append(1)
        wrote["now"] = False

    event.listen(store.storage.engine, "before_cursor_execute", execute)
    event.listen(store.storage.engine, "commit", commit)
    return seen


def optuna_trials(tmp_path) -> list[FrozenTrial]:
    return optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / DB_FILE_NAME}").trials


def written_by_optuna(tmp_path, rec: TrialRecord, user_attrs: dict) -> FrozenTrial:
    """The same trial written by Optuna's own ``create_new_trial`` (as the store did before), read back."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'ref.db'}")
    run = storage.create_new_study([optuna.study.StudyDirection.MAXIMIZE], study_name="ref")
    state = {"completed": TrialState.COMPLETE, "pruned": TrialState.PRUNED}.get(rec.status, TrialState.FAIL)
    tid = storage.create_new_trial(run, template_trial=FrozenTrial(
        number=-1, state=state, value=rec.value if state == TrialState.COMPLETE else None, values=None,
        datetime_start=None, datetime_complete=None, params=dict(PARAMS), distributions=dict(DISTS),
        user_attrs=user_attrs, system_attrs={}, trial_id=-1,
        intermediate_values={r["step"]: r["metrics"]["score"] for r in rec.reports}))
    return storage.get_trial(tid)


def test_a_finished_trial_reads_back_in_optuna_as_optuna_writes_it(tmp_path, store):
    run = store.run_id_
    records = [record(0), record(1), record(2, status="failed", value=None), record(3, status="pruned", value=None,
                                                                                     steps=2)]
    store.record_trial(run, records[0], DISTS)  # never live: a new row
    store.start_trial(run, 1, 0, DISTS, PARAMS)  # live: its RUNNING row, then finished in place
    store.report_trial(run, 1, 1, {"score": 0.1})
    store.flush_live()
    for rec in records[1:]:
        store.record_trial(run, rec, DISTS)
    trials = optuna_trials(tmp_path)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert [t.value for t in trials] == [0.5, 0.5, None, None]
    for t in trials:
        assert t.params == PARAMS and t.distributions == DISTS
        steps = 2 if t.number == 3 else 3
        assert t.intermediate_values == {s: pytest.approx(0.1 * s) for s in range(1, steps + 1)}
        assert t.user_attrs["trial_id"] == t.number and t.user_attrs[RECORD_ATTR]["trial_id"] == t.number
        assert t.datetime_start <= t.datetime_complete
        assert abs(t.datetime_complete.timestamp() - t.user_attrs["ended"]) < 1.0  # local time, as Optuna's
    assert LAST_REPORT_ATTR in trials[1].user_attrs  # the live row's last report stays
    assert trials[1].user_attrs["status"] == "completed"  # the live row's own status was replaced
    for t, rec in zip(trials, records):  # the rows Optuna's own create_new_trial writes for the same trial
        ref = written_by_optuna(tmp_path / str(t.number), rec, t.user_attrs) if (tmp_path / str(t.number)).mkdir() \
            is None else None
        assert (ref.state, ref.value, ref.params, ref.distributions, ref.intermediate_values, ref.user_attrs) == \
            (t.state, t.value, t.params, t.distributions, t.intermediate_values, t.user_attrs)
    # autotune reads its records back whole
    assert [r.to_dict() for r in store.trials(run)] == [r.to_dict() for r in records]
    # and a study that Optuna goes on with numbers its trials on
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path / DB_FILE_NAME}")
    assert study.best_trial.number == 0
    assert study.ask().number == 4


def test_each_write_is_one_transaction(tmp_path, store):
    run = store.run_id_
    seen = commits(store)
    store.put_blob(run, "driver_state", {"big": "x" * 150_000})  # three chunks and a pointer
    assert len(seen) == 1
    store.record_trial(run, record(0), DISTS)
    assert len(seen) == 2
    for t in (1, 2, 3):
        store.start_trial(run, t, 0, DISTS, PARAMS)
        store.report_trial(run, t, 1, {"score": 0.1})
    assert len(seen) == 2  # kept for the next write
    store.flush_live()
    assert len(seen) == 3
    for t in (1, 2, 3):
        store.report_trial(run, t, 2, {"score": 0.2})
    store.record_trial(run, record(1), DISTS)  # takes the waiting reports of 2 and 3 along
    assert len(seen) == 4
    store.flush_live()
    assert len(seen) == 4  # nothing waited
    store.mark_checkpoints_removed(run, [0, 1])
    assert len(seen) == 5
    assert store.get_blob(run, "driver_state") == {"big": "x" * 150_000}
    running = {t["trial_id"]: t for t in store.running_trials(run)}
    assert sorted(running) == [2, 3]
    assert [r["step"] for r in running[2]["reports"]] == [1, 2]
    assert running[2]["last_report"]["step"] == 2
    from autotune.store import removed_checkpoints

    assert removed_checkpoints(store.attrs(run)) == {0, 1}


def test_live_rows_wait_for_the_next_write_and_a_trial_that_ends_first_is_written_once(tmp_path, store):
    run = store.run_id_
    store.start_trial(run, 0, 0, DISTS, PARAMS)
    store.report_trial(run, 0, 1, {"score": 0.1})
    assert store.running_trials(run) == []  # not yet written
    store.record_trial(run, record(0), DISTS)
    trials = optuna_trials(tmp_path)
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE  # one row, finished
    store.report_trial(run, 0, 4, {"score": 9.0})  # a late copy of a report: ignored
    store.report_trial(run, 7, 1, {"score": 9.0})  # a trial never started here: ignored
    store.flush_live()
    assert [t.intermediate_values for t in optuna_trials(tmp_path)] == [{1: 0.1, 2: 0.2, 3: pytest.approx(0.3)}]
    # a report that is not a finite number keeps the last report and no intermediate value
    store.start_trial(run, 1, 0, DISTS, PARAMS)
    store.report_trial(run, 1, 1, {"score": "nan?"})
    store.report_trial(run, 1, 2, {"score": math.inf})
    store.flush_live()
    (live,) = store.running_trials(run)
    assert live["reports"] == [] and live["last_report"]["step"] == 2


def test_a_live_trial_reporting_a_step_again_keeps_one_value_per_step_to_its_end(tmp_path, store):
    run = store.run_id_
    store.start_trial(run, 0, 0, DISTS, PARAMS)
    store.report_trial(run, 0, 1, {"score": 0.5})
    store.flush_live()
    store.report_trial(run, 0, 1, {"score": 0.1})  # the same step again (a trial that went back): replaced
    store.report_trial(run, 0, 2, {"score": 0.7})
    store.flush_live()
    (live,) = store.running_trials(run)
    assert [(r["step"], r["metrics"]["score"]) for r in live["reports"]] == [(1, 0.1), (2, 0.7)]
    store.record_trial(run, record(0), DISTS)  # reports steps 1-3: the live ones replaced, step 3 added
    (t,) = optuna_trials(tmp_path)
    assert t.state == TrialState.COMPLETE and t.value == 0.5
    assert t.intermediate_values == {s: pytest.approx(0.1 * s) for s in (1, 2, 3)}
    assert t.user_attrs["status"] == "completed" and t.user_attrs[LAST_REPORT_ATTR]["step"] == 2
    # a trial that never reported live, finished in place: its own rows only
    store.start_trial(run, 1, 0, DISTS, PARAMS)
    store.flush_live()
    store.record_trial(run, record(1, status="failed", value=None, steps=2), DISTS)
    assert [(x.state, x.value, x.intermediate_values) for x in optuna_trials(tmp_path)][1] == \
        (TrialState.FAIL, None, {1: pytest.approx(0.1), 2: pytest.approx(0.2)})


def test_a_write_killed_before_its_commit_leaves_the_last_one_whole(tmp_path, store, monkeypatch):
    run = store.run_id_
    store.put_blob(run, "driver_state", {"n": 1, "pad": "x" * 70_000})
    store.start_trial(run, 0, 0, DISTS, PARAMS)

    class Killed(BaseException):
        pass

    real = Store._put_run_attrs

    def dies_after_writing(session, run_id, values):
        real(session, run_id, values)
        raise Killed  # the statements ran; the commit never comes

    monkeypatch.setattr(Store, "_put_run_attrs", staticmethod(dies_after_writing))
    with pytest.raises(Killed):
        store.put_blob(run, "driver_state", {"n": 2, "pad": "y" * 200_000})
    monkeypatch.undo()
    again = Store(sqlite_url(tmp_path))  # what a resumed driver reads
    assert again.get_blob(run, "driver_state") == {"n": 1, "pad": "x" * 70_000}
    assert again.running_trials(run) == []  # the live row went down with the transaction

    def dies_in_record(session, *a, **k):
        raise Killed

    monkeypatch.setattr(Store, "_put_trial_rows", staticmethod(dies_in_record))
    with pytest.raises(Killed):
        store.record_trial(run, record(5), DISTS)
    monkeypatch.undo()
    assert again.trials(run) == [] and optuna_trials(tmp_path) == []


def test_sqlite_commits_without_fsync_unless_asked(tmp_path, monkeypatch):
    def synchronous(store: Store) -> int:
        with store.storage.engine.connect() as con:
            return con.exec_driver_sql("PRAGMA synchronous").scalar()

    store = Store(sqlite_url(tmp_path / "a"))
    assert synchronous(store) == 1  # NORMAL: WAL commits are safe from a killed process
    with sqlite3.connect(tmp_path / "a" / DB_FILE_NAME) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    monkeypatch.setenv("AUTOTUNE_SQLITE_SYNCHRONOUS", "full")
    assert synchronous(Store(sqlite_url(tmp_path / "b"))) == 2
    monkeypatch.setenv("AUTOTUNE_SQLITE_SYNCHRONOUS", "sometimes")
    with pytest.raises(StoreError, match="AUTOTUNE_SQLITE_SYNCHRONOUS"):
        Store(sqlite_url(tmp_path / "c"))


def test_writes_of_many_keys_at_once_read_back(tmp_path, store):
    """Lists of keys longer than the store binds one by one (FIXED_IN) take the other statement form."""
    from autotune.rdb_rows import FIXED_IN
    from autotune.store import removed_checkpoints

    run = store.run_id_
    many = list(range(FIXED_IN + 8))
    store.mark_checkpoints_removed(run, many[:3])
    store.mark_checkpoints_removed(run, many)  # three of them already stored: updated, the rest added
    assert removed_checkpoints(store.attrs(run)) == set(many)
    rec = record(0, steps=FIXED_IN + 5)
    store.start_trial(run, 0, 0, DISTS, PARAMS)
    for step in range(1, FIXED_IN + 3):
        store.report_trial(run, 0, step, {"score": 9.0})
    store.flush_live()
    store.record_trial(run, rec, DISTS)
    (t,) = optuna_trials(tmp_path)
    assert t.intermediate_values == {s: pytest.approx(0.1 * s) for s in range(1, FIXED_IN + 6)}


def test_tallies_hold_what_the_records_say_of_status_value_and_end_read_without_the_records(tmp_path, store):
    """The runs list counts and ranks from ``tallies``: the latest attempt of each trial id, as ``trials``
    has it, a running trial (no record yet) left out, an infinite value kept as stored."""
    from autotune.records import TrialTally

    run = store.run_id_
    written = [record(0, value=0.25), record(1, "failed", None), record(2, "pruned", None), record(3, "stopped", None),
               record(4, value=math.inf), record(5, value=-3.5)]
    for rec in written:
        store.record_trial(run, rec, DISTS)
    store.record_trial(run, record(1, value=0.75), DISTS)  # trial 1 retried: its second attempt completed
    store.start_trial(run, 6, 3, DISTS, PARAMS)  # running: a RUNNING row without a record
    store.report_trial(run, 6, 1, {"score": 0.5})
    store.flush_live()
    assert len(optuna_trials(tmp_path)) == 8
    expected = [TrialTally(r.trial_id, r.status, r.value if r.status == "completed" else None, r.ended)
                for r in store.trials(run)]
    assert [t.trial_id for t in expected] == [0, 1, 2, 3, 4, 5]
    assert store.tallies(run) == expected
    assert store.tallies(run)[1] == TrialTally(1, "completed", 0.75, expected[1].ended)
    assert store.tallies(run)[4].value == math.inf
    # one record read alone is the one `trials` holds: the latest attempt; none for a running or unknown trial
    assert [store.record(run, t.trial_id) for t in expected] == store.trials(run)
    assert store.record(run, 1).value == 0.75
    assert store.record(run, 6) is None and store.record(run, 99) is None
