"""``autotune dashboard``: check the sources, bind the address, serve the app with uvicorn.

Loopback (127.0.0.1) is the default.  Any other address must be asked for with ``--host``, prints a
warning, and always requires a token: the one given (``--token`` or ``AUTOTUNE_DASHBOARD_TOKEN``), or
else a random one generated at start-up and printed with the address to open.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import ConfigError
from ..results import RUN_FILE
from ..store import redact_url, sqlite_path
from .app import LOOPBACK_NAMES, create_app
from .catalog import is_url

TOKEN_ENV = "AUTOTUNE_DASHBOARD_TOKEN"
DEFAULT_RUNS = "runs"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_sources(run_dirs: Sequence[str | os.PathLike[str]], storage: str | None) -> list[str]:
    """The sources to serve: existing folders, then the storage URL.  Raises ConfigError for none."""
    out: list[str] = []
    missing: list[str] = []
    for d in run_dirs:
        p = Path(d)
        if is_url(str(d)):
            raise ConfigError(f"{d!r} is a database URL: pass it as --storage {redact_url(str(d))}")
        if p.is_dir():
            out.append(str(p.resolve()))
        else:
            missing.append(str(d))
    # With --storage the default ./runs is optional; a folder the user named must exist.
    explicit_missing = [m for m in missing if not (storage and m == DEFAULT_RUNS)]
    if explicit_missing:
        raise ConfigError(f"no such run folder: {', '.join(explicit_missing)} (pass run folders, or "
                          f"folders holding run folders with a {RUN_FILE} each)")
    if storage:
        if not is_url(storage):
            raise ConfigError(f"--storage must be a database URL such as sqlite:///path/autotune.db or "
                              f"postgresql://user@host/db, but got {storage!r}")
        path = sqlite_path(storage)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"no results database at {path} (--storage {storage})")
        out.append(storage)
    if not out:
        raise ConfigError("nothing to serve: pass run folders or --storage URL")
    return out


def serve(
    run_dirs: Sequence[str | os.PathLike[str]] = (DEFAULT_RUNS,),
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    *,
    stream: TextIO | None = None,
    control: bool = False,
    address: str | None = None,
    spaces: str | None = None,
    output: str | None = None,
) -> None:
    """Serve the dashboard until interrupted (Ctrl-C).  ``control``: also stop, resume and start searches
    as Ray Jobs through the job server at ``address`` (those requests always need a token)."""
    import uvicorn

    out = stream or sys.stderr
    if not control and (address or spaces or output):
        raise ConfigError("--address, --spaces and --output go with --control")
    sources = resolve_sources(run_dirs, storage)
    token = token or os.environ.get(TOKEN_ENV) or None
    controller = None
    if control:
        from .control import Control

        if not address:
            raise ConfigError("--control needs --address http://HEAD:8265, the Ray head's job server")
        if output is not None and not Path(output).is_absolute():
            raise ConfigError(f"--output must be an absolute path on the cluster's storage, got {output}")
        control_token = token or secrets.token_urlsafe(24)
        controller = Control(address, control_token, spaces=spaces, output=output)
        controller.client  # noqa: B018 - fail fast when the job server cannot be reached
        if not token:
            print("autotune: dashboard control on: stopping, resuming and starting searches needs the token in "
                  "the address below (reads need none on loopback)", file=out)
    loopback = is_loopback(host)
    if not loopback:
        print(f"autotune: warning: serving the dashboard on {host}, not on loopback: anyone who can reach "
              f"this address can read these runs' results and trial logs", file=out)
        if not token:
            token = secrets.token_urlsafe(24)
            print(f"autotune: warning: no --token (or {TOKEN_ENV}) given; generated one. Open the address "
                  f"below, or send 'Authorization: Bearer {token}'", file=out)
    app = create_app(sources, token=token, allowed_hosts=sorted(LOOPBACK_NAMES | {host}) if loopback else None,
                     control=controller)
    # Fail fast, with the database's own message, when a --storage URL cannot be opened.
    app.state.catalog.refresh()
    for url in app.state.catalog.urls:
        app.state.catalog.store(url)
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    secret = token or (controller.token if controller else None)
    query = f"?token={secret}" if secret else ""
    n = len(app.state.catalog.runs()[0])
    print(f"autotune dashboard: http://{shown}:{sock.getsockname()[1]}/{query}  ({n} run{'s' * (n != 1)}; "
          f"Ctrl-C stops it)", file=out, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot serve on {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
