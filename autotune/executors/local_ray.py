"""The local Ray that autotune starts, and its end when the driver that started it dies.

A driver killed by SIGKILL (or the OOM killer) cannot stop its Ray.  Ray ties the head processes it
starts for ``ray.init()`` (gcs_server, raylet, dashboard, monitors) to the driver with
``PR_SET_PDEATHSIG(SIGKILL)``, so they die with it; but the raylet, killed that way, cannot stop its
own children: its ``DashboardAgent`` and ``RuntimeEnvAgent`` see it die, then block for 60 s trying
to tell the (dead) GCS before they exit, and a trial's own subprocesses may not notice at all.

The processes of a local Ray that autotune starts carry ``AUTOTUNE_LOCAL_RAY=TOKEN`` in their
environment: it is set around ``ray.init`` only, and gcs_server and raylet pass it on to the agents,
the workers and whatever a trial starts.  A process that renames itself (the agents and the workers
become ``ray::...``) overwrites the environment that /proc shows, so the session's processes are the
marked ones and their descendants, noted while the raylet lives (when Ray has started, and by the
reaper every few seconds).  That is exactly that session, never a Ray that autotune did not start (a
user's ``ray start``, a cluster at ``--address``, another user's).  Two things end them:

* a reaper, started with the session in a session of its own (a Ctrl-C or a kill of the driver's
  process group leaves it), which waits for the end of a pipe only the driver holds; when the driver
  exits, however it exits, the reaper ends what is left of the session's processes;
* a record per session, ``STATE_DIR/local-ray/TOKEN.json`` (the driver, Ray's session folder and GCS
  address, the pids): each local start first ends the sessions whose driver is dead, in case their
  reaper was killed too.

Linux only (``/proc``); elsewhere both find no processes.  No ``ray`` import: the reaper is light.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from ..liveness import DRIVER_ATTR, driver_alive, proc_start, proc_stat, this_driver

MARKER_ENV = "AUTOTUNE_LOCAL_RAY"
STATE_DIR_ENV = "AUTOTUNE_STATE_DIR"  # default: $XDG_STATE_HOME/autotune, else ~/.local/state/autotune
TERM_GRACE_S = 3.0  # how long a session's process may take to exit on SIGTERM before SIGKILL
REAPER_WAIT_S = 10.0  # how long a closing driver waits for its reaper
REAPER_POLL_S = 2.0  # how often the reaper notes the session's processes

log = logging.getLogger(__name__)


def state_dir() -> Path:
    """The per-user folder of autotune's own state."""
    if os.environ.get(STATE_DIR_ENV):
        return Path(os.environ[STATE_DIR_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "autotune"


def records_dir() -> Path:
    """Where the records of the local Ray sessions started by autotune are kept."""
    return state_dir() / "local-ray"


# -- the processes of a session ------------------------------------------------------------------
def _process_table() -> dict[int, tuple[int, int]]:
    """Every live process (zombies left out): pid -> (parent pid, start time)."""
    table: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[0] not in ("Z", "X"):
                table[int(name)] = (stat[1], stat[2])
    return table


def marked_processes(token: str, table: dict[int, tuple[int, int]] | None = None) -> dict[int, int]:
    """The live processes whose environment carries this session's marker: pid -> start time.  Processes
    of other users (their environment cannot be read) are never listed.  A Ray process that renames
    itself (the agents, the workers: ``ray::...``) overwrites the environment /proc shows; those are
    found by :func:`session_processes` as descendants instead."""
    needle = f"{MARKER_ENV}={token}".encode()
    found: dict[int, int] = {}
    for pid, (_, started) in (_process_table() if table is None else table).items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if needle in env:
            found[pid] = started
    return found


def session_processes(token: str, known: dict[int, int] | None = None) -> dict[int, int]:
    """The session's live processes: those carrying its marker, those in ``known`` (pid -> start time)
    that are still the same processes, and every descendant of either; never this process."""
    table = _process_table()
    found = marked_processes(token, table)
    found.update({pid: st for pid, st in (known or {}).items() if table.get(pid, (0, None))[1] == st})
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = table[child][1]
                todo.append(child)
    found.pop(os.getpid(), None)
    return found


def _alive(pid: int, started: int) -> bool:
    """Still that very process (not a zombie, not a reused pid)?"""
    return proc_start(pid) == started


def _signal(pid: int, started: int, sig: int) -> None:
    """Send ``sig`` to the process if it is still the one that started at ``started`` (through a pidfd
    where the platform has one, so a pid reused in between is never hit)."""
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # gone
        try:
            if _alive(pid, started):
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)
        return
    if _alive(pid, started):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def end_processes(procs: dict[int, int], grace_s: float = TERM_GRACE_S) -> list[int]:
    """End processes as ``ray stop`` does: SIGTERM, then SIGKILL for those still alive after
    ``grace_s``.  Returns the pids that were alive when called."""
    alive = {pid: st for pid, st in procs.items() if _alive(pid, st)}
    for pid, st in alive.items():
        _signal(pid, st, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    left = dict(alive)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid: st for pid, st in left.items() if _alive(pid, st)}
    for pid, st in left.items():
        _signal(pid, st, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid: st for pid, st in left.items() if _alive(pid, st)}
    return sorted(alive)


def end_session_processes(token: str, known: dict[int, int] | None = None,
                           grace_s: float = TERM_GRACE_S) -> list[int]:
    """End every process of the local Ray session ``token`` (see :func:`session_processes`); returns
    their pids."""
    ended: list[int] = []
    known = dict(known or {})
    for _ in range(3):  # a process started while the first ones ended (a worker the raylet was starting)
        procs = session_processes(token, known)
        if not procs:
            break
        ended += end_processes(procs, grace_s)
        known.update(procs)
    return sorted(set(ended))


# -- records -------------------------------------------------------------------------------------
def read_record(path: Path) -> dict[str, Any] | None:
    """A session's record, or None when it is gone or not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("token"), str) else None


def _recorded_pids(record: dict[str, Any] | None) -> dict[int, int]:
    pids = (record or {}).get("pids")
    if not isinstance(pids, dict):
        return {}
    out: dict[int, int] = {}
    for pid, started in pids.items():
        with contextlib.suppress(TypeError, ValueError):
            out[int(pid)] = int(started)
    return out


def _write_record(path: Path, data: dict[str, Any]) -> None:
    """Replace the record atomically (a reader never sees half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def end_stale_sessions() -> list[int]:
    """End the local Ray sessions autotune started whose driver is dead (on this host; a record of
    another host, or whose driver cannot be told dead, is left alone); returns the pids ended."""
    try:
        paths = sorted(records_dir().glob("*.json"))
    except OSError:
        return []
    ended: list[int] = []
    for path in paths:
        record = read_record(path)
        if record is None or driver_alive({DRIVER_ATTR: record.get("driver")}) is not False:
            continue
        pids = end_session_processes(record["token"], _recorded_pids(record))
        if pids:
            log.warning("ended %d leftover process(es) of the local Ray (session %s) of a driver that died",
                        len(pids), record.get("session_dir") or record["token"])
        ended += pids
        with contextlib.suppress(OSError):
            path.unlink()
    return ended


# -- a session -----------------------------------------------------------------------------------
class LocalRaySession:
    """One local Ray started by this driver: its marker, its record and its reaper."""

    def __init__(self, token: str, record: Path, reaper: subprocess.Popen[bytes] | None) -> None:
        self.token = token
        self.record = record
        self.reaper = reaper
        self._data: dict[str, Any] = {}

    @classmethod
    def begin(cls) -> "LocalRaySession":
        """Record the session and start its reaper, before Ray starts (a driver killed while Ray
        starts is covered too).  Neither is allowed to stop the run: a failure is logged."""
        token = uuid.uuid4().hex
        record = records_dir() / f"{token}.json"
        session = cls(token, record, None)
        session._data = {"token": token, "driver": this_driver(), "created": time.time()}
        session._save()
        env = {k: v for k, v in os.environ.items() if k != MARKER_ENV}
        package_root = str(Path(__file__).resolve().parents[2])  # the reaper imports this very autotune
        env["PYTHONPATH"] = os.pathsep.join(p for p in [package_root, env.get("PYTHONPATH", "")] if p)
        try:
            session.reaper = subprocess.Popen(
                [sys.executable, "-m", __name__, token, str(record)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as e:
            log.warning("cannot start the reaper of the local Ray (%s); a killed run may leave Ray processes"
                        " until the next local start", e)
        return session

    def _save(self) -> None:
        try:
            _write_record(self.record, self._data)
        except OSError as e:
            log.warning("cannot record the local Ray session in %s (%s)", self.record.parent, e)

    @contextlib.contextmanager
    def marking(self) -> Iterator[None]:
        """Within: processes started from here (Ray's, by ``ray.init``) carry this session's marker."""
        before = os.environ.get(MARKER_ENV)
        os.environ[MARKER_ENV] = self.token
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(MARKER_ENV, None)
            else:
                os.environ[MARKER_ENV] = before

    def started(self, session_dir: str | None, gcs_address: str | None) -> bool:
        """Ray is up: record its session folder, GCS address and pids.  False (and the session ended)
        when no process carries the marker: ``ray.init`` joined a Ray it found instead of starting one."""
        if not marked_processes(self.token):
            self.end()
            return False
        procs = session_processes(self.token)
        self._data.update(session_dir=session_dir, gcs_address=gcs_address, reaper=getattr(self.reaper, "pid", None),
                          pids={str(pid): st for pid, st in sorted(procs.items())})
        self._save()
        return True

    def end(self, wait_s: float = REAPER_WAIT_S) -> None:
        """After ``ray.shutdown()``: the reaper ends what is left of the session; the record goes."""
        if self.reaper is not None:
            with contextlib.suppress(OSError):
                if self.reaper.stdin is not None:
                    self.reaper.stdin.close()
            try:
                self.reaper.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                log.warning("the reaper of the local Ray (pid %d) is still ending its processes", self.reaper.pid)
            self.reaper = None
        else:
            end_session_processes(self.token, _recorded_pids(self._data))
        with contextlib.suppress(OSError):
            self.record.unlink()


def _reap(token: str, record: str, poll_s: float = REAPER_POLL_S) -> None:
    """The reaper: until the driver closes the pipe or dies, note the session's processes every
    ``poll_s`` (a worker or agent is found as a descendant of the raylet only while the raylet
    lives); then end them and remove the record."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    known: dict[int, int] = {}
    fd = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([fd], [], [], poll_s)
        if readable:
            try:
                if not os.read(fd, 4096):
                    break  # the driver closed the pipe, or died
            except OSError:
                break
            continue
        known = session_processes(token, {**_recorded_pids(read_record(Path(record))), **known})
    end_session_processes(token, {**_recorded_pids(read_record(Path(record))), **known})
    with contextlib.suppress(OSError):
        Path(record).unlink()


if __name__ == "__main__":
    _reap(sys.argv[1], sys.argv[2])
