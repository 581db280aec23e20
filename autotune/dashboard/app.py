"""The dashboard web app: a JSON API under ``/api`` and the static page that draws it.

``create_app(sources, token=None)`` builds it.  Runs are addressed by name only, names are checked
against the rules run names follow (no ``/ \\ : * ? " < > |``, at most 200 characters; a bad one is a
422, an unknown one a 404), and the one file a request can read is the ``trial.log`` of a trial the run
has (see :func:`autotune.dashboard.views.read_log`).  With a token, every request needs it: as
``Authorization: Bearer TOKEN``, an ``X-Autotune-Token`` header, or ``?token=TOKEN`` once in the page
address (the page then keeps it in an HttpOnly cookie and drops it from the address bar).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path as FilePath
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from .. import __version__
from ..errors import AutotuneError
from .api_control import control_router
from .api_read import read_router
from .catalog import Catalog
from .control import Control
from .routes import header_tokens, same, token_cookie

STATIC_DIR = FilePath(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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
            cookie = token_cookie(request)
            query_token = request.query_params.get("token", "")
            if token:
                given = [*header_tokens(request), request.cookies.get(cookie, "")]
                if not any(g and same(g, token) for g in [*given, query_token]):
                    return _unauthorized(request)
            if query_token and same(query_token, secret) and request.url.path == "/":
                response: Response = RedirectResponse("/", status_code=303)
                response.set_cookie(cookie, secret, httponly=True, samesite="strict", path="/")
                return _secure(response)
        return _secure(await call_next(request))

    @app.exception_handler(AutotuneError)
    async def store_error(request: Request, exc: AutotuneError) -> Response:
        return _secure(JSONResponse({"detail": str(exc)}, status_code=503))

    app.include_router(read_router(catalog))
    app.include_router(control_router(catalog, control))
    app.include_router(pages_router())
    return app


def pages_router() -> APIRouter:
    """The page and its static files (a fixed set of names)."""
    router = APIRouter(include_in_schema=False)
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()} if STATIC_DIR.is_dir() else {}

    @router.get("/")
    def index() -> Response:
        return _static(files, "index.html")

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        return _static(files, name)

    return router


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
