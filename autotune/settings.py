"""Run settings: one validated object that the CLI, the Python API and `resume` all build.

Every check here runs before a run folder is created, so a bad setting costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .schema import BY_NAME, SETTINGS, check_name

MODES = BY_NAME["mode"].choices
#: how trials are scheduled: ``async`` starts a trial the moment a slot frees; ``rounds`` runs
#: AutoDL Finetuner's synchronous generations (each round waits for its slowest trial)
ASYNC, ROUNDS = "async", "rounds"
SCHEDULES = BY_NAME["schedule"].choices
DEFAULT_SCHEDULE = BY_NAME["schedule"].default
#: Population-Based explore and exploit rules (see autotune.evaluators.explore and .pbt)
PBT_EXPLORE_RULES = BY_NAME["pbt_explore"].choices
PBT_EXPLOIT_RULES = BY_NAME["pbt_exploit"].choices
DEFAULT_PBT_EXPLORE = BY_NAME["pbt_explore"].default
DEFAULT_PBT_EXPLOIT = BY_NAME["pbt_exploit"].default


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
        check_name(self.name)
        for setting in SETTINGS:  # the declared rules (autotune.schema), the same for every way in
            setattr(self, setting.name, setting.check(getattr(self, setting.name)))
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
