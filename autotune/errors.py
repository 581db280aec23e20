"""The autotune error hierarchy.

Every error a user can cause derives from :class:`AutotuneError`; the CLI prints such an error as one
line on stderr and exits non-zero.  Anything else escaping is a bug in autotune and keeps its traceback.
"""

from __future__ import annotations


class AutotuneError(Exception):
    """Base class of every error a user can cause (bad input, bad settings, unusable storage)."""


class SearchSpaceError(AutotuneError):
    """A search-space file or object is invalid: names the file, the parameter and what was expected."""


class ConfigError(AutotuneError):
    """Run settings are invalid (unknown sampler, population of 0, a mode other than min/max, ...)."""


class SamplerError(AutotuneError):
    """A sampler cannot be built or cannot continue."""


class SamplerProtocolError(SamplerError):
    """A sampler's ask/tell protocol was misused (tell for an unknown id, telling twice)."""


class TrialError(AutotuneError):
    """A trial target cannot be loaded or a trial program misused the reporting API."""


class StoreError(AutotuneError):
    """The results database cannot be opened or read, or a run cannot be found in it."""


class DiskFullError(StoreError):
    """No space left for results or checkpoints; the run stops, resumable once space is freed."""


class StoreWriteError(StoreError):
    """The results database failed while a run went on (locked by another process past the retries,
    its server gone, an I/O error): the run stopped as interrupted, and ``autotune resume`` continues
    it once the database works again.  No finished trial is lost and none runs twice."""


class ExecutorError(AutotuneError):
    """Trials cannot be executed (cannot join the Ray cluster, resources no node has, ...)."""


class RunInterrupted(AutotuneError):
    """The run was stopped by the user (Ctrl-C); it is resumable with `autotune resume`."""


class MissingExtraError(AutotuneError, ImportError):
    """A feature needs a package that only one of autotune's extras installs; says which extra."""

    def __init__(self, what: str, extra: str) -> None:
        self.extra = extra
        super().__init__(f"{what} needs autotune's {extra!r} extra: pip install \"autotune[{extra}]\" "
                         f"(from a checkout: pip install -c .ci/constraints.txt -e \".[{extra}]\")")
