"""Ctrl-C and SIGTERM at safe points of a run's driver.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be.  Raised inside a database
write, it can cut a transaction half-way (SQLite's write lock then outlives it, and recording the
stopped trials waits on that lock for minutes).  While :func:`handling` is active, a signal that
arrives inside a :func:`critical` section is held until the section ends, then raised there; a
second Ctrl-C while one is held raises at once, as a user who insists expects.  Outside
:func:`handling`, :func:`critical` only counts, and Python's own handler raises as usual.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

_depth = 0  # critical sections the main thread is in
_held = False  # a signal arrived inside one: raised when the outermost ends


def interrupt(signum: int = signal.SIGINT, frame: Any = None) -> None:
    """The signal handler: raise ``KeyboardInterrupt`` now, or once the current critical section ends."""
    global _held
    if _depth > 0 and not _held:
        _held = True
        return
    _held = False
    raise KeyboardInterrupt


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Within (main thread only; other threads never receive signals): an interrupt waits for the end."""
    global _depth, _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held:
            _held = False
            raise KeyboardInterrupt


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Within (main thread only): Ctrl-C goes through :func:`interrupt`; the previous handler comes back."""
    global _held
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _held = False


def held() -> bool:
    """An interrupt is waiting for the current critical section to end."""
    return _held


__all__ = ["critical", "handling", "held", "interrupt"]
