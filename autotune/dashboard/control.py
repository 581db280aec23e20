"""The dashboard's control of searches (``autotune dashboard --control --address http://HEAD:8265``):
stop a run, resume it, start a new one from a space file, each as a Ray Job (see :mod:`autotune.service`).

Control is off unless asked for.  When it is on, every state-changing request must carry the control
token (on loopback too, where reads need none) in an ``Authorization: Bearer`` or ``X-Autotune-Token``
header, or in the page's SameSite=Strict cookie together with the ``X-Autotune-Request`` header, which a
cross-site page cannot send without a CORS preflight this server never grants; a request whose
``Origin`` is another site, or that the browser marks ``Sec-Fetch-Site: cross-site``, is refused.
Each request is recorded in the run it acts on (what, when, which client), through
:meth:`autotune.store.Store.add_control_event`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError

REQUEST_HEADER = "x-autotune-request"
MAX_SPACES = 1000
SPACE_SUFFIXES = (".yaml", ".yml")


class Control:
    """What the dashboard needs to act on the cluster: the job server and where new searches go."""

    def __init__(self, address: str, token: str, *, spaces: str | os.PathLike[str] | None = None,
                 output: str | os.PathLike[str] | None = None, client: Any = None) -> None:
        if not token:
            raise ConfigError("dashboard control needs a token")
        self.address = address
        self.token = token
        self.spaces = Path(spaces).resolve() if spaces else None
        self.output = Path(output).resolve() if output else None
        self._client = client
        self._lock = threading.Lock()
        if self.spaces is not None and not self.spaces.is_dir():
            raise ConfigError(f"--spaces {spaces}: no such folder")

    @property
    def client(self) -> Any:
        from ..service import job_client

        with self._lock:
            if self._client is None:
                self._client = job_client(self.address)
            return self._client

    def space_files(self) -> list[str]:
        """Space files under ``--spaces``, as paths relative to it (the only names a start may use)."""
        if self.spaces is None:
            return []
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.spaces):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if f.endswith(SPACE_SUFFIXES) and not f.startswith("."):
                    out.append(str((Path(dirpath) / f).relative_to(self.spaces)))
                    if len(out) >= MAX_SPACES:
                        return out
        return out

    def record_later(self, find: Any, event: dict[str, Any], timeout: float = 300.0) -> None:
        """Record ``event`` in a run that a job is about to create, once it appears (``find`` returns
        (store, run id) or None)."""

        def wait() -> None:
            deadline = time.time() + timeout
            while time.time() < deadline:
                try:
                    found = find()
                except Exception:  # noqa: BLE001 - not there yet, or the database is busy
                    found = None
                if found is not None:
                    store, run_id = found
                    try:
                        store.add_control_event(run_id, event)
                    except Exception:  # noqa: BLE001 - best effort: the job's metadata names the client too
                        pass
                    return
                time.sleep(1.0)

        threading.Thread(target=wait, name="autotune-record-start", daemon=True).start()
