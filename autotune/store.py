"""Results database: Optuna's RDB storage, one study per run.

SQLite in the run folder by default, PostgreSQL/MySQL by URL.  Each finished trial is written in a
single transaction, so a killed driver never leaves a half-written trial; the driver is the only
writer.  Optuna's public writes commit one value each (a finished trial with its attributes was a
dozen transactions), so the writes here build Optuna's own rows (its ``_rdb.models``, by statements
built once: :mod:`autotune.rdb_rows`) on one connection: a trial record, a driver state (every chunk
and its pointer) or a batch of live rows is one transaction.  Live rows (a trial started, a trial
reported) are kept until the next write or :meth:`Store.flush_live`, so the reports of one poll reach
the database together; a trial that ends before they are written is stored once, finished.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (``AUTOTUNE_SQLITE_SYNCHRONOUS=FULL`` for the
SQLite default): a commit is in the WAL file, in the operating system's hands, before it returns, so
a killed driver (SIGKILL included) never loses a committed write; only a power loss or an operating
system crash can undo the last commits before a checkpoint, and the database then stays consistent
as of an earlier commit (a resume re-runs or adopts the trials it no longer has).  The same database opens in
``optuna-dashboard`` and in Optuna's own API: params, values, intermediate values (the run metric
per step) and flat user attributes (round, parent, checkpoint, status, reason, node, timings) are
all plain Optuna data; the complete autotune record rides along in the ``autotune_record`` attribute.

When the database is briefly unavailable -- another process holds SQLite's write lock past the busy
timeout (``AUTOTUNE_SQLITE_BUSY_S``, 60 s), a PostgreSQL server restarts, a connection drops -- a
call is made again after waits doubling from 0.25 s to 8 s, for up to ``AUTOTUNE_DB_RETRY_S`` seconds
(60 by default; 0 never retries).  A call still failing then, or failing otherwise (an I/O error, a
full disk), raises one :class:`~autotune.errors.StoreError` line; the driver stops the run as
interrupted, and ``autotune resume`` continues it with no finished trial lost and none run twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import sqlite3
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.storages import RDBStorage
from optuna.trial import TrialState
from sqlalchemy import event

from . import rdb_rows
from .errors import DiskFullError, StoreError
from .interrupts import critical
from .records import TrialRecord, TrialTally
from .statuses import COMPLETED, PLANNED, PRUNED, RUNNING, SUPERSEDED

DB_FILE_NAME = "autotune.db"
RECORD_ATTR = "autotune_record"
LAST_REPORT_ATTR = "last_report"
REMOVED_ATTR = "removed_checkpoints"
DRIVER_STATE = "driver_state"
#: run attribute: when the run's time budget ran out (unix time); absent while it has not
TIME_BUDGET_ATTR = "time_budget_spent"
CONTROL_ATTR = "control"  # requests to stop, resume or start the run, from the dashboard
MAX_CONTROL_EVENTS = 200
BLOB_CHUNK = 60_000  # stay under MySQL's TEXT limit per attribute
_PREFIX = "autotune:"
#: SQLite's ``synchronous`` for run databases (see the module's docstring); the environment may choose FULL
SQLITE_SYNCHRONOUS = "NORMAL"
SYNCHRONOUS_ENV = "AUTOTUNE_SQLITE_SYNCHRONOUS"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def sqlite_url(run_dir: str | os.PathLike[str]) -> str:
    """The URL of the run folder's own SQLite database (``%``, ``?`` and ``#`` in the path quoted)."""
    return "sqlite:///" + _quote_path(str(Path(run_dir).resolve() / DB_FILE_NAME))


def _quote_path(path: str) -> str:
    return path.replace("%", "%25").replace("?", "%3F").replace("#", "%23")


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL as SQLAlchemy reads it; None for other databases and in-memory SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    from sqlalchemy.engine import make_url

    try:
        path = make_url(url).database
    except Exception:  # noqa: BLE001 - a malformed URL: let the engine report it
        return None
    return path if path and path != ":memory:" else None


def absolute_url(url: str) -> str:
    """A SQLite URL with a relative path (``sqlite:///rel.db``) made absolute, so that the run folder
    finds its database from any directory; other URLs unchanged."""
    path = sqlite_path(url)
    if path is None or os.path.isabs(path):
        return url
    query = url[url.index("?"):] if "?" in url else ""
    absolute = str(Path(path).resolve())
    return "sqlite:///" + _quote_path(absolute) + query


def _enable_wal(url: str) -> None:
    """WAL lets a dashboard read a live SQLite run without ever blocking the driver's writes."""
    path = sqlite_path(url)
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def _sqlite_synchronous() -> str:
    mode = os.environ.get(SYNCHRONOUS_ENV, SQLITE_SYNCHRONOUS).strip().upper()
    if mode not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise StoreError(f"{SYNCHRONOUS_ENV} must be OFF, NORMAL, FULL or EXTRA, not {mode!r}")
    return mode


#: SQLite's busy timeout: how long one statement waits for another process's write lock (seconds)
SQLITE_BUSY_S = 60.0
BUSY_ENV = "AUTOTUNE_SQLITE_BUSY_S"
#: how long a database call is tried again while the database is briefly unavailable (seconds)
RETRY_S = 60.0
RETRY_ENV = "AUTOTUNE_DB_RETRY_S"
RETRY_FIRST_S, RETRY_MAX_S = 0.25, 8.0  # the backoff: the first wait, doubling up to this


def _seconds(env: str, default: float) -> float:
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(f"{env} must be a number of seconds, not {raw!r}") from None
    if not value >= 0:
        raise StoreError(f"{env} must be 0 or more seconds, not {raw!r}")
    return value


def _causes(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cause: BaseException | None = e
    while cause is not None and len(chain) < 8:
        chain.append(cause)
        orig = getattr(cause, "orig", None)  # SQLAlchemy's wrapped driver error
        cause = cause.__cause__ or cause.__context__
        if isinstance(orig, BaseException) and orig is not cause and orig not in chain:
            chain.append(orig)
    return chain


def _disk_full(chain: list[BaseException]) -> BaseException | None:
    for c in chain:
        if isinstance(c, sqlite3.Error) and getattr(c, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return c
        if isinstance(c, OSError) and c.errno in (errno.ENOSPC, errno.EDQUOT):
            return c
    # Optuna wraps the driver's error, and other databases say it in words only
    return next((c for c in chain if "disk is full" in str(c) or "No space left" in str(c)), None)


def transient(e: BaseException) -> bool:
    """Whether a database error means the database is briefly unavailable, so that the same call may
    succeed when tried again: SQLite busy or locked past its busy timeout, a connection refused, dropped
    or invalidated (a PostgreSQL server restarting), a pool with no connection free."""
    from sqlalchemy import exc

    for c in _causes(e):
        if isinstance(c, sqlite3.Error):
            code = getattr(c, "sqlite_errorcode", None)
            if code is not None:
                return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            return "locked" in str(c) or "busy" in str(c)  # a Python without error codes
        if isinstance(c, exc.DBAPIError) and c.connection_invalidated:
            return True
        if isinstance(c, (exc.DisconnectionError, exc.TimeoutError)):
            return True
    # another database's driver: its OperationalError and InterfaceError are about the connection
    return any(isinstance(c, (exc.OperationalError, exc.InterfaceError)) for c in _causes(e)) and \
        not any(isinstance(c, sqlite3.Error) for c in _causes(e))


_calls = threading.local()  # the depth of Store calls on this thread: only the outermost one retries


def _storage_errors(method):  # type: ignore[no-untyped-def]
    """Database failures become one clear StoreError (DiskFullError when the disk is full).

    A call that fails because the database is briefly unavailable (see :func:`transient`) is made
    again after a wait that doubles from ``RETRY_FIRST_S`` to ``RETRY_MAX_S``, for up to ``RETRY_S``
    seconds in all (``AUTOTUNE_DB_RETRY_S``; 0: never again); then it raises.  Every write here is
    one transaction that a failure rolls back, so making it again writes it once.  Calls made inside
    another Store call are retried only as part of it."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        depth = getattr(_calls, "depth", 0)
        if depth:
            return method(self, *args, **kwargs)
        deadline, wait = None, RETRY_FIRST_S
        _calls.depth = 1
        try:
            while True:
                try:
                    with critical():  # a Ctrl-C waits for the end of the call, never cuts a transaction
                        return method(self, *args, **kwargs)
                except (StoreError, KeyError):
                    raise
                except Exception as e:  # noqa: BLE001 - sqlalchemy / optuna storage errors
                    if not transient(e) or _disk_full(_causes(e)) is not None:
                        raise _store_error(self, e) from None
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + getattr(self, "retry_s", RETRY_S)
                    if now + wait > deadline:
                        raise _store_error(self, e, retried=getattr(self, "retry_s", RETRY_S)) from None
                    time.sleep(wait)
                    wait = min(2 * wait, RETRY_MAX_S)
        finally:
            _calls.depth = 0

    return wrapper


def _store_error(store: "Store", e: BaseException, retried: float | None = None) -> StoreError:
    text = f"{type(e).__name__}: {e}".splitlines()[0]
    full = _disk_full(_causes(e))
    if full is not None:
        return DiskFullError(f"no space left on device for the results database {redact_url(store.url)} "
                             f"({str(full).splitlines()[0][:200] if str(full) else type(full).__name__}); "
                             "finished trials are safe in it: free some space, then run: autotune resume RUN_DIR")
    again = f" (still failing after {retried:g} s of retries)" if retried else ""
    return StoreError(f"results database {redact_url(store.url)} failed: {text[:300]}{again}")


def removed_checkpoints(attrs: dict[str, Any]) -> set[int]:
    """Trial ids whose checkpoints ``keep_checkpoints`` deleted, from a run's attributes (either form:
    a list, as runs before per-trial attributes wrote it, or one attribute per trial)."""
    legacy = attrs.get(REMOVED_ATTR)
    ids = {int(t) for t in legacy} if isinstance(legacy, list) else set()
    prefix = REMOVED_ATTR + ":"
    return ids | {int(k[len(prefix):]) for k in attrs if k.startswith(prefix) and k[len(prefix):].isdigit()}


def redact_url(url: str) -> str:
    """A storage URL with its password hidden, for messages and the run folder.

    Only the host part (before the first ``/`` after ``://``) can hold credentials: an ``@`` in a
    SQLite file path is part of the path.
    """
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, sep, path = rest.partition("/")
    if "@" not in netloc:
        return url
    cred, host = netloc.rsplit("@", 1)
    user, _, password = cred.partition(":")
    if not password:  # postgresql://me@host/db, postgresql://me:@/db?host=/socket: nothing to hide
        return url
    return f"{scheme}://{user}:***@{host}{sep}{path}"


def engine_url(url: str) -> str:
    """``url`` with a PostgreSQL driver that is installed, when it names none.

    A bare ``postgresql://`` means psycopg 2 to SQLAlchemy 2.0 and psycopg 3 to SQLAlchemy 2.1, so the
    same URL would work or not depending on versions; the ``postgres`` extra brings psycopg 3, and
    either driver is used when it is the one present.  URLs that name a driver are left alone.
    """
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    rest = url.split("://", 1)[1]
    for module, scheme in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"{scheme}://{rest}"
    return url


class Store:
    """The run database.  ``read_only`` stores never migrate or create anything."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._live: dict[tuple[int, int], int] = {}  # (run id, trial id) -> the RUNNING Optuna trial
        #: the steps a RUNNING trial may have stored (a superset after a failed write), so that only
        #: those are replaced when it reports them again or finishes
        self._live_steps: dict[tuple[int, int], set[int]] = {}
        #: live rows not yet written, by (run id, trial id): the start (None once written), the reports
        self._pending: dict[tuple[int, int], _LiveRows] = {}
        self._blob_slots: dict[tuple[int, str], tuple[str | None, dict[str, int]]] = {}  # put_blob's slot per key
        synchronous = _sqlite_synchronous() if url.startswith("sqlite:///") else None
        #: seconds a call is tried again while the database is briefly unavailable (see _storage_errors)
        self.retry_s = _seconds(RETRY_ENV, RETRY_S)
        try:
            if synchronous:
                _enable_wal(url)
                engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": _seconds(BUSY_ENV, SQLITE_BUSY_S)}}
            else:
                engine_kwargs = {"pool_pre_ping": True}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.storage = RDBStorage(engine_url(url), engine_kwargs=engine_kwargs,
                                          skip_compatibility_check=False)
            if synchronous:
                def pragma(con: Any, _record: Any) -> None:
                    con.execute(f"PRAGMA synchronous={synchronous}")

                event.listen(self.storage.engine, "connect", pragma)
                self.storage.engine.dispose()  # the connections Optuna opened had the default
        except Exception as e:  # noqa: BLE001 - any driver/URL problem is the user's storage setting
            raise StoreError(f"cannot open results database {redact_url(url)}: {type(e).__name__}: {e}") from None

    @contextlib.contextmanager
    def _transaction(self):  # type: ignore[no-untyped-def]
        """One connection, committed once at the end (rolled back on any error), for several writes
        (the statements are built once, see :mod:`autotune.rdb_rows`)."""
        with self.storage.engine.begin() as con:
            yield con

    #: run (study) attributes, keys as stored: one read, then one update and one insert for all of them
    _put_run_attrs = staticmethod(rdb_rows.put_run_attrs)

    # -- runs ------------------------------------------------------------------------------------
    @_storage_errors
    def create_run(self, name: str, mode: str, attrs: dict[str, Any]) -> int:
        direction = optuna.study.StudyDirection.MAXIMIZE if mode == "max" else optuna.study.StudyDirection.MINIMIZE
        try:
            run_id = self.storage.create_new_study([direction], study_name=name)
        except optuna.exceptions.DuplicatedStudyError:
            raise StoreError(f"a run named {name!r} already exists in {redact_url(self.url)}") from None
        for k, v in attrs.items():
            self.set_attr(run_id, k, v)
        return run_id

    @_storage_errors
    def n_trials(self, run_id: int) -> int:
        """The number of stored trials of a run, by one COUNT query (Optuna's own loads every trial)."""
        try:
            from sqlalchemy import text

            with self.storage.engine.connect() as con:
                return int(con.execute(text("SELECT COUNT(*) FROM trials WHERE study_id = :s"),
                                       {"s": run_id}).scalar() or 0)
        except Exception:  # noqa: BLE001 - a schema we do not know: fall back to the public API
            try:
                return self.storage.get_n_trials(run_id)
            except KeyError:
                raise StoreError(f"run {run_id} is gone from its database") from None

    @_storage_errors
    def delete_run(self, run_id: int) -> None:
        """Remove a run that never got to its first trial (a failed start leaves nothing behind)."""
        if self.storage.get_n_trials(run_id) == 0:
            self.storage.delete_study(run_id)

    def run_id(self, name: str) -> int:
        try:
            return self.storage.get_study_id_from_name(name)
        except KeyError:
            names = [s.study_name for s in self.storage.get_all_studies()]
            known = ", ".join(names[:20]) or "none"
            raise StoreError(f"no run named {name!r} in {redact_url(self.url)} (runs: {known})") from None

    @_storage_errors
    def run_names(self) -> list[str]:
        return [s.study_name for s in self.storage.get_all_studies()]

    @_storage_errors
    def set_attr(self, run_id: int, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(run_id, _PREFIX + key, value)

    @_storage_errors
    def attrs(self, run_id: int) -> dict[str, Any]:
        raw = self.storage.get_study_user_attrs(run_id)
        return {k[len(_PREFIX):]: v for k, v in raw.items() if k.startswith(_PREFIX) and ":blob:" not in k}

    @_storage_errors
    def put_blob(self, run_id: int, key: str, value: Any) -> None:
        """Store a large JSON value atomically: its chunks and the pointer that names them, in one
        transaction (with any live rows waiting, see :meth:`flush_live`).

        Chunks alternate between two slots, so a value rewritten after every trial keeps a bounded
        number of keys (Optuna cannot delete attributes), and a reader of a database whose writes
        were made one by one (runs written before) never reads a half-written value; the pointer
        names the slot and a digest."""
        text = json.dumps(value, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        chunks = [text[i : i + BLOB_CHUNK] for i in range(0, len(text), BLOB_CHUNK)] or [""]
        slots = self._blob_slots
        if (run_id, key) not in slots:  # first write of this process: read the pointer once
            pointer = self.storage.get_study_user_attrs(run_id).get(f"{_PREFIX}{key}:pointer") or {}
            slots[(run_id, key)] = (pointer.get("slot"), pointer.get("size", {}))
        current, sizes = slots[(run_id, key)]
        slot = "b" if current == "a" else "a"
        values: dict[str, Any] = {f"{_PREFIX}{key}:blob:{slot}:{i}": chunk for i, chunk in enumerate(chunks)}
        for i in range(len(chunks), int(sizes.get(slot, 0))):  # a smaller value: blank the old tail
            values[f"{_PREFIX}{key}:blob:{slot}:{i}"] = ""
        sizes = {**sizes, slot: len(chunks)}
        values[f"{_PREFIX}{key}:pointer"] = {"slot": slot, "digest": digest, "chunks": len(chunks), "size": sizes}
        with self._transaction() as con:  # chunks and pointer together, with the live rows waiting
            written = self._write_live(con)
            self._put_run_attrs(con, run_id, values)
        self._written_live(written)
        slots[(run_id, key)] = (slot, sizes)
        if current is None:
            self._drop_old_chunks(run_id, key)

    @_storage_errors
    def get_blob(self, run_id: int, key: str) -> Any | None:
        raw = self.storage.get_study_user_attrs(run_id)
        pointer = raw.get(f"{_PREFIX}{key}:pointer")
        if pointer is None:
            return None
        where = pointer.get("slot") or pointer["digest"]  # runs written before slots name chunks by digest
        parts = [raw[f"{_PREFIX}{key}:blob:{where}:{i}"] for i in range(pointer["chunks"])]
        return json.loads("".join(parts))

    def _drop_old_chunks(self, run_id: int, key: str) -> None:
        """Blank the digest-named chunks that runs written before slots left behind."""
        raw = self.storage.get_study_user_attrs(run_id)
        stale = f"{_PREFIX}{key}:blob:"
        for k, v in raw.items():
            if k.startswith(stale) and k.split(":")[-2] not in ("a", "b") and v != "":
                self.storage.set_study_user_attr(run_id, k, "")

    @_storage_errors
    def runs(self) -> list[tuple[str, int, str | None]]:
        """Every autotune run in this database as (name, run id, run folder as recorded); plain Optuna
        studies sharing the database are left out."""
        out = []
        for study in self.storage.get_all_studies():
            attrs = study.user_attrs
            if _PREFIX + "settings" not in attrs:
                continue
            run_id = getattr(study, "_study_id", None)
            if run_id is None:
                run_id = self.storage.get_study_id_from_name(study.study_name)
            out.append((study.study_name, int(run_id), attrs.get(_PREFIX + "run_dir")))
        return out

    # -- the driver's state (what it planned and what its sampler knows) -------------------------
    def save_driver_state(self, run_id: int, state: dict[str, Any]) -> None:
        """The driver's resumable state: a JSON object (see :mod:`autotune.driver`)."""
        self.put_blob(run_id, DRIVER_STATE, state)

    def driver_state(self, run_id: int) -> dict[str, Any] | None:
        state = self.get_blob(run_id, DRIVER_STATE)
        return state if isinstance(state, dict) else None

    def planned_trials(self, run_id: int, finished: Iterable[int] = ()) -> list[dict[str, Any]]:
        """Specs (as dicts) the driver planned or started and that are not among ``finished``: the
        trials a live run is running or about to run."""
        state = self.driver_state(run_id) or {}
        if state.get("phase") != PLANNED:
            return []
        done = set(finished)
        return [x for x in state.get("specs") or [] if isinstance(x, dict) and x.get("trial_id") not in done]

    @staticmethod
    def driver_state_digest(attrs: dict[str, Any]) -> str:
        """A digest that changes whenever the driver saves a new state, from the run's attributes."""
        pointer = attrs.get(DRIVER_STATE + ":pointer") or {}
        return str(pointer.get("digest", "")) if isinstance(pointer, dict) else ""

    @staticmethod
    def state_round(state: dict[str, Any] | None) -> int | None:
        """The round (or, asynchronously, the newest generation) the driver's state is at."""
        r = (state or {}).get("round")
        return r if isinstance(r, int) and not isinstance(r, bool) else None

    # -- live trials -------------------------------------------------------------------------------
    @_storage_errors
    def start_trial(self, run_id: int, trial_id: int, round: int, distributions: dict[str, BaseDistribution],
                    params: dict[str, Any]) -> None:
        """A trial began: a RUNNING trial in the database (optuna-dashboard shows it), updated by
        :meth:`report_trial` and finished by :meth:`record_trial`.  Written with the next write or
        :meth:`flush_live`; a trial recorded before then is written once, finished."""
        params = {k: v for k, v in params.items() if k in distributions}
        self._pending[(run_id, trial_id)] = _LiveRows(
            start=(round, params, {k: distributions[k] for k in params}, dt.datetime.now()))

    @_storage_errors
    def report_trial(self, run_id: int, trial_id: int, step: int, metrics: dict[str, Any]) -> None:
        """A running trial reported: its run metric becomes an intermediate value, and its last report
        is kept for ``show`` and the dashboard (written with the next write or :meth:`flush_live`)."""
        key = (run_id, trial_id)
        rows = self._pending.get(key)
        if rows is None:
            if key not in self._live:
                return  # not started here (or already recorded)
            rows = self._pending[key] = _LiveRows()
        try:
            value = float(metrics.get(self._metric(run_id)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            rows.steps[int(step)] = value
        rows.last = json.loads(json.dumps({"step": int(step), "metrics": metrics, "time": time.time()}, default=str))

    @_storage_errors
    def flush_live(self) -> None:
        """Write the live rows waiting (trials started, reports) in one transaction; nothing when none."""
        if not self._pending:
            return
        with self._transaction() as con:
            written = self._write_live(con)
        self._written_live(written)

    def _write_live(self, con: Any) -> dict[tuple[int, int], int]:
        """The waiting live rows into ``con``; returns the RUNNING trials it creates (for
        :meth:`_written_live` once committed)."""
        created: dict[tuple[int, int], int] = {}
        for key, rows in self._pending.items():
            live = self._live.get(key)
            if rows.start is not None:
                round_, params, dists, started = rows.start
                live = created[key] = self._add_trial(
                    con, key[0], TrialState.RUNNING, started, None, params, dists,
                    {"trial_id": key[1], "round": round_, "status": RUNNING})
            if live is None:
                continue
            attrs = {LAST_REPORT_ATTR: rows.last} if rows.last is not None else {}
            stored = self._live_steps.setdefault(key, set())
            self._put_trial_rows(con, live, attrs, rows.steps, None, replace=rows.start is None, stored_steps=stored)
            stored.update(rows.steps)
        return created

    def _written_live(self, created: dict[tuple[int, int], int]) -> None:
        self._live.update(created)
        self._pending.clear()

    @_storage_errors
    def running_trials(self, run_id: int) -> list[dict[str, Any]]:
        """Trials RUNNING in the database: ``trial_id``, ``round``, ``params``, ``started``, their
        intermediate values (``reports``, as steps and metric values) and ``last_report``."""
        metric = self._metric(run_id)
        out = []
        for ft in self.storage.get_all_trials(run_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if RECORD_ATTR in ft.user_attrs or "trial_id" not in ft.user_attrs:
                continue  # finished, its state not yet set (see close_stale_running); or not ours
            out.append({
                "trial_id": int(ft.user_attrs["trial_id"]), "round": ft.user_attrs.get("round"),
                "params": dict(ft.params), "started": ft.datetime_start.timestamp() if ft.datetime_start else None,
                "reports": [{"step": int(k), "metrics": {metric: v}} for k, v in sorted(ft.intermediate_values.items())],
                "last_report": ft.user_attrs.get(LAST_REPORT_ATTR),
            })
        return sorted(out, key=lambda t: t["trial_id"])

    @_storage_errors
    def close_stale_running(self, run_id: int) -> int:
        """Finish the RUNNING rows a stopped driver left: one holding its record takes the record's
        state; the others failed with the driver (``resume`` runs those trials again).  Returns how
        many were closed, so no trial stays "running" after a resume."""
        closed = 0
        for ft in self.storage.get_all_trials(run_id, deepcopy=False, states=(TrialState.RUNNING,)):
            data = ft.user_attrs.get(RECORD_ATTR)
            if data:
                done = data.get("status") == COMPLETED and data.get("value") is not None
                state = TrialState.COMPLETE if done else TrialState.PRUNED if data.get("status") == PRUNED \
                    else TrialState.FAIL
                self.storage.set_trial_state_values(ft._trial_id, state, [data["value"]] if done else None)
            else:
                self.storage.set_trial_user_attr(ft._trial_id, "status", SUPERSEDED)
                self.storage.set_trial_user_attr(ft._trial_id, "reason", "the driver stopped while this attempt ran; "
                                                 "resume runs the trial again")
                self.storage.set_trial_state_values(ft._trial_id, TrialState.FAIL, None)
            closed += 1
        return closed

    @_storage_errors
    def n_reports(self, run_id: int) -> int:
        """Intermediate values stored for the run (changes with every live report)."""
        try:
            from sqlalchemy import text

            with self.storage.engine.connect() as con:
                return int(con.execute(text(
                    "SELECT COUNT(*) FROM trial_intermediate_values v JOIN trials t ON v.trial_id = t.trial_id "
                    "WHERE t.study_id = :s"), {"s": run_id}).scalar() or 0)
        except Exception:  # noqa: BLE001 - a schema we do not know: live curves refresh with trials only
            return 0

    @_storage_errors
    def record_trial(
        self, run_id: int, record: TrialRecord, distributions: dict[str, BaseDistribution],
        params: dict[str, Any] | None = None,
    ) -> None:
        """Write one finished trial in one transaction; ``params``: its searched values in Optuna's terms
        (``SearchSpace.to_optuna_params``), by default those of its config."""
        if params is None:
            params = {k: record.config[k] for k in distributions if k in record.config}
        params = {k: v for k, v in params.items() if k in distributions}
        dists = {k: distributions[k] for k in params}
        completed = record.status == COMPLETED
        start = _datetime(record.started)
        end = _datetime(record.ended) or start
        intermediate: dict[int, float] = {}
        metric = self._metric(run_id)
        for rep in record.reports:
            v = rep.get("metrics", {}).get(metric)
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                intermediate[int(rep["step"])] = f
        user_attrs = {
            "trial_id": record.trial_id,
            "round": record.round,
            "status": record.status,
            "reason": record.reason,
            "parent_id": record.parent_id,
            "checkpoint": record.checkpoint,
            "node": record.node,
            "started": record.started,
            "ended": record.ended,
            "duration_s": (record.ended - record.started) if record.started and record.ended else None,
            RECORD_ATTR: record.fields(),  # serialised in this call, so not copied
        }
        state = TrialState.COMPLETE if completed else TrialState.PRUNED if record.status == PRUNED else TrialState.FAIL
        value = record.value if completed else None
        key = (run_id, record.trial_id)
        self._pending.pop(key, None)  # the record carries every report: its live rows are superseded
        live = self._live.get(key)
        stored = self._live_steps.get(key, set())
        now = dt.datetime.now()
        with self._transaction() as con:  # one transaction: the record, its state and the live rows waiting
            written = self._write_live(con)
            if live is None:
                self._add_trial(con, run_id, state, start or now, end or now, params, dists, user_attrs,
                                intermediate, value)
            else:
                # The trial has been RUNNING in the database since it started: finish that same row.
                if not self._finish_trial(con, live, state, start or now, end or now):
                    raise StoreError(f"trial {record.trial_id} of run {run_id} is no longer running in "
                                     f"{redact_url(self.url)}")
                self._put_trial_rows(con, live, user_attrs, intermediate, value, replace=True, stored_steps=stored)
        self._written_live(written)
        self._live.pop(key, None)
        self._live_steps.pop(key, None)

    @staticmethod
    def _add_trial(con: Any, run_id: int, state: TrialState, start: dt.datetime | None,
                   end: dt.datetime | None, params: dict[str, Any], dists: dict[str, BaseDistribution],
                   user_attrs: dict[str, Any], intermediate: dict[int, float] | None = None,
                   value: float | None = None) -> int:
        """A new trial row with its params, attributes, intermediate values and value, as Optuna's
        ``create_new_trial`` writes them (number: the run's trials before it); returns its id."""
        if con.execute(rdb_rows.LOCK_RUN, {"run": run_id}).first() is None:
            raise KeyError(f"No study with study_id {run_id} exists.")  # as Optuna says; numbers one at a time
        number = con.execute(rdb_rows.COUNT_TRIALS, {"run": run_id}).scalar()
        trial_id = int(con.execute(rdb_rows.INSERT_TRIAL, {
            "number": int(number or 0), "study_id": run_id, "state": state, "datetime_start": _utc(start),
            "datetime_complete": _utc(end)}).inserted_primary_key[0])
        if params:
            con.execute(rdb_rows.INSERT_PARAMS, [
                {"trial_id": trial_id, "param_name": k, "param_value": dists[k].to_internal_repr(v),
                 "distribution_json": distribution_to_json(dists[k])} for k, v in params.items()])
        Store._put_trial_rows(con, trial_id, user_attrs, intermediate or {}, value, replace=False)
        return trial_id

    @staticmethod
    def _finish_trial(con: Any, trial_id: int, state: TrialState, start: dt.datetime, end: dt.datetime) -> bool:
        """Set a RUNNING trial's final state and its times (the worker's, as a new row has them);
        False when it is not running any more."""
        done = con.execute(rdb_rows.FINISH_TRIAL, {"tid": trial_id, "new_state": state, "t_start": _utc(start),
                                               "t_end": _utc(end)})
        return bool(done.rowcount)

    #: a trial's user attributes, intermediate values and value (``replace``: same keys and steps go first)
    _put_trial_rows = staticmethod(rdb_rows.put_trial_rows)

    def _metric(self, run_id: int) -> str:
        if not hasattr(self, "_metric_cache"):
            self._metric_cache: dict[int, str] = {}
        if run_id not in self._metric_cache:
            self._metric_cache[run_id] = self.attrs(run_id).get("settings", {}).get("metric", "")
        return self._metric_cache[run_id]

    @_storage_errors
    def add_control_event(self, run_id: int, event: dict[str, Any]) -> None:
        """Append to the run's record of control requests (stop, resume, start: what, when, which client),
        keeping the latest ``MAX_CONTROL_EVENTS``.  The driver never writes this attribute."""
        events = self.control_events(run_id)
        events.append(json.loads(json.dumps(event, default=str)))
        self.set_attr(run_id, CONTROL_ATTR, events[-MAX_CONTROL_EVENTS:])

    @_storage_errors
    def control_events(self, run_id: int) -> list[dict[str, Any]]:
        """The run's recorded control requests, oldest first."""
        events = self.attrs(run_id).get(CONTROL_ATTR)
        return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []

    @_storage_errors
    def mark_checkpoints_removed(self, run_id: int, trial_ids: Iterable[int]) -> None:
        """Record that these trials' checkpoints are deleted (a finished trial's row is immutable).

        One small attribute per trial, so the cost of a removal does not grow with the run; one
        transaction for all of them."""
        values = {f"{_PREFIX}{REMOVED_ATTR}:{int(t)}": True for t in trial_ids}
        if values:
            with self._transaction() as con:
                self._put_run_attrs(con, run_id, values)

    @_storage_errors
    def trials(self, run_id: int) -> list[TrialRecord]:
        """Finished trials of a run, the latest attempt of each trial id, in id order."""
        removed = removed_checkpoints(self.attrs(run_id))  # a run that is gone raises KeyError here
        latest: dict[int, TrialRecord] = {}
        with self.storage.engine.connect() as con:
            rows = con.execute(rdb_rows.ATTR_OF_TRIALS, {"run": run_id, "key": RECORD_ATTR}).all()
        for _row_id, text in rows:  # row order: a retried trial's latest attempt comes last
            data = json.loads(text)
            if not data:
                continue
            rec = TrialRecord.from_dict(data)
            rec.checkpoint_removed = rec.trial_id in removed
            latest[rec.trial_id] = rec
        return [latest[k] for k in sorted(latest)]


    @_storage_errors
    def record(self, run_id: int, trial_id: int) -> TrialRecord | None:
        """One finished trial of a run (its latest attempt), as :meth:`trials` has it, without reading the others."""
        with self.storage.engine.connect() as con:
            for (text,) in con.execute(rdb_rows.RECORD_OF_TRIAL, {"run": run_id, "record": RECORD_ATTR,
                                                                  "id": json.dumps(int(trial_id))}):
                data = json.loads(text)
                if data:
                    rec = TrialRecord.from_dict(data)
                    rec.checkpoint_removed = rec.trial_id in removed_checkpoints(self.attrs(run_id))
                    return rec
        return None

    @_storage_errors
    def tallies(self, run_id: int) -> list[TrialTally]:
        """What :meth:`trials` holds for a run's summary (status, value, end of the latest attempt of
        each trial id, in id order), from three attributes and the value of each trial row instead of
        its whole record: about ten times less to read on a run of thousands of trials."""
        rows: dict[int, dict[str, Any]] = {}
        with self.storage.engine.connect() as con:
            for row_id, key, text in con.execute(rdb_rows.TALLY_ATTRS, {"run": run_id, "record": RECORD_ATTR}):
                rows.setdefault(row_id, {})[key] = json.loads(text)
            values = {row_id: rdb_rows.stored_value(v, kind)
                      for row_id, v, kind in con.execute(rdb_rows.TALLY_VALUES, {"run": run_id})}
        latest: dict[int, TrialTally] = {}
        for row_id in sorted(rows):  # row order: a retried trial's latest attempt comes last
            a = rows[row_id]
            if "trial_id" not in a:
                continue
            value = values.get(row_id) if a.get("status") == COMPLETED else None
            latest[int(a["trial_id"])] = TrialTally(int(a["trial_id"]), str(a.get("status")), value, a.get("ended"))
        return [latest[k] for k in sorted(latest)]


class _LiveRows:
    """A live trial's rows waiting to be written: its start (round, params, distributions, time), or
    None when the RUNNING row exists; its intermediate values by step; its last report."""

    __slots__ = ("start", "steps", "last")

    def __init__(self, start: tuple[int, dict[str, Any], dict[str, BaseDistribution], dt.datetime] | None = None):
        self.start = start
        self.steps: dict[int, float] = {}
        self.last: dict[str, Any] | None = None


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """A local time as Optuna's RDB storage keeps it: naive UTC (see ``TrialModel.datetime_start``)."""
    return None if value is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _datetime(ts: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts) if ts else None


logging.getLogger("alembic").setLevel(logging.WARNING)
