"""Is a run's driver still alive?  A run marked ``running`` whose driver was killed is interrupted.

A driver that dies by SIGKILL, OOM or a power cut cannot mark its run ``interrupted``; the database
keeps saying ``running``.  The driver therefore records who it is (host, pid and the process's start
time, which tells a reused pid apart), and readers check that process.  The check is exact on the
driver's own host; from another host a ``running`` run is taken at its word.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

DRIVER_ATTR = "driver"
RUNNING, INTERRUPTED = "running", "interrupted"


def _proc_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may contain spaces and parentheses
    if fields and fields[0] in ("Z", "X"):  # a zombie: dead, only not yet reaped
        return -1
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def this_driver() -> dict[str, Any]:
    """What a driver records about itself when it starts work on a run."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid), "since": time.time()}


def driver_alive(attrs: dict[str, Any]) -> bool | None:
    """True or False when it can be told from here; None when the driver ran on another host."""
    info = attrs.get(DRIVER_ATTR)
    if not isinstance(info, dict) or info.get("host") != socket.gethostname():
        return None
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
    started = _proc_start(pid)
    if started == -1:
        return False
    recorded = info.get("proc_start")
    if started is not None and recorded is not None and started != recorded:
        return False  # the pid now belongs to another process
    return True


def run_status(attrs: dict[str, Any]) -> str:
    """The run's status as stored, except that a ``running`` run whose driver is gone is interrupted."""
    status = str(attrs.get("status", "unknown"))
    if status == RUNNING and driver_alive(attrs) is False:
        return INTERRUPTED
    return status
