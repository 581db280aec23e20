"""Run settings: one validated object that the CLI, the Python API and `resume` all build.

Every check here runs before a run folder is created, so a bad setting costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError

MODES = ("min", "max")
#: how trials are scheduled: ``async`` starts a trial the moment a slot frees; ``rounds`` runs
#: AutoDL Finetuner's synchronous generations (each round waits for its slowest trial)
ASYNC, ROUNDS = "async", "rounds"
SCHEDULES = (ASYNC, ROUNDS)
DEFAULT_SCHEDULE = ASYNC
#: Population-Based explore and exploit rules (see autotune.evaluators.explore and .pbt)
PBT_EXPLORE_RULES = ("perturb", "trust-gp", "sampler")
PBT_EXPLOIT_RULES = ("quantile", "round-robin")
DEFAULT_PBT_EXPLORE = "perturb"
DEFAULT_PBT_EXPLOIT = "quantile"


#: a run name is a folder name (file systems allow 255 bytes) and a database key
MAX_NAME_BYTES = 200


@dataclass
class RunSettings:
    """How a search runs.  Defaults follow PaddleHub's AutoDL Finetuner: pshe2, pbt, 10 rounds x 5."""

    name: str
    metric: str
    mode: str = "max"
    sampler: str = "pshe2"
    evaluator: str = "pbt"
    rounds: int = 10
    popsize: int = 5
    seed: int | None = None
    budget: float | None = None
    trial_timeout: float | None = None
    time_budget: float | None = None  # seconds: no trial starts after this much search time (see Driver)
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    resources_per_trial: dict[str, float] = field(default_factory=dict)
    address: str | None = None
    top_fraction: float = 0.5
    max_retries: int = 1
    keep_checkpoints: int | None = None
    artifacts: str | None = None  # object-store URI for trial folders (see autotune.artifacts)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    schedule: str = ROUNDS  # runs recorded before schedules existed ran in rounds; new runs get DEFAULT_SCHEDULE
    early_stop: str = "none"  # none | asha | median (see autotune.stopping)
    early_stop_options: dict[str, Any] = field(default_factory=dict)
    # Population-Based: how a replaced member's child gets its hyperparameters, who is replaced, and the
    # quantile; runs recorded before these existed ran the sampler with round-robin parents, which these
    # defaults keep (new runs get DEFAULT_PBT_EXPLORE and DEFAULT_PBT_EXPLOIT)
    pbt_explore: str = "sampler"
    pbt_exploit: str = "round-robin"
    quantile_fraction: float = 0.25

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("a run needs a non-empty name")
        bad = set(self.name) & set('/\\:*?"<>|\0')
        if bad or self.name in (".", ".."):
            raise ConfigError(f"run name {self.name!r} may not contain {''.join(sorted(bad)) or 'only dots'}")
        if len(self.name.encode()) > MAX_NAME_BYTES:  # it names a folder: file systems stop at 255 bytes
            raise ConfigError(f"run name is {len(self.name.encode())} bytes long; at most {MAX_NAME_BYTES} please")
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError("a metric name is needed (--metric, or `metric:` in the space file)")
        if self.early_stop not in ("none", "asha", "median"):
            raise ConfigError(f"early_stop must be 'none', 'asha' or 'median', but got {self.early_stop!r}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be 'async' or 'rounds', but got {self.schedule!r}")
        if self.pbt_explore not in PBT_EXPLORE_RULES:
            raise ConfigError(f"pbt_explore must be one of {', '.join(map(repr, PBT_EXPLORE_RULES))}, "
                              f"but got {self.pbt_explore!r}")
        if self.pbt_exploit not in PBT_EXPLOIT_RULES:
            raise ConfigError(f"pbt_exploit must be one of {', '.join(map(repr, PBT_EXPLOIT_RULES))}, "
                              f"but got {self.pbt_exploit!r}")
        q = self.quantile_fraction
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 0.5:
            raise ConfigError(f"quantile_fraction must lie in (0, 0.5], but got {q!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be 'min' or 'max', but got {self.mode!r}")
        for key in ("rounds", "popsize"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1, but got {value!r}")
        _positive("cpus_per_trial", self.cpus_per_trial, allow_zero=True)
        _positive("gpus_per_trial", self.gpus_per_trial, allow_zero=True)
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ConfigError(f"gpus_per_trial above 1 must be a whole number, but got {self.gpus_per_trial}")
        if self.budget is not None:
            _positive("budget", self.budget)
        if self.trial_timeout is not None:
            _positive("trial_timeout", self.trial_timeout)
        if self.time_budget is not None:
            _positive("time_budget", self.time_budget)
        if not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction must lie in (0, 1], but got {self.top_fraction}")
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, but got {self.max_retries!r}")
        kc = self.keep_checkpoints
        if kc is not None and (isinstance(kc, bool) or not isinstance(kc, int) or kc < 1):
            raise ConfigError(f"keep_checkpoints must be an integer >= 1 (or unset, to keep all), but got {kc!r}")
        for k, v in self.resources_per_trial.items():
            _positive(f"resource {k!r}", v, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSettings":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _positive(key: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        want = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} must be a number {want}, but got {value!r}")
