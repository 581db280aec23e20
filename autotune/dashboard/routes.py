"""What the dashboard's routers share: path parameters, error documents, and finding a run."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Callable, TypeVar

from fastapi import HTTPException, Path, Request

from ..errors import AutotuneError
from .catalog import Catalog, Head, RunRef, Snapshot
from .models import ErrorBody

T = TypeVar("T")

TOKEN_HEADER = "x-autotune-token"
RUN_NAME_PATTERN = r'^[^\x00-\x1f/\\:*?"<>|]+$'
RunName = Annotated[str, Path(min_length=1, max_length=200, pattern=RUN_NAME_PATTERN,
                              description="the run's name, as listed by /api/runs", examples=["demo"])]
TrialId = Annotated[int, Path(ge=0, le=2**31 - 1, description="the trial's id within the run")]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "a token is required and was missing or wrong"},
    404: {"model": ErrorBody, "description": "no such run or trial"},
    503: {"model": ErrorBody, "description": "the run's database cannot be read just now"},
}


def same(a: str, b: str) -> bool:
    """Constant-time equality of two secrets."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def header_tokens(request: Request) -> list[str]:
    """The tokens a request presents in its headers: ``Authorization: Bearer``, then ``X-Autotune-Token``
    ("" where absent)."""
    auth = request.headers.get("authorization", "")
    return [auth[7:].strip() if auth.lower().startswith("bearer ") else "", request.headers.get(TOKEN_HEADER, "")]


def token_cookie(request: Request) -> str:
    """The name of the cookie the page keeps the token in (one per port: dashboards on one host differ)."""
    return f"autotune_token_{request.url.port or 0}"


def run_ref(catalog: Catalog, run: str) -> RunRef:
    """The served run named ``run``, else a 404."""
    ref = catalog.get(run)
    if ref is None:
        raise HTTPException(404, f"no run named {run!r}")
    return ref


def snap(catalog: Catalog, ref: RunRef) -> Snapshot:
    """The run's data as of now; a run gone from its database is a 404, a database error a 503."""
    return _read(catalog.snapshot, ref)


def head_of_run(catalog: Catalog, ref: RunRef) -> Head:
    """The run's head (:meth:`Catalog.head`: no record read), with :func:`snap`'s errors."""
    return _read(catalog.head, ref)


def _read(read: Callable[[RunRef], T], ref: RunRef) -> T:
    try:
        return read(ref)
    except KeyError:
        raise HTTPException(404, f"run {ref.key!r} is gone from its database") from None
    except AutotuneError:
        raise
    except Exception as e:  # a database error is the database's state, not a bug here
        if type(e).__module__.startswith("sqlalchemy"):
            raise HTTPException(503, f"cannot read run {ref.key!r}: {type(e).__name__}") from None
        raise
