"""Faults in the results database lose nothing.

A fault injected at each kind of database write the driver makes, under both schedules, ends in one
error line and an interrupted run that ``resume`` finishes with every trial once, none left RUNNING,
and the Optuna study agreeing with the records.  Real faults: another process holding SQLite's write
lock (shorter and longer than the retries), and the database filling its disk.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy.exc
import yaml

import autotune
from autotune.api import resume
from autotune.errors import DiskFullError, StoreError, StoreWriteError
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.results import locate_run
from autotune.statuses import COMPLETED, INTERRUPTED, PRUNED, SUPERSEDED
from autotune.store import Store, _storage_errors
from conftest import REPO, error_line, objective

SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
ROUNDS, POPSIZE = 4, 3
TOTAL = ROUNDS * POPSIZE

#: the driver's database writes: store methods (a run created, run attributes such as its status, a
#: trial recorded, the driver's state saved, checkpoints marked removed) and the live rows written
#: with the next write (a trial started, a trial's reports)
METHOD_WRITES = ("create_run", "set_attr", "record_trial", "put_blob", "mark_checkpoints_removed")
ROW_WRITES = ("start_trial", "report_trial")
WRITES = METHOD_WRITES + ROW_WRITES


def _curve(config, budget, parent):
    x = config["x"]
    return SimTrial(curve=(x / 3, x / 2, x), duration=1.0 + 2.0 * ((x * 7.3) % 1.0))


def _db_error(text: str = "disk I/O error") -> Exception:
    """What SQLAlchemy raises for a failing statement."""
    return sqlalchemy.exc.OperationalError("INSERT INTO trials ...", {}, sqlite3.OperationalError(text))


class _Faults:
    """Counts the driver's database writes by kind and fails the ``at``-th one of kind ``kind``
    (``times`` times in a row: the retries see it again), from inside the store's error handling."""

    def __init__(self, monkeypatch, kind: str | None = None, at: int = 0, times: int = 1, error=_db_error):
        self.kind, self.at, self.times, self.error = kind, at, times, error
        self.counts = {k: 0 for k in WRITES}
        self.raised = 0
        main = threading.main_thread()
        faults = self

        def hit(name: str) -> None:
            if threading.current_thread() is not main:
                return  # the heartbeat thread: its writes are skipped when they fail
            if name != faults.kind or not faults.raised:  # a retry of the failed write is the same write
                faults.counts[name] += 1
            if name == faults.kind and faults.counts[name] == faults.at and faults.raised < faults.times:
                faults.raised += 1
                raise faults.error()

        inside = threading.local()  # a write made inside another (create_run's attributes) is part of that one

        for name in METHOD_WRITES:
            real = getattr(Store, name).__wrapped__

            def method(self, *a, _real=real, _name=name, **k):
                if getattr(inside, "depth", 0):
                    return _real(self, *a, **k)
                hit(_name)
                inside.depth = 1
                try:
                    return _real(self, *a, **k)
                finally:
                    inside.depth = 0

            monkeypatch.setattr(Store, name, _storage_errors(method))
        real_live = Store._write_live

        def write_live(self, con):
            rows = list(self._pending.values())
            if any(r.start is not None for r in rows):
                hit("start_trial")
            if any(r.steps or r.last is not None for r in rows):
                hit("report_trial")
            return real_live(self, con)

        monkeypatch.setattr(Store, "_write_live", write_live)


def _run(where, schedule, executor=None):
    return autotune.run(objective("quadratic"), space=SPACE, sampler="hazero", evaluator="pbt", rounds=ROUNDS,
                        popsize=POPSIZE, seed=2, output=where, name="f", schedule=schedule, keep_checkpoints=2,
                        executor=executor or SimulatedExecutor(_curve, slots=2))


def _check_resumed(run_dir, context: str, recorded: set[int] = frozenset(), storage: str | None = None):
    """Resume ``run_dir`` on a fresh executor: every trial once, nothing RUNNING, study and records agreeing."""
    again = SimulatedExecutor(_curve, slots=2)
    result = resume(run_dir, executor=again, storage=storage)
    assert result.status == COMPLETED, context
    assert [r.trial_id for r in result.records] == list(range(TOTAL)), context
    assert all(r.status == COMPLETED for r in result.records), context
    assert not recorded & set(again.started), f"{context}: a recorded trial ran again"
    assert len(again.started) == len(set(again.started)), context
    store, run_id, name = locate_run(run_dir, storage)
    state = store.get_blob(run_id, "driver_state")
    assert state["sampler"]["told"] == [[0, TOTAL - 1]] and state["sampler"]["pending"] == {}, context
    url = storage or f"sqlite:///{run_dir / 'autotune.db'}"
    rows = optuna.load_study(study_name=name, storage=url).trials
    assert not [t for t in rows if t.state == optuna.trial.TrialState.RUNNING], context
    final = {}
    for t in rows:
        if t.user_attrs.get("status") != SUPERSEDED:
            assert t.user_attrs["trial_id"] not in final, f"{context}: two rows for trial {t.user_attrs['trial_id']}"
            final[t.user_attrs["trial_id"]] = t
    assert sorted(final) == list(range(TOTAL)), context
    for r in result.records:
        row = final[r.trial_id]
        want = {COMPLETED: optuna.trial.TrialState.COMPLETE, PRUNED: optuna.trial.TrialState.PRUNED}
        assert row.state == want.get(r.status, optuna.trial.TrialState.FAIL), context
        assert row.value == r.value and row.params == r.config, context
        assert row.user_attrs["status"] == r.status, context
    return result


_COUNTS: dict[str, dict[str, int]] = {}


def _counts(tmp_path_factory, schedule: str) -> dict[str, int]:
    """How often an undisturbed run makes each kind of write (counted once per schedule)."""
    if schedule not in _COUNTS:
        mp = pytest.MonkeyPatch()
        try:
            faults = _Faults(mp)
            result = _run(tmp_path_factory.mktemp(f"count-{schedule}"), schedule)
        finally:
            mp.undo()
        assert result.status == COMPLETED
        _COUNTS[schedule] = faults.counts
    return _COUNTS[schedule]


@pytest.mark.parametrize("kind", WRITES)
@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_a_failing_database_write_interrupts_the_run_and_resume_finishes_it(tmp_path, tmp_path_factory,
                                                                            monkeypatch, schedule, kind):
    counts = _counts(tmp_path_factory, schedule)
    n = counts[kind]
    assert n > 0, f"the run makes no {kind} write"
    for at in sorted({1, (n + 1) // 2, n}):  # its first, middle and last time
        context = f"{schedule}: {kind} write {at} of {n} failed"
        where = tmp_path / f"{kind}-{at}"
        faults = _Faults(monkeypatch, kind, at)
        try:
            _run(where, schedule)
        except StoreError as e:
            error = e
        else:
            pytest.fail(f"{context}: the run ended without that write (writes: {faults.counts})")
        finally:
            monkeypatch.undo()
        assert faults.raised == 1, context
        message = str(error)
        assert "\n" not in message and "disk I/O error" in message, context
        if kind == "create_run":  # no run to resume: nothing is left behind, and the run can start again
            assert not isinstance(error, StoreWriteError) and not (where / "f").exists(), context
            assert _run(where, schedule).status == COMPLETED, context
            continue
        assert isinstance(error, StoreWriteError), context
        assert f"autotune resume {where / 'f'}" in message, context
        run_dir = where / "f"
        partial = autotune.load(run_dir)
        assert partial.status == INTERRUPTED, context
        recorded = {r.trial_id for r in partial.records}
        _check_resumed(run_dir, context, recorded)


def test_a_write_that_fails_while_the_database_is_locked_is_tried_again(tmp_path, monkeypatch):
    """A transient fault (the database locked) a few times in a row: the retries carry the run through."""
    monkeypatch.setattr("autotune.store.RETRY_FIRST_S", 0.01)
    faults = _Faults(monkeypatch, "record_trial", 3, times=3, error=lambda: _db_error("database is locked"))
    result = _run(tmp_path, "async")
    assert faults.raised == 3
    assert result.status == COMPLETED and [r.trial_id for r in result.records] == list(range(TOTAL))


def test_a_lock_held_past_the_retries_interrupts_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr("autotune.store.RETRY_FIRST_S", 0.01)
    monkeypatch.setenv("AUTOTUNE_DB_RETRY_S", "0.1")
    faults = _Faults(monkeypatch, "put_blob", 4, times=1000, error=lambda: _db_error("database is locked"))
    with pytest.raises(StoreWriteError, match=r"database is locked \(still failing after 0.1 s of retries\)"):
        _run(tmp_path, "rounds")
    assert faults.raised > 1  # tried again before it gave up
    monkeypatch.undo()
    assert autotune.load(tmp_path / "f").status == INTERRUPTED
    _check_resumed(tmp_path / "f", "locked past the retries")


# -- real faults -----------------------------------------------------------------------------------
_HOLDER = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
"""


def _locked_run(tmp_path, hold: float, retry: float):
    """A CLI run (trials in process) whose database another process locks for ``hold`` seconds once
    its first trial is done; returns the finished run process and the executions log."""
    space = dict(SPACE, params={"x": {"type": "float", "low": 0.0, "high": 1.0}}, fixed={"sleep": 0.2})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    log = tmp_path / "executions.log"
    env = dict(os.environ, AUTOTUNE_TEST_EXECUTIONS=str(log), AUTOTUNE_SQLITE_BUSY_S="0.2",
               AUTOTUNE_DB_RETRY_S=str(retry))
    run = subprocess.Popen(
        [sys.executable, "-m", "autotune", "run", objective("quadratic"), "--space", str(tmp_path / "space.yaml"),
         "--sampler", "random", "--evaluator", "full", "--rounds", "2", "--popsize", "2", "--seed", "0",
         "--output", str(tmp_path), "--name", "l", "--schedule", "async", "--executor", "local"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and (not log.exists() or log.read_text().count("done") < 1):
        time.sleep(0.02)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "l" / "autotune.db"), str(hold)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    out, err = run.communicate(timeout=120)
    holder.wait(timeout=60)
    return run.returncode, err, log, env


def test_another_process_holding_the_write_lock_briefly_costs_nothing(tmp_path):
    code, err, log, _ = _locked_run(tmp_path, hold=1.0, retry=20)
    assert code == 0, err
    result = autotune.load(tmp_path / "l")
    assert result.status == COMPLETED and [r.trial_id for r in result.records] == list(range(4))
    done = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("done")]
    assert sorted(done, key=int) == [str(i) for i in range(4)]  # each trial ran once


def test_another_process_holding_the_write_lock_past_the_retries_interrupts_and_resume_finishes(tmp_path):
    code, err, log, env = _locked_run(tmp_path, hold=3.0, retry=0.5)
    assert code == 2, err
    line = error_line(err)
    assert "database is locked" in line and f"autotune resume {tmp_path / 'l'}" in line, err
    partial = autotune.load(tmp_path / "l")
    assert partial.status == INTERRUPTED  # marked so, or read so: its driver is gone
    before = {r.trial_id for r in partial.records if r.status == COMPLETED}
    res = subprocess.run([sys.executable, "-m", "autotune", "resume", str(tmp_path / "l"), "--executor", "local"],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    result = autotune.load(tmp_path / "l")
    assert result.status == COMPLETED and [r.trial_id for r in result.records] == list(range(4))
    assert all(r.status == COMPLETED for r in result.records)
    done = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("done")]
    for tid in before:
        assert done.count(str(tid)) == 1, f"trial {tid} ran again after it was recorded"
    rows = optuna.load_study(study_name="l", storage=f"sqlite:///{tmp_path / 'l' / 'autotune.db'}").trials
    assert not [t for t in rows if t.state == optuna.trial.TrialState.RUNNING]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MiB tmpfs (needs root and a kernel that lets this process mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_database_that_fills_its_disk_interrupts_the_run_and_resume_finishes_it(tmp_path, tiny_disk):
    """The database (alone on the small disk) grows with every trial until the disk is full."""
    url = f"sqlite:///{tiny_disk / 'runs.db'}"
    filler = tiny_disk / "filler"
    filler.write_bytes(b"\0" * 1_800_000)  # about 1.2 MiB left for the database: some trials, not all
    with pytest.raises(DiskFullError) as err:
        autotune.run(objective("quadratic"), space=SPACE, sampler="random", evaluator="full", rounds=25, popsize=4,
                     seed=0, output=tmp_path, name="full", schedule="async", storage=url,
                     executor=SimulatedExecutor(_curve, slots=2))
    message = str(err.value)
    assert "\n" not in message and "no space left on device" in message
    assert f"autotune resume {tmp_path / 'full'}" in message
    filler.unlink()  # space freed, and more: a WAL grows to 4 MiB before SQLite checkpoints it
    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)
    partial = autotune.load(tmp_path / "full", storage=url)
    assert 0 < len(partial.records) < 100 and partial.status == INTERRUPTED
    again = SimulatedExecutor(_curve, slots=2)
    result = resume(tmp_path / "full", storage=url, executor=again)
    assert result.status == COMPLETED and [r.trial_id for r in result.records] == list(range(100))
    assert not {r.trial_id for r in partial.records} & set(again.started)
    rows = optuna.load_study(study_name="full", storage=url).trials
    assert not [t for t in rows if t.state == optuna.trial.TrialState.RUNNING]


# -- a PostgreSQL server that goes away ------------------------------------------------------------
@pytest.fixture
def pg(tmp_path):
    """A PostgreSQL server of its own (``pgserver``): its data folder, a database URL, and the server."""
    pgserver = pytest.importorskip("pgserver")
    data = tmp_path / "pgdata"
    server = pgserver.get_server(data, cleanup_mode="stop")
    server.psql("CREATE DATABASE faults;")
    box = {"server": server}
    try:
        yield data, server.get_uri("faults"), box
    finally:
        box["server"].cleanup()


class _StopsTheServer(SimulatedExecutor):
    """Stops the PostgreSQL server once ``after`` trials have ended; ``restart_after`` seconds later (if
    given) a thread starts it again."""

    def __init__(self, pg, after: int, restart_after: float | None):
        super().__init__(_curve, slots=2)
        self.data, _, self.box = pg
        self.after, self.restart_after = after, restart_after
        self.ended, self.stopped_at, self.thread = 0, None, None

    def poll(self, timeout=None):
        events = super().poll(timeout)
        self.ended += sum(type(e).__name__ == "TrialFinished" for e in events)
        if self.stopped_at is None and self.ended >= self.after:
            import pgserver

            self.box["server"].cleanup()
            self.stopped_at = time.monotonic()
            if self.restart_after is not None:
                def restart():
                    time.sleep(self.restart_after)
                    self.box["server"] = pgserver.get_server(self.data, cleanup_mode="stop")

                self.thread = threading.Thread(target=restart, daemon=True)
                self.thread.start()
        return events


def _study_agrees(result, url: str, name: str, context: str) -> None:
    rows = optuna.load_study(study_name=name, storage=url).trials
    assert not [t for t in rows if t.state == optuna.trial.TrialState.RUNNING], context
    final = {t.user_attrs["trial_id"]: t for t in rows if t.user_attrs.get("status") != SUPERSEDED}
    assert len(final) == len([t for t in rows if t.user_attrs.get("status") != SUPERSEDED]), context
    assert sorted(final) == [r.trial_id for r in result.records] == list(range(TOTAL)), context
    for r in result.records:
        assert final[r.trial_id].value == r.value and final[r.trial_id].user_attrs["status"] == r.status, context


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_a_postgresql_server_that_restarts_mid_run_costs_nothing(tmp_path, pg, monkeypatch, schedule):
    monkeypatch.setenv("AUTOTUNE_DB_RETRY_S", "30")
    executor = _StopsTheServer(pg, after=4, restart_after=1.5)
    result = autotune.run(objective("quadratic"), space=SPACE, sampler="hazero", evaluator="pbt", rounds=ROUNDS,
                          popsize=POPSIZE, seed=2, output=tmp_path, name="pg", schedule=schedule, storage=pg[1],
                          executor=executor)
    assert executor.stopped_at is not None and result.status == COMPLETED
    assert time.monotonic() - executor.stopped_at >= 1.4  # the run waited for the server
    assert [r.trial_id for r in result.records] == list(range(TOTAL))
    assert len(executor.started) == TOTAL  # no trial ran twice
    _study_agrees(result, pg[1], "pg", schedule)


def test_a_postgresql_server_gone_past_the_retries_interrupts_and_resume_finishes(tmp_path, pg, monkeypatch):
    import pgserver

    monkeypatch.setenv("AUTOTUNE_DB_RETRY_S", "1")
    executor = _StopsTheServer(pg, after=4, restart_after=None)
    with pytest.raises(StoreWriteError) as err:
        autotune.run(objective("quadratic"), space=SPACE, sampler="hazero", evaluator="pbt", rounds=ROUNDS,
                     popsize=POPSIZE, seed=2, output=tmp_path, name="pg", schedule="async", storage=pg[1],
                     executor=executor)
    message = str(err.value)
    assert "\n" not in message and "still failing after 1 s of retries" in message
    assert f"autotune resume {tmp_path / 'pg'}" in message
    pg[2]["server"] = pgserver.get_server(pg[0], cleanup_mode="stop")  # the server is back
    partial = autotune.load(tmp_path / "pg", storage=pg[1])
    assert partial.status == INTERRUPTED  # its driver ended without marking it: read so
    recorded = {r.trial_id for r in partial.records}
    again = SimulatedExecutor(_curve, slots=2)
    result = resume(tmp_path / "pg", storage=pg[1], executor=again)
    assert result.status == COMPLETED and not recorded & set(again.started)
    _study_agrees(result, pg[1], "pg", "gone past the retries")


def test_which_database_errors_are_tried_again():
    from autotune.store import transient

    def sqlite_error(text, code):
        e = sqlite3.OperationalError(text)
        e.sqlite_errorcode = code
        return sqlalchemy.exc.OperationalError("UPDATE ...", {}, e)

    assert transient(sqlite_error("database is locked", sqlite3.SQLITE_BUSY))
    assert transient(sqlite_error("database table is locked", sqlite3.SQLITE_LOCKED))
    assert not transient(sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR))
    assert not transient(sqlite_error("database or disk is full", sqlite3.SQLITE_FULL))
    assert transient(_db_error("database is locked"))  # a Python that gives no error codes
    assert not transient(_db_error("no such table: trials"))

    class ServerGone(Exception):  # another database driver's error, as SQLAlchemy wraps it
        pass

    assert transient(sqlalchemy.exc.OperationalError("SELECT 1", {}, ServerGone("server closed the connection")))
    dropped = sqlalchemy.exc.DBAPIError("SELECT 1", {}, ServerGone("reset"), connection_invalidated=True)
    assert transient(dropped)
    assert not transient(sqlalchemy.exc.IntegrityError("INSERT ...", {}, ServerGone("duplicate key")))
    assert not transient(ValueError("not a database error"))


def test_a_driver_of_this_process_is_alive_while_it_drives_and_gone_after():
    from autotune.liveness import DRIVER_ATTR, driver_alive, driving, run_status, this_driver

    with driving() as me:
        assert driver_alive({DRIVER_ATTR: me}) is True
    assert driver_alive({DRIVER_ATTR: me}) is False
    assert run_status({"status": "running", DRIVER_ATTR: me}) == INTERRUPTED
    assert driver_alive({DRIVER_ATTR: this_driver()}) is True  # a driver from before tokens: its process lives
