"""Executors run trial specs.  Only :mod:`~autotune.executors.ray_executor` and its helpers (``ray_auth``,
``sigterm``, ``local_ray``) import ``ray``, lazily."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Executor
from .local import LocalExecutor


def make_executor(kind: str = "ray", **kwargs: Any) -> Executor:
    """``ray`` (default: local Ray or ``address``) or ``local`` (in-process, for tests)."""
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(**kwargs)
    raise ConfigError(f"unknown executor {kind!r}: 'ray' or 'local', or an Executor instance")


__all__ = ["Executor", "LocalExecutor", "make_executor"]
