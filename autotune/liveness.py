"""Is a run's driver still alive?  A run marked ``running`` whose driver was killed is interrupted.

A driver that dies by SIGKILL, OOM or a power cut cannot mark its run ``interrupted``; the database
keeps saying ``running``.  The driver therefore records who it is (host, pid and the process's start
time, which tells a reused pid apart), and readers on its host check that process.  Readers on other
hosts (a dashboard beside a shared PostgreSQL) go by a heartbeat the driver writes every
``HEARTBEAT_S`` seconds: none for ``STALE_S`` seconds means the driver is gone.

A driver that stopped while its process goes on (the Python API: a run stopped by a failing database,
which could not mark it ``interrupted``) is told apart by a token: the process knows which of its
drivers are still driving (:func:`driving`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from typing import Any, Callable, Iterator

from .statuses import INTERRUPTED, RUNNING

DRIVER_ATTR = "driver"
HEARTBEAT_ATTR = "heartbeat"
HEARTBEAT_S = float(os.environ.get("AUTOTUNE_HEARTBEAT_S", "30"))
STALE_S = 5 * HEARTBEAT_S
_DRIVING: set[str] = set()  # the tokens of the drivers running in this process


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks since boot) of a process, from /proc (Linux);
    None when it is gone or where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may contain spaces and parentheses
    try:
        return fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        return None


def proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux); -1 for a zombie; None when it is gone
    or where /proc is absent."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    return -1 if stat[0] in ("Z", "X") else stat[2]  # a zombie: dead, only not yet reaped


def this_driver() -> dict[str, Any]:
    """What a driver records about itself when it starts work on a run."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "proc_start": proc_start(pid), "since": time.time()}


@contextlib.contextmanager
def driving() -> Iterator[dict[str, Any]]:
    """While a driver runs in this process: what it records about itself (:func:`this_driver`, with a
    token this process recognises as its own until the block ends)."""
    me = this_driver()
    me["token"] = token = secrets.token_hex(8)
    _DRIVING.add(token)
    try:
        yield me
    finally:
        _DRIVING.discard(token)


def _heartbeat_alive(attrs: dict[str, Any], now: float | None = None) -> bool | None:
    beat = attrs.get(HEARTBEAT_ATTR)
    if isinstance(beat, bool) or not isinstance(beat, (int, float)):
        return None  # a driver from before heartbeats: cannot tell
    return (time.time() if now is None else now) - float(beat) <= STALE_S


def driver_alive(attrs: dict[str, Any], now: float | None = None) -> bool | None:
    """True or False when it can be told; None when it cannot (another host and no heartbeat)."""
    info = attrs.get(DRIVER_ATTR)
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return _heartbeat_alive(attrs, now)
    pid = info.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process with that pid: still compare start times
    except OSError:
        return None
    started = proc_start(pid)
    if started == -1:
        return False
    recorded = info.get("proc_start")
    if started is not None and recorded is not None and started != recorded:
        return False  # the pid now belongs to another process
    if pid == os.getpid() and isinstance(info.get("token"), str):
        return info["token"] in _DRIVING  # this process: is that driver still running?
    return True


def run_status(attrs: dict[str, Any], now: float | None = None) -> str:
    """The run's status as stored, except that a ``running`` run whose driver is gone is interrupted."""
    status = str(attrs.get("status", "unknown"))
    if status == RUNNING and driver_alive(attrs, now) is False:
        return INTERRUPTED
    return status


class Heartbeat:
    """Calls ``beat(time.time())`` now and every ``interval`` seconds from a daemon thread, until stopped.

    A failed write (database briefly unreachable) is skipped: the next beat tries again."""

    def __init__(self, beat: Callable[[float], None], interval: float = HEARTBEAT_S) -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autotune-heartbeat", daemon=True)

    def _loop(self) -> None:
        while True:
            try:
                self._beat(time.time())
            except Exception:  # noqa: BLE001 - never take the driver down for a heartbeat
                pass
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
