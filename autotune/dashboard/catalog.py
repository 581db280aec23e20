"""Which runs the dashboard serves, found by name, and cached snapshots of their data.

Sources are run folders, folders holding run folders (one level down), and database URLs (every
autotune run in that database).  Users address a run by its name only: the catalog maps names to
(database, study id, run folder) and nothing a request sends ever becomes a path.  A run whose name
is already taken by a run from another source is served as ``NAME~2``, ``NAME~3``, ...

Reading never blocks the driver: SQLite runs are in WAL mode (see :mod:`autotune.store`), and each
snapshot is a handful of SELECTs.  A snapshot is rebuilt only when the run's cheap version string
(status, trial count, driver-state digest) changes, so polling pages cost one small query each.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AutotuneError
from ..records import TrialRecord, TrialTally
from ..liveness import run_status
from ..results import RUN_FILE
from ..statuses import RUNNING
from ..store import Store, redact_url, removed_checkpoints, sqlite_path, sqlite_url

MAX_RUN_FOLDERS = 10_000  # per source folder; a folder holding more is not a runs folder
REFRESH_INTERVAL_S = 1.0  # lookups of unknown names rescan the sources at most this often


@dataclass(frozen=True)
class RunRef:
    """One served run: where its data lives.  ``run_dir`` is None when no run folder is known."""

    key: str  # the name it is served under
    name: str
    url: str
    run_id: int
    run_dir: Path | None
    source: str  # for display: the run folder or the redacted database URL


@dataclass
class Snapshot:
    """A consistent-enough read of one run."""

    version: str
    attrs: dict[str, Any]
    records: list[TrialRecord]
    pending: list[dict[str, Any]] = field(default_factory=list)  # planned specs with no record yet
    state_round: int | None = None
    live: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial id -> running trial (its reports)


@dataclass
class Head:
    """What the runs list shows of a run: its attributes and a tally of each finished trial (a
    :class:`Snapshot` without the records, cheap on a run of thousands of trials)."""

    version: str
    attrs: dict[str, Any]
    tallies: list[TrialTally]
    state_round: int | None = None
    running: int = 0  # planned specs with no record yet


def head_of(snap: Snapshot) -> Head:
    return Head(snap.version, snap.attrs, [TrialTally.of(r) for r in snap.records], snap.state_round,
                len(snap.pending))


def is_url(source: str | os.PathLike[str]) -> bool:
    return isinstance(source, str) and "://" in source


def _canonical(url: str) -> str:
    path = sqlite_path(url)
    return url if path is None else "sqlite:///" + str(Path(path).resolve())


def _read_run_file(run_dir: Path) -> tuple[str, str | None]:
    info = json.loads((run_dir / RUN_FILE).read_text())
    name = info.get("name") if isinstance(info, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("no run name")
    storage = info.get("storage")
    return name, storage if isinstance(storage, str) and storage else None


def verified_run_dir(path: Any, name: str) -> Path | None:
    """``path`` if it is a run folder of the run ``name`` (its run.json says so), else None."""
    if not isinstance(path, str) or not path:
        return None
    try:
        resolved = Path(path).resolve()
        return resolved if (resolved / RUN_FILE).is_file() and _read_run_file(resolved)[0] == name else None
    except (OSError, ValueError):
        return None


class Catalog:
    """The runs of some sources, refreshed on demand (new runs appear without a restart)."""

    def __init__(self, sources: Sequence[str | os.PathLike[str]]) -> None:
        self.folders: list[Path] = []
        self.urls: list[str] = []
        for s in sources:
            if is_url(s):
                self.urls.append(str(s))
            else:
                self.folders.append(Path(s).resolve())
        self._lock = threading.RLock()
        self._stores: dict[str, Store] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (canonical url, run name) -> served name
        self._refs: dict[str, RunRef] = {}
        self._problems: list[str] = []
        self._refreshed = 0.0
        self._snapshots: dict[str, Snapshot] = {}
        self._heads: dict[str, Head] = {}  # the runs list's, by run key (see head)
        self._run_locks: dict[Any, threading.Lock] = {}

    # -- stores ----------------------------------------------------------------------------------
    def store(self, url: str) -> Store:
        canon = _canonical(url)
        with self._lock:
            if canon not in self._stores:
                self._stores[canon] = Store(url)
            return self._stores[canon]

    # -- discovery -------------------------------------------------------------------------------
    def refresh(self, min_interval: float = 0.0) -> None:
        with self._lock:
            if min_interval and time.monotonic() - self._refreshed < min_interval:
                return
            found: list[tuple[tuple[str, str], str, str, int, Path | None, str]] = []
            seen: set[tuple[str, str]] = set()
            problems: list[str] = []
            for folder in self.folders:
                for run_dir in self._run_folders(folder, problems):
                    self._add_folder_run(run_dir, found, seen, problems)
            for url in self.urls:
                self._add_storage_runs(url, found, seen, problems)
            refs: dict[str, RunRef] = {}
            for ident, name, url, run_id, folder_of_run, source in found:
                key = self._key_for(ident, name)
                refs[key] = RunRef(key=key, name=name, url=url, run_id=run_id, run_dir=folder_of_run, source=source)
            self._refs = refs
            self._problems = problems
            self._refreshed = time.monotonic()

    def _key_for(self, ident: tuple[str, str], name: str) -> str:
        if ident in self._keys:
            return self._keys[ident]
        taken = set(self._keys.values())
        key, i = name, 1
        while key in taken:
            i += 1
            key = f"{name}~{i}"
        self._keys[ident] = key
        return key

    @staticmethod
    def _run_folders(folder: Path, problems: list[str]) -> list[Path]:
        if (folder / RUN_FILE).is_file():
            return [folder]
        if not folder.is_dir():
            return []
        out: list[Path] = []
        try:
            for i, child in enumerate(sorted(folder.iterdir())):
                if i >= MAX_RUN_FOLDERS:
                    problems.append(f"{folder}: more than {MAX_RUN_FOLDERS} entries; the rest are not served")
                    break
                if (child / RUN_FILE).is_file():
                    out.append(child)
        except OSError as e:
            problems.append(f"{folder}: cannot list: {e.strerror or e}")
        return out

    def _add_folder_run(self, run_dir: Path, found: list, seen: set, problems: list[str]) -> None:
        try:
            name, storage = _read_run_file(run_dir)
        except (OSError, ValueError) as e:
            problems.append(f"{run_dir}: unreadable {RUN_FILE} ({e})")
            return
        if storage and ":***@" in storage:
            problems.append(f"{run_dir}: its database URL holds a password, which {RUN_FILE} does not record; "
                            f"serve that database with --storage URL")
            return
        url = storage or sqlite_url(run_dir)  # no storage recorded: the database in the folder, wherever it is now
        db_file = sqlite_path(url)
        if db_file is not None and not Path(db_file).is_file():
            if storage:
                problems.append(f"{run_dir}: results database missing ({db_file})")
            return  # else a run folder still being created
        ident = (_canonical(url), name)
        if ident in seen:
            return
        try:
            store = self.store(url)
            run_id = store.run_id(name)
        except AutotuneError as e:
            problems.append(f"{run_dir}: {e}")
            return
        seen.add(ident)
        found.append((ident, name, url, run_id, run_dir, str(run_dir)))

    def _add_storage_runs(self, url: str, found: list, seen: set, problems: list[str]) -> None:
        try:
            store = self.store(url)
            runs = store.runs()
        except AutotuneError as e:
            problems.append(str(e))
            return
        except Exception as e:  # noqa: BLE001 - a database that went away is shown, not raised
            problems.append(f"{redact_url(url)}: {type(e).__name__}: {e}")
            return
        for name, run_id, recorded_dir in runs:
            ident = (_canonical(url), name)
            if ident in seen:
                continue
            run_dir = verified_run_dir(recorded_dir, name)
            seen.add(ident)
            found.append((ident, name, url, run_id, run_dir, redact_url(url)))

    # -- lookups ---------------------------------------------------------------------------------
    def runs(self) -> tuple[list[RunRef], list[str]]:
        self.refresh(min_interval=REFRESH_INTERVAL_S)
        with self._lock:
            return list(self._refs.values()), list(self._problems)

    def get(self, key: str) -> RunRef | None:
        with self._lock:
            ref = self._refs.get(key)
        if ref is None:
            self.refresh(min_interval=REFRESH_INTERVAL_S)
            with self._lock:
                ref = self._refs.get(key)
        return ref

    # -- data ------------------------------------------------------------------------------------
    def version(self, ref: RunRef) -> tuple[str, dict[str, Any]]:
        """A string that changes whenever the run's data does, and the run's attributes."""
        store = self.store(ref.url)
        attrs = store.attrs(ref.run_id)
        attrs["status"] = run_status(attrs)  # a killed driver's run reads "interrupted", not "running"
        n = store.n_trials(ref.run_id)
        digest = f"{store.driver_state_digest(attrs)}.{store.n_reports(ref.run_id)}"  # live reports too
        removed_n = len(removed_checkpoints(attrs))
        return f"{attrs.get('status', '')}.{n}.{digest}.{attrs.get('finished') or ''}.{removed_n}", attrs

    def head(self, ref: RunRef) -> Head:
        """The run's :class:`Head`: from its snapshot when one of this version is cached, else from the
        database's tallies (cached by version too), never loading every record for it."""
        with self._lock:  # its own lock: a head is not held up by a snapshot being read for the trials list
            lock = self._run_locks.setdefault(("head", ref.key), threading.Lock())
        with lock:
            version, attrs = self.version(ref)
            snap = self._snapshots.get(ref.key)
            if snap is not None and snap.version == version:
                return head_of(snap)
            cached = self._heads.get(ref.key)
            if cached is not None and cached.version == version:
                return cached
            store = self.store(ref.url)
            tallies = store.tallies(ref.run_id)
            head = Head(version, attrs, tallies, store.state_round(store.driver_state(ref.run_id)))
            if attrs.get("status") == RUNNING:
                head.running = len(store.planned_trials(ref.run_id, (t.trial_id for t in tallies)))
            self._heads[ref.key] = head
            return head

    def record(self, ref: RunRef, head: Head, trial_id: int) -> TrialRecord | None:
        """One finished trial: from the snapshot of ``head``'s version when one is cached, else read alone."""
        snap = self._snapshots.get(ref.key)
        if snap is not None and snap.version == head.version:
            return next((r for r in snap.records if r.trial_id == trial_id), None)
        return self.store(ref.url).record(ref.run_id, trial_id)

    def snapshot(self, ref: RunRef) -> Snapshot:
        with self._lock:
            lock = self._run_locks.setdefault(ref.key, threading.Lock())
        with lock:
            version, attrs = self.version(ref)
            cached = self._snapshots.get(ref.key)
            if cached is not None and cached.version == version:
                return cached
            store = self.store(ref.url)
            records = store.trials(ref.run_id)
            snap = Snapshot(version=version, attrs=attrs, records=records)
            snap.state_round = store.state_round(store.driver_state(ref.run_id))
            snap.pending = store.planned_trials(ref.run_id, (rec.trial_id for rec in records))
            if snap.pending:
                snap.live = {t["trial_id"]: t for t in store.running_trials(ref.run_id)}
            self._snapshots[ref.key] = snap
            return snap
