"""The dashboard web app: a JSON API under ``/api`` and the static page that draws it.

``create_app(sources, token=None)`` builds it.  Runs are addressed by name only, names are checked
against the rules run names follow (no ``/ \\ : * ? " < > |``, at most 200 characters; a bad one is a
422, an unknown one a 404), and the one file a request can read is the ``trial.log`` of a trial the run
has (see :func:`autotune.dashboard.views.read_log`).  With a token, every request needs it: as
``Authorization: Bearer TOKEN``, an ``X-Autotune-Token`` header, or ``?token=TOKEN`` once in the page
address (the page then keeps it in an HttpOnly cookie and drops it from the address bar).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)

from .. import __version__
from ..errors import AutotuneError
from ..schema import BY_NAME, DASHBOARD_KEYS, SETTINGS
from ..statuses import CREATED, RUN_COMPLETED, RUNNING
from . import views
from .catalog import Catalog, RunRef, Snapshot, head_of
from .control import REQUEST_HEADER, Control
from .models import (
    ControlInfo,
    ControlResult,
    ErrorBody,
    Lineage,
    LogText,
    RunDetail,
    RunList,
    SettingInfo,
    StartRequest,
    TrialDetail,
    TrialList,
    Version,
    setting_info,
)

STATIC_DIR = FilePath(__file__).resolve().parent / "static"
TOKEN_HEADER = "x-autotune-token"
MAX_LOG_TAIL = 4 * 1024 * 1024
DEFAULT_LOG_TAIL = 256 * 1024
RUN_NAME_PATTERN = r'^[^\x00-\x1f/\\:*?"<>|]+$'
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})

RunName = Annotated[str, Path(min_length=1, max_length=200, pattern=RUN_NAME_PATTERN,
                              description="the run's name, as listed by /api/runs", examples=["demo"])]
TrialId = Annotated[int, Path(ge=0, le=2**31 - 1, description="the trial's id within the run")]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "a token is required and was missing or wrong"},
    404: {"model": ErrorBody, "description": "no such run or trial"},
    503: {"model": ErrorBody, "description": "the run's database cannot be read just now"},
}


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def create_app(
    sources: Sequence[str | os.PathLike[str]],
    token: str | None = None,
    *,
    allowed_hosts: Sequence[str] | None = None,
    control: Control | None = None,
) -> FastAPI:
    """The dashboard of the runs in ``sources`` (run folders, folders of run folders, database URLs).

    ``token``: require it on every request.  ``allowed_hosts``: accept only requests whose Host header
    names one of these (the server passes the loopback names when it binds to loopback, so a web page
    on another site cannot reach the dashboard through DNS rebinding).  ``control``: allow the POST
    routes that stop, resume and start searches (see :mod:`autotune.dashboard.control`); without it they
    are absent, and the API is read-only.
    """
    catalog = Catalog(sources)
    hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts else None
    app = FastAPI(title="autotune dashboard", version=__version__, openapi_url="/api/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="JSON API of autotune runs, behind the dashboard page: read-only, except the "
                              "POST routes that stop, resume and start searches when the dashboard was "
                              "started with --control (they need the token).")
    app.state.catalog = catalog

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Any]) -> Response:
        if hosts is not None and _host_name(request.headers.get("host", "")) not in hosts:
            return PlainTextResponse("invalid Host header", status_code=400)
        secret = token or (control.token if control else None)
        if secret:
            cookie = f"autotune_token_{request.url.port or 0}"
            query_token = request.query_params.get("token", "")
            if token:
                auth = request.headers.get("authorization", "")
                given = [auth[7:].strip() if auth.lower().startswith("bearer ") else "",
                         request.headers.get(TOKEN_HEADER, ""), request.cookies.get(cookie, "")]
                if not any(g and _same(g, token) for g in [*given, query_token]):
                    return _unauthorized(request)
            if query_token and _same(query_token, secret) and request.url.path == "/":
                response: Response = RedirectResponse("/", status_code=303)
                response.set_cookie(cookie, secret, httponly=True, samesite="strict", path="/")
                return _secure(response)
        return _secure(await call_next(request))

    @app.exception_handler(AutotuneError)
    async def store_error(request: Request, exc: AutotuneError) -> Response:
        return _secure(JSONResponse({"detail": str(exc)}, status_code=503))

    def run_ref(run: str) -> RunRef:
        ref = catalog.get(run)
        if ref is None:
            raise HTTPException(404, f"no run named {run!r}")
        return ref

    def snap(ref: RunRef) -> Snapshot:
        try:
            return catalog.snapshot(ref)
        except KeyError:
            raise HTTPException(404, f"run {ref.key!r} is gone from its database") from None
        except AutotuneError:
            raise
        except Exception as e:  # a database error is the database's state, not a bug here
            if type(e).__module__.startswith("sqlalchemy"):
                raise HTTPException(503, f"cannot read run {ref.key!r}: {type(e).__name__}") from None
            raise

    # -- API -------------------------------------------------------------------------------------
    @app.get("/api/runs", response_model=RunList, responses=ERRORS, tags=["runs"])
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

    @app.get("/api/runs/{run}", response_model=RunDetail, responses=ERRORS, tags=["runs"])
    def get_run(run: RunName) -> dict[str, Any]:
        """One run: its summary, settings, searched parameters and best config."""
        ref = run_ref(run)
        return views.detail(ref, snap(ref))

    @app.get("/api/runs/{run}/version", response_model=Version, responses=ERRORS, tags=["runs"])
    def get_version(run: RunName) -> dict[str, Any]:
        """A cheap string that changes whenever the run's data does (the page polls it)."""
        ref = run_ref(run)
        try:
            version, attrs = catalog.version(ref)
        except KeyError:
            raise HTTPException(404, f"run {ref.key!r} is gone from its database") from None
        return {"run": ref.key, "version": version, "status": str(attrs.get("status", "unknown"))}

    @app.get("/api/runs/{run}/trials", response_model=TrialList, responses=ERRORS, tags=["trials"])
    def list_trials(run: RunName) -> dict[str, Any]:
        """Every trial with every report, then the planned trials that have not finished yet."""
        ref = run_ref(run)
        s = snap(ref)
        head = views.summary(ref, head_of(s))
        return {"run": ref.key, "metric": head["metric"], "mode": head["mode"], "version": s.version,
                "trials": views.trials(ref, s)}

    @app.get("/api/runs/{run}/trials/{trial_id}", response_model=TrialDetail, responses=ERRORS, tags=["trials"])
    def get_trial(run: RunName, trial_id: TrialId) -> dict[str, Any]:
        """One trial, with the end of its log as stored and its checkpoint hashes."""
        ref = run_ref(run)
        s = snap(ref)
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

    @app.get("/api/runs/{run}/trials/{trial_id}/log", response_model=LogText, responses=ERRORS, tags=["trials"])
    def get_log(run: RunName, trial_id: TrialId,
                tail: Annotated[int, Query(ge=1, le=MAX_LOG_TAIL, description="bytes from the end")] = DEFAULT_LOG_TAIL,
                ) -> dict[str, Any]:
        """The end of the trial's ``trial.log`` in its run folder (or the tail kept in the database)."""
        ref = run_ref(run)
        s = snap(ref)
        record = views.find(s, trial_id)
        if record is None:
            raise HTTPException(404, f"run {ref.key!r} has no finished trial {trial_id}")
        settings = s.attrs.get("settings") if isinstance(s.attrs.get("settings"), dict) else {}
        return views.read_log(ref, record, tail, artifacts=settings.get("artifacts"))

    @app.get("/api/runs/{run}/lineage", response_model=Lineage, responses=ERRORS, tags=["trials"])
    def get_lineage(run: RunName) -> dict[str, Any]:
        """Which trial started from which parent's checkpoint, as a forest (Population-Based runs)."""
        ref = run_ref(run)
        return views.lineage(ref, snap(ref))

    # -- control ---------------------------------------------------------------------------------
    def controlled(request: Request) -> Control:
        """The checks every state-changing request passes: control on, the token, same site."""
        if control is None:
            raise HTTPException(403, "this dashboard cannot stop, resume or start searches: start it with "
                                     "--control --address http://HEAD:8265")
        auth = request.headers.get("authorization", "")
        headers = [auth[7:].strip() if auth.lower().startswith("bearer ") else "",
                   request.headers.get(TOKEN_HEADER, "")]
        cookie = request.cookies.get(f"autotune_token_{request.url.port or 0}", "")
        ok = any(g and _same(g, control.token) for g in headers) or (
            # the page's cookie counts only with a header that a cross-site page cannot send unasked
            cookie and _same(cookie, control.token) and request.headers.get(REQUEST_HEADER) == "1")
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

    @app.get("/api/settings", response_model=list[SettingInfo], responses=ERRORS, tags=["runs"])
    def get_settings() -> list[dict[str, Any]]:
        """Every run setting with its rule, default and help (autotune.schema); the start form is built from it."""
        return [setting_info(s) for s in SETTINGS]

    # the page asks this first; without --control it is left out of the (read-only) API document
    @app.get("/api/control", response_model=ControlInfo, responses=ERRORS, tags=["control"],
             include_in_schema=control is not None)
    def get_control() -> dict[str, Any]:
        """Whether this dashboard may stop, resume and start searches, and the space files it may start."""
        if control is None:
            return {"enabled": False, "spaces": [], "output": None}
        return {"enabled": True, "spaces": control.space_files(),
                "output": str(control.output) if control.output else None}

    if control is not None:  # without --control the API stays read-only: these routes are absent (405/404)

        @app.post("/api/runs/{run}/stop", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
                  tags=["control"])
        def stop_run(run: RunName, request: Request, ctl: Control = Depends(controlled)) -> dict[str, Any]:
            """Stop a running search gracefully, as Ctrl-C would: its running trials are recorded as
            stopped and the run is interrupted, ready to resume.  Needs the token and --control."""
            ref = run_ref(run)
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

        @app.post("/api/runs/{run}/resume", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
                  tags=["control"])
        def resume_run(run: RunName, request: Request, ctl: Control = Depends(controlled)) -> dict[str, Any]:
            """Resume an interrupted (or failed) search as a new job on the cluster: finished trials are kept,
            unfinished ones run again.  Needs the token and --control."""
            ref = run_ref(run)
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

        @app.post("/api/runs", response_model=ControlResult, status_code=202, responses=CONTROL_ERRORS,
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

    # -- page ------------------------------------------------------------------------------------
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else {}

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return _static(files, "index.html")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        return _static(files, name)

    return app


def _origin_host(origin: str) -> str:
    """``host[:port]`` of an Origin header (``null`` and garbage give "")."""
    from urllib.parse import urlsplit

    try:
        return urlsplit(origin.strip()).netloc.lower()
    except ValueError:
        return ""


def _static(files: dict[str, FilePath], name: str) -> Response:
    path = files.get(name)  # a fixed set of names: nothing from the request becomes a path
    if path is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    cache = "public, max-age=86400" if name.startswith("echarts") else "no-cache"
    return FileResponse(path, headers={"Cache-Control": cache})


def _unauthorized(request: Request) -> Response:
    msg = ("this dashboard needs a token: open the address `autotune dashboard` printed (…/?token=…), "
           "or send Authorization: Bearer TOKEN")
    if request.url.path.startswith("/api"):
        response: Response = JSONResponse({"detail": msg}, status_code=401,
                                          headers={"WWW-Authenticate": "Bearer"})
    else:
        response = HTMLResponse(f"<!doctype html><title>autotune dashboard</title><p>{msg}</p>", status_code=401)
    return _secure(response)


def _secure(response: Response) -> Response:
    h = response.headers
    h.setdefault("Content-Security-Policy", CSP)
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    return response
