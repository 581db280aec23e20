"""Reading a run back: the run folder, its database and the :class:`Result` users get."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import StoreError
from .statuses import RUNNING
from .liveness import run_status
from .records import TrialRecord
from .settings import RunSettings
from .space import SearchSpace, SpaceFile
from .store import TIME_BUDGET_ATTR, Store, sqlite_path, sqlite_url

RUN_FILE = "run.json"


def write_run_file(run_dir: Path, name: str, storage_url: str | None) -> None:
    """``run.json`` tells ``resume``/``show``/``dashboard`` which database holds this run: ``storage`` null
    means the SQLite database inside the folder, found wherever the folder is moved or copied to."""
    (run_dir / RUN_FILE).write_text(json.dumps({"name": name, "storage": storage_url}, indent=2) + "\n")


def run_folders(folder: str | Path) -> list[Path]:
    """``folder`` itself if it is a run folder, else the run folders directly inside it (sorted)."""
    folder = Path(folder)
    if (folder / RUN_FILE).is_file() or not folder.is_dir():
        return [folder]
    try:
        return sorted(child for child in folder.iterdir() if (child / RUN_FILE).is_file())
    except OSError as e:
        raise StoreError(f"cannot list {folder}: {e.strerror or e}") from None


def locate_run(run_dir: str | Path, storage: str | None = None) -> tuple[Store, int, str]:
    """Open the store of the run in ``run_dir``: (store, run id, run name)."""
    run_dir = Path(run_dir)
    info_path = run_dir / RUN_FILE
    if not info_path.is_file():
        raise StoreError(f"{run_dir} is not an autotune run folder (no {RUN_FILE})")
    try:
        info = json.loads(info_path.read_text())
        name = info["name"]
    except (ValueError, KeyError) as e:
        raise StoreError(f"{info_path} is unreadable: {e}") from None
    url = storage or info.get("storage") or sqlite_url(run_dir)
    if ":***@" in url:
        raise StoreError(f"the results database of {run_dir} needs its password: pass --storage URL (storage= in Python)")
    db_file = sqlite_path(url)
    if db_file is not None and not Path(db_file).exists():
        raise StoreError(f"the results database of {run_dir} is missing ({db_file})")
    store = Store(url)
    return store, store.run_id(name), name


def records_to_frame(records: list[TrialRecord]) -> pd.DataFrame:
    """One row per trial; params as ``config.NAME`` columns."""
    rows = []
    for r in records:
        row: dict[str, Any] = {
            "trial_id": r.trial_id,
            "round": r.round,
            "status": r.status,
            "value": r.value,
            "reason": r.reason,
        }
        for k, v in r.config.items():
            row[f"config.{k}"] = v
        row.update(
            {
                "member": r.member,
                "parent_id": r.parent_id,
                "planned_parent_id": r.planned_parent_id,
                "in_place": r.in_place,
                "parent_step": r.parent_step,
                "checkpoint": r.checkpoint,
                "checkpoint_step": r.checkpoint_step,
                "checkpoint_removed": r.checkpoint_removed,
                "budget": r.budget,
                "reports": len(r.reports),
                "started": pd.to_datetime(r.started, unit="s") if r.started else None,
                "ended": pd.to_datetime(r.ended, unit="s") if r.ended else None,
                "duration_s": (r.ended - r.started) if r.started and r.ended else None,
                "node": r.node,
                "gpu_ids": ",".join(map(str, r.gpu_ids)),
                "attempts": r.attempts,
            }
        )
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.set_index("trial_id", drop=False)
    return frame


@dataclass
class Result:
    """A run's outcome: best trial, every trial, where it lives."""

    path: Path
    name: str
    settings: RunSettings
    records: list[TrialRecord]
    status: str
    space: SearchSpace
    #: trials running now (a live run): ``trial_id``, ``round``, ``params``, ``started``, ``reports``,
    #: ``last_report`` (see :meth:`autotune.store.Store.running_trials`)
    running: list[dict[str, Any]] = field(default_factory=list)
    #: when the run's ``time_budget`` ran out (unix time), so it ended with fewer trials; None otherwise
    time_budget_spent: float | None = None

    @property
    def param_names(self) -> list[str]:
        """The searched parameters (a trial's config also holds the space's fixed values)."""
        return list(self.space.names)

    @property
    def best(self) -> TrialRecord | None:
        from .ranking import best_record

        return best_record(self.records, self.settings.mode)

    @property
    def best_config(self) -> dict[str, Any] | None:
        return dict(self.best.config) if self.best else None

    @property
    def best_value(self) -> float | None:
        return self.best.value if self.best else None

    @property
    def best_checkpoint(self) -> Path | None:
        b = self.best
        if b is None or not b.checkpoint:
            return None
        if self.settings.artifacts:  # trial folders are in the object store; best/ holds a local copy
            return self.path / "best" / "checkpoint"
        return self.path / b.checkpoint

    @property
    def trials(self) -> pd.DataFrame:
        return records_to_frame(self.records)

    def __repr__(self) -> str:
        return (f"Result(name={self.name!r}, status={self.status!r}, trials={len(self.records)}, "
                f"best_value={self.best_value!r}, path='{self.path}')")


def load_result(run_dir: str | Path, storage: str | None = None) -> Result:
    """Open a run folder (finished or not) as a :class:`Result`."""
    store, run_id, name = locate_run(run_dir, storage)
    attrs = store.attrs(run_id)
    settings = RunSettings.from_dict(attrs["settings"])
    status = run_status(attrs)
    return Result(path=Path(run_dir), name=name, settings=settings, records=store.trials(run_id),
                  status=status, space=SpaceFile.from_dict(attrs["space"]).space,
                  running=store.running_trials(run_id) if status == RUNNING else [],
                  time_budget_spent=attrs.get(TIME_BUDGET_ATTR))
