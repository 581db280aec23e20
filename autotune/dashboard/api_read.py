"""The dashboard's read-only API: runs, trials, logs, lineage and the settings' schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from ..schema import SETTINGS
from ..statuses import RUNNING
from . import views
from .catalog import Catalog, head_of
from .models import (Lineage, LogText, RunDetail, RunList, SettingInfo, Tallies, TrialDetail, TrialList, Version,
                     setting_info)
from .routes import ERRORS, RunName, TrialId, head_of_run, run_ref, snap

MAX_LOG_TAIL = 4 * 1024 * 1024
DEFAULT_LOG_TAIL = 256 * 1024


def read_router(catalog: Catalog) -> APIRouter:
    """The GET routes under ``/api`` over the runs of ``catalog``."""
    router = APIRouter()

    @router.get("/api/runs", response_model=RunList, responses=ERRORS, tags=["runs"])
    def list_runs() -> dict[str, Any]:
        """Every served run, newest first."""
        refs, problems = catalog.runs()
        runs = []
        for ref in refs:
            try:
                runs.append(views.summary(ref, catalog.head(ref)))
            except Exception as e:  # noqa: BLE001 - one unreadable run must not hide the others
                problems.append(f"{ref.key}: {type(e).__name__}: {e}")
        runs.sort(key=lambda r: (r["started"] or 0.0, r["id"]), reverse=True)
        return {"runs": runs, "problems": problems}

    @router.get("/api/runs/{run}", response_model=RunDetail, responses=ERRORS, tags=["runs"])
    def get_run(run: RunName) -> dict[str, Any]:
        """One run: its summary, settings, searched parameters and best config."""
        ref = run_ref(catalog, run)
        head = head_of_run(catalog, ref)
        return views.detail(ref, head, lambda trial_id: catalog.record(ref, head, trial_id))

    @router.get("/api/runs/{run}/version", response_model=Version, responses=ERRORS, tags=["runs"])
    def get_version(run: RunName) -> dict[str, Any]:
        """A cheap string that changes whenever the run's data does (the page polls it)."""
        ref = run_ref(catalog, run)
        try:
            version, attrs = catalog.version(ref)
        except KeyError:
            raise HTTPException(404, f"run {ref.key!r} is gone from its database") from None
        return {"run": ref.key, "version": version, "status": str(attrs.get("status", "unknown"))}

    @router.get("/api/runs/{run}/trials", response_model=TrialList, responses=ERRORS, tags=["trials"])
    def list_trials(run: RunName) -> Any:
        """Every trial with every report, then the planned trials that have not finished yet."""
        ref = run_ref(catalog, run)
        s = snap(catalog, ref)
        head = views.summary(ref, head_of(s))
        # sent as built: views.trial_row gives the model's fields (tests check each answer against TrialList),
        # and validating 10,000 trials again took a third of the answer's time
        return JSONResponse({"run": ref.key, "metric": head["metric"], "mode": head["mode"], "version": s.version,
                             "trials": views.trials(ref, s)})

    @router.get("/api/runs/{run}/tallies", response_model=Tallies, responses=ERRORS, tags=["trials"])
    def list_tallies(run: RunName) -> dict[str, Any]:
        """Each finished trial's status, value and end, column by column, without its record."""
        ref = run_ref(catalog, run)
        head = head_of_run(catalog, ref)
        return {"run": ref.key, "version": head.version, **views.tally_columns(head.tallies)}

    @router.get("/api/runs/{run}/trials/{trial_id}", response_model=TrialDetail, responses=ERRORS, tags=["trials"])
    def get_trial(run: RunName, trial_id: TrialId) -> dict[str, Any]:
        """One trial, with the end of its log as stored and its checkpoint hashes."""
        ref = run_ref(catalog, run)
        s = snap(catalog, ref)
        record = views.find(s, trial_id)
        if record is not None:
            return views.trial_detail(ref, record)
        for spec in s.pending:
            if spec.get("trial_id") == trial_id:
                row = views.pending_row(spec, s.attrs.get("status") == RUNNING)
                row.update(log_tail=None, trial_dir=None, parent_checkpoint=None, parent_hash=None,
                           checkpoint_hash=None)
                return row
        raise HTTPException(404, f"run {ref.key!r} has no trial {trial_id}")

    @router.get("/api/runs/{run}/trials/{trial_id}/log", response_model=LogText, responses=ERRORS, tags=["trials"])
    def get_log(run: RunName, trial_id: TrialId,
                tail: Annotated[int, Query(ge=1, le=MAX_LOG_TAIL, description="bytes from the end")] = DEFAULT_LOG_TAIL,
                ) -> dict[str, Any]:
        """The end of the trial's ``trial.log`` in its run folder (or the tail kept in the database)."""
        ref = run_ref(catalog, run)
        s = snap(catalog, ref)
        record = views.find(s, trial_id)
        if record is None:
            raise HTTPException(404, f"run {ref.key!r} has no finished trial {trial_id}")
        settings = s.attrs.get("settings") if isinstance(s.attrs.get("settings"), dict) else {}
        return views.read_log(ref, record, tail, artifacts=settings.get("artifacts"))

    @router.get("/api/runs/{run}/lineage", response_model=Lineage, responses=ERRORS, tags=["trials"])
    def get_lineage(run: RunName) -> dict[str, Any]:
        """Which trial started from which parent's checkpoint, as a forest (Population-Based runs)."""
        ref = run_ref(catalog, run)
        return views.lineage(ref, snap(catalog, ref))

    @router.get("/api/settings", response_model=list[SettingInfo], responses=ERRORS, tags=["runs"])
    def get_settings() -> list[dict[str, Any]]:
        """Every run setting with its rule, default and help (autotune.schema); the start form is built from it."""
        return [setting_info(s) for s in SETTINGS]

    return router
