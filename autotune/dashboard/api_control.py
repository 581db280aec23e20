"""The dashboard's control API: whether control is on, and (with ``--control``) stopping, resuming and
starting searches as Ray Jobs, each behind the token and a same-site check."""

from __future__ import annotations

import time
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from ..errors import AutotuneError
from ..schema import BY_NAME, DASHBOARD_KEYS
from ..statuses import CREATED, RUN_COMPLETED, RUNNING
from .catalog import Catalog, RunRef
from .control import REQUEST_HEADER, Control
from .models import ControlInfo, ControlResult, ErrorBody, StartRequest
from .routes import ERRORS, RunName, header_tokens, run_ref, same, token_cookie


def control_router(catalog: Catalog, control: Control | None) -> APIRouter:
    """``GET /api/control`` always; the POST routes only with ``control`` (without it they are absent)."""
    router = APIRouter()

    def controlled(request: Request) -> Control:
        """The checks every state-changing request passes: control on, the token, same site."""
        if control is None:
            raise HTTPException(403, "this dashboard cannot stop, resume or start searches: start it with "
                                     "--control --address http://HEAD:8265")
        cookie = request.cookies.get(token_cookie(request), "")
        ok = any(g and same(g, control.token) for g in header_tokens(request)) or (
            # the page's cookie counts only with a header that a cross-site page cannot send unasked
            cookie and same(cookie, control.token) and request.headers.get(REQUEST_HEADER) == "1")
        if not ok:
            raise HTTPException(401, "stopping, resuming and starting searches needs the dashboard's token "
                                     "(Authorization: Bearer TOKEN), on loopback too",
                                headers={"WWW-Authenticate": "Bearer"})
        site = request.headers.get("sec-fetch-site")
        origin = request.headers.get("origin")
        if site is not None and site not in ("same-origin", "none"):
            raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        if origin is not None and _origin_host(origin) != request.headers.get("host", "").strip().lower():
            raise HTTPException(403, "cross-site request refused (its Origin is another site)")
        return control

    def who(request: Request) -> str:
        host = request.client.host if request.client else "?"
        agent = request.headers.get("user-agent", "")[:120]
        return f"dashboard {host}" + (f" ({agent})" if agent else "")

    def store_of(ref: RunRef) -> Any:
        return catalog.store(ref.url)

    CONTROL_ERRORS: dict[int | str, dict[str, Any]] = {
        **ERRORS,
        403: {"model": ErrorBody, "description": "control is off, or the request came from another site"},
        409: {"model": ErrorBody, "description": "the run is not in a state for this (not running, done, ...)"},
        502: {"model": ErrorBody, "description": "the Ray job server refused or could not be reached"},
    }

    def job_error(e: Exception) -> HTTPException:
        return HTTPException(502, str(e))

    # the page asks this first; without --control it is left out of the (read-only) API document
    @router.get("/api/control", response_model=ControlInfo, responses=ERRORS, tags=["control"],
                include_in_schema=control is not None)
    def get_control() -> dict[str, Any]:
        """Whether this dashboard may stop, resume and start searches, and the space files it may start."""
        if control is None:
            return {"enabled": False, "spaces": [], "output": None}
        return {"enabled": True, "spaces": control.space_files(),
                "output": str(control.output) if control.output else None}

    if control is not None:  # without --control the API stays read-only: these routes are absent (405/404)

        @router.post("/api/runs/{run}/stop", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
                     tags=["control"])
        def stop_run(run: RunName, request: Request, ctl: Control = Depends(controlled)) -> dict[str, Any]:
            """Stop a running search gracefully, as Ctrl-C would: its running trials are recorded as
            stopped and the run is interrupted, ready to resume.  Needs the token and --control."""
            ref = run_ref(catalog, run)
            from ..liveness import run_status
            from ..service import list_jobs

            status = run_status(store_of(ref).attrs(ref.run_id))
            try:
                jobs = [j for j in list_jobs(ctl.client) if j.run == ref.name and j.active]
            except AutotuneError as e:
                raise job_error(e) from None
            except Exception as e:  # noqa: BLE001 - the job server's error
                raise job_error(e) from None
            if not jobs:
                raise HTTPException(409, f"run {ref.key!r} ({status}) has no running job on this cluster"
                                         + (": it was started elsewhere; stop it there (Ctrl-C)"
                                            if status == RUNNING else ""))
            job = jobs[-1]
            try:
                ctl.client.stop_job(job.job_id)
            except Exception as e:  # noqa: BLE001
                raise job_error(e) from None
            store_of(ref).add_control_event(ref.run_id, {"action": "stop", "at": time.time(), "client": who(request),
                                                         "job_id": job.job_id})
            return {"run": ref.key, "action": "stop", "job_id": job.job_id}

        @router.post("/api/runs/{run}/resume", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
                     tags=["control"])
        def resume_run(run: RunName, request: Request, ctl: Control = Depends(controlled)) -> dict[str, Any]:
            """Resume an interrupted (or failed) search as a new job on the cluster: finished trials are kept,
            unfinished ones run again.  Needs the token and --control."""
            ref = run_ref(catalog, run)
            from ..liveness import run_status
            from ..service import list_jobs, submit_resume
            from ..store import sqlite_path

            store = store_of(ref)
            attrs = store.attrs(ref.run_id)
            status = run_status(attrs)
            if status in (RUNNING, CREATED, RUN_COMPLETED):
                raise HTTPException(409, f"run {ref.key!r} is {status}: only an interrupted or failed run resumes")
            run_dir = str(ref.run_dir) if ref.run_dir else attrs.get("run_dir")
            if not isinstance(run_dir, str) or not run_dir:
                raise HTTPException(409, f"run {ref.key!r} has no known run folder to resume")
            db = sqlite_path(ref.url)
            storage = None if db is not None and FilePath(db).parent == FilePath(run_dir) else ref.url
            try:
                if any(j.run == ref.name and j.active for j in list_jobs(ctl.client)):
                    raise HTTPException(409, f"run {ref.key!r} already has a job running")
                job_id = submit_resume(ctl.client, ref.name, run_dir, storage, who(request))
            except HTTPException:
                raise
            except Exception as e:  # noqa: BLE001
                raise job_error(e) from None
            store.add_control_event(ref.run_id, {"action": "resume", "at": time.time(), "client": who(request),
                                                 "job_id": job_id})
            return {"run": ref.key, "action": "resume", "job_id": job_id}

        @router.post("/api/runs", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
                     tags=["control"])
        def start_run(body: StartRequest, request: Request,
                      ctl: Control = Depends(controlled)) -> dict[str, Any]:
            """Start a search, as a job on the cluster, from a space file under the dashboard's --spaces folder
            (its `trial:` is the trial).  Needs the token and --control."""
            from ..service import submit_new
            from ..store import sqlite_path

            if ctl.spaces is None or body.space not in ctl.space_files():
                raise HTTPException(404, f"no space file {body.space!r} here (GET /api/control lists them)")
            output = ctl.output or (catalog.folders[0] if catalog.folders else None)
            if output is None:
                raise HTTPException(409, "no folder for new run folders: start the dashboard with --output DIR")
            name = body.name or f"{FilePath(body.space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            if catalog.get(name) is not None or (FilePath(output) / name).exists():
                raise HTTPException(409, f"a run named {name!r} already exists")
            flags = [token for key in DASHBOARD_KEYS for token in BY_NAME[key].tokens(getattr(body, key))]
            storage = next((u for u in catalog.urls if sqlite_path(u) is None), None)  # a shared database
            client_label = who(request)
            try:
                job_id = submit_new(ctl.client, workdir=str(ctl.spaces), space=body.space, output=str(output), name=name,
                                    trial=None, options=flags, storage=storage, client_label=client_label)
            except Exception as e:  # noqa: BLE001
                raise job_error(e) from None
            event = {"action": "start", "at": time.time(), "client": client_label, "job_id": job_id}

            def find() -> Any:
                ref = catalog.get(name)
                return (catalog.store(ref.url), ref.run_id) if ref is not None else None

            ctl.record_later(find, event)
            return {"run": name, "action": "start", "job_id": job_id}

    return router


def _origin_host(origin: str) -> str:
    """``host[:port]`` of an Origin header (``null`` and garbage give "")."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(origin.strip()).netloc.lower()
    except ValueError:
        return ""
