"""SIGTERM handled as Ctrl-C while a run's driver runs: ``autotune stop`` (Ray's ``stop_job``) and ``kill``
leave an interrupted, resumable run, not a failed one.

``ray.init`` installs its own SIGTERM handler (``sys.exit``) through ``ray._private.utils.set_sigterm_handler``,
a private function; while :func:`sigterm_as_interrupt` is active that installation is skipped.  Being
private, it may change: ``tests/test_sigterm.py`` fails when Ray stops calling it or renames it.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterator

from ..interrupts import interrupt

#: the module and function through which Ray installs its SIGTERM handler
RAY_MODULE, RAY_FUNCTION = "ray._private.utils", "set_sigterm_handler"


class _Terminated:
    """The SIGTERM handler of ``run`` and ``resume``: the first SIGTERM raises KeyboardInterrupt in the
    main thread, as Ctrl-C does (at a safe point, see :mod:`autotune.interrupts`); more are ignored, so
    that the driver can record its stopped trials."""

    def __init__(self) -> None:
        self.fired = False

    def __call__(self, signum: int, frame: Any) -> None:
        if not self.fired:
            self.fired = True
            interrupt(signum, frame)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[Callable[[Any], Any]]:
    """Within: SIGTERM (``autotune stop``, Ray's ``stop_job``, ``kill``) is handled like Ctrl-C.

    ``ray.init`` installs its own SIGTERM handler (``sys.exit``), which would mark the run failed;
    while this is active that installation is skipped.  Yields a wrapper for the progress callback
    that puts the handler back should anything else have replaced it (it runs in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda progress: progress
        return
    # Ctrl-C stops the run even when this process was started with SIGINT ignored (a background job of a
    # non-interactive shell inherits that), so `kill -INT` and a terminal's Ctrl-C always behave the same
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    handler = _Terminated()
    previous = signal.signal(signal.SIGTERM, handler)
    patched = None
    try:
        import importlib

        ray_utils = importlib.import_module(RAY_MODULE)  # private, hence the guard
        original = getattr(ray_utils, RAY_FUNCTION)

        def keep_ours(h: Any) -> None:
            if signal.getsignal(signal.SIGTERM) is not handler:
                original(h)

        setattr(ray_utils, RAY_FUNCTION, keep_ours)
        patched = (ray_utils, original)
    except (ImportError, AttributeError):
        pass

    def wrap(progress: Any) -> Any:
        def call(event: Any) -> Any:
            if signal.getsignal(signal.SIGTERM) is not handler and not handler.fired:
                signal.signal(signal.SIGTERM, handler)
            return progress(event)

        return call

    try:
        yield wrap
    finally:
        if patched is not None:
            setattr(patched[0], RAY_FUNCTION, patched[1])
        signal.signal(signal.SIGTERM, previous)


__all__ = ["RAY_FUNCTION", "RAY_MODULE", "sigterm_as_interrupt"]
