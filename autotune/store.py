"""Results database: Optuna's RDB storage, one study per run.

SQLite in the run folder by default, PostgreSQL/MySQL by URL.  Each finished trial is written in a
single transaction (Optuna's ``create_new_trial`` with a complete template), so a killed driver never
leaves a half-written trial; the driver is the only writer.  The same database opens in
``optuna-dashboard`` and in Optuna's own API: params, values, intermediate values (the run metric
per step) and flat user attributes (round, parent, checkpoint, status, reason, node, timings) are
all plain Optuna data; the complete autotune record rides along in the ``autotune_record`` attribute.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import importlib.util
import json
import logging
import math
import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from .errors import DiskFullError, StoreError
from .records import COMPLETED, PRUNED, TrialRecord

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


def _storage_errors(method):  # type: ignore[no-untyped-def]
    """Database failures become one clear StoreError (DiskFullError when the disk is full)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(self, *args, **kwargs)
        except (StoreError, KeyError):
            raise
        except Exception as e:  # noqa: BLE001 - sqlalchemy / optuna storage errors
            text = f"{type(e).__name__}: {e}".splitlines()[0]
            chain, cause = [], e  # Optuna wraps the driver's error ("database or disk is full")
            while cause is not None and len(chain) < 8:
                chain.append(str(cause))
                cause = cause.__cause__ or cause.__context__
            full = [c for c in chain if "disk is full" in c or "No space left" in c]
            if full:
                raise DiskFullError(f"no space left on device for the results database {redact_url(self.url)} "
                                    f"({full[-1].splitlines()[0][:200]}); finished trials are safe in it: free some "
                                    "space, then run: autotune resume RUN_DIR") from None
            raise StoreError(f"results database {redact_url(self.url)} failed: {text}") from None

    return wrapper


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
        self._blob_slots: dict[tuple[int, str], tuple[str | None, dict[str, int]]] = {}  # put_blob's slot per key
        try:
            if url.startswith("sqlite:///"):
                _enable_wal(url)
                engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
            else:
                engine_kwargs = {"pool_pre_ping": True}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.storage = RDBStorage(engine_url(url), engine_kwargs=engine_kwargs,
                                          skip_compatibility_check=False)
        except Exception as e:  # noqa: BLE001 - any driver/URL problem is the user's storage setting
            raise StoreError(f"cannot open results database {redact_url(url)}: {type(e).__name__}: {e}") from None

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
        """Store a large JSON value atomically: chunks first, then one pointer write commits it.

        Chunks alternate between two slots, so a value rewritten after every trial keeps a bounded
        number of keys (Optuna cannot delete attributes); the pointer names the slot and a digest."""
        text = json.dumps(value, separators=(",", ":"))
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        chunks = [text[i : i + BLOB_CHUNK] for i in range(0, len(text), BLOB_CHUNK)] or [""]
        slots = self._blob_slots
        if (run_id, key) not in slots:  # first write of this process: read the pointer once
            pointer = self.storage.get_study_user_attrs(run_id).get(f"{_PREFIX}{key}:pointer") or {}
            slots[(run_id, key)] = (pointer.get("slot"), pointer.get("size", {}))
        current, sizes = slots[(run_id, key)]
        slot = "b" if current == "a" else "a"
        for i, chunk in enumerate(chunks):
            self.storage.set_study_user_attr(run_id, f"{_PREFIX}{key}:blob:{slot}:{i}", chunk)
        for i in range(len(chunks), int(sizes.get(slot, 0))):  # a smaller value: blank the old tail
            self.storage.set_study_user_attr(run_id, f"{_PREFIX}{key}:blob:{slot}:{i}", "")
        sizes = {**sizes, slot: len(chunks)}
        self.set_attr(run_id, key + ":pointer", {"slot": slot, "digest": digest, "chunks": len(chunks), "size": sizes})
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
        if state.get("phase") != "planned":
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

    # -- trials ----------------------------------------------------------------------------------
    @_storage_errors
    # -- live trials -------------------------------------------------------------------------------
    @_storage_errors
    def start_trial(self, run_id: int, trial_id: int, round: int, distributions: dict[str, BaseDistribution],
                    params: dict[str, Any]) -> None:
        """A trial began: a RUNNING trial in the database (optuna-dashboard shows it), updated by
        :meth:`report_trial` and finished by :meth:`record_trial`."""
        params = {k: v for k, v in params.items() if k in distributions}
        template = FrozenTrial(
            number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=dt.datetime.now(),
            datetime_complete=None, params=params, distributions={k: distributions[k] for k in params},
            user_attrs={"trial_id": trial_id, "round": round, "status": "running"}, system_attrs={},
            intermediate_values={}, trial_id=-1,
        )
        self._live[(run_id, trial_id)] = self.storage.create_new_trial(run_id, template_trial=template)

    @_storage_errors
    def report_trial(self, run_id: int, trial_id: int, step: int, metrics: dict[str, Any]) -> None:
        """A running trial reported: its run metric becomes an intermediate value, and its last report
        is kept for ``show`` and the dashboard."""
        live = self._live.get((run_id, trial_id))
        if live is None:
            return
        try:
            value = float(metrics.get(self._metric(run_id)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if math.isfinite(value):
            self.storage.set_trial_intermediate_value(live, int(step), value)
        self.storage.set_trial_user_attr(live, LAST_REPORT_ATTR, json.loads(json.dumps(
            {"step": int(step), "metrics": metrics, "time": time.time()}, default=str)))

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
                self.storage.set_trial_user_attr(ft._trial_id, "status", "superseded")
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
            RECORD_ATTR: record.to_dict(),
        }
        template = FrozenTrial(
            number=-1,
            state=TrialState.COMPLETE if completed else TrialState.PRUNED if record.status == PRUNED else TrialState.FAIL,
            value=record.value if completed else None,
            values=None,
            datetime_start=start or dt.datetime.now(),
            datetime_complete=end or dt.datetime.now(),
            params=params,
            distributions=dists,
            user_attrs=json.loads(json.dumps(user_attrs, default=str)),
            system_attrs={},
            intermediate_values=intermediate,
            trial_id=-1,
        )
        live = self._live.pop((run_id, record.trial_id), None)
        if live is None:  # one transaction: the record and its state together
            self.storage.create_new_trial(run_id, template_trial=template)
            return
        # The trial has been RUNNING in the database since it started: finish that same row.  The record
        # goes first; a driver killed before the state is set leaves a RUNNING row holding its record,
        # which close_stale_running() finishes on resume.
        for key, value in template.user_attrs.items():
            self.storage.set_trial_user_attr(live, key, value)
        for step, value in intermediate.items():
            self.storage.set_trial_intermediate_value(live, step, value)
        self.storage.set_trial_state_values(live, template.state, [template.value] if completed else None)

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

        One small attribute per trial, so the cost of a removal does not grow with the run."""
        for t in trial_ids:
            self.set_attr(run_id, f"{REMOVED_ATTR}:{int(t)}", True)

    @_storage_errors
    def trials(self, run_id: int) -> list[TrialRecord]:
        """Finished trials of a run, the latest attempt of each trial id, in id order."""
        removed = removed_checkpoints(self.attrs(run_id))
        latest: dict[int, TrialRecord] = {}
        for ft in self.storage.get_all_trials(run_id, deepcopy=False):
            data = ft.user_attrs.get(RECORD_ATTR)
            if not data:
                continue
            rec = TrialRecord.from_dict(data)
            rec.checkpoint_removed = rec.trial_id in removed
            latest[rec.trial_id] = rec
        return [latest[k] for k in sorted(latest)]


def _datetime(ts: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ts) if ts else None


logging.getLogger("alembic").setLevel(logging.WARNING)
