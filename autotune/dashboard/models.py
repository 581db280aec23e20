"""The dashboard API's response shapes; FastAPI turns them into the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was wrong with the request")


class RunSummary(BaseModel):
    id: str = Field(description="the name the run is served under (its run name, or NAME~2 on a clash)")
    name: str
    status: str = Field(description="created, running, completed, interrupted or failed")
    sampler: str | None
    evaluator: str | None
    metric: str
    mode: Literal["min", "max"]
    rounds: int | None
    popsize: int | None
    schedule: Literal["async", "rounds"] = Field(
        description="async: a trial starts the moment a slot frees, and a trial's `round` is its generation "
                    "(its lineage depth under Population-Based training, else its ordinal // popsize), which "
                    "can pass `rounds`; rounds: synchronous rounds, `round` is the round")
    round: int | None = Field(description="the round the driver is in or last finished (async: the deepest "
                                          "generation in flight)")
    trials_total: int
    trials_done: int
    trials_failed: int
    trials_pruned: int = Field(description="stopped early by the run's early-stopping rule (Optuna's PRUNED); "
                                           "not counted as failed")
    trials_stopped: int
    trials_running: int
    best_value: float | None
    best_trial: int | None
    started: float | None = Field(description="unix time the run was created")
    finished: float | None
    updated: float | None = Field(description="unix time the latest trial ended")
    source: str = Field(description="the run folder, or the database URL with its password hidden")


class RunList(BaseModel):
    runs: list[RunSummary]
    problems: list[str] = Field(description="sources that could not be read, one line each")


class ParamInfo(BaseModel):
    name: str
    type: str
    low: float | None
    high: float | None
    log: bool
    choices: list[Any] | None


class BestConfig(BaseModel):
    trial_id: int
    round: int
    value: float | None
    config: dict[str, Any]
    yaml: str = Field(description="the config as YAML, ready to paste into a training config")


class ControlEvent(BaseModel):
    action: str = Field(description="stop, resume or start")
    at: float = Field(description="unix time of the request")
    client: str = Field(description="who asked: the client's address and user agent")
    job_id: str | None = None


class RunDetail(RunSummary):
    control: list[ControlEvent] = Field(default_factory=list,
                                        description="stop/resume/start requests made through the dashboard")
    settings: dict[str, Any]
    params: list[ParamInfo]
    fixed: dict[str, Any]
    best: BestConfig | None
    version: str


class Report(BaseModel):
    step: int | None
    time: float | None
    metrics: dict[str, Any] = Field(description="metric name -> number, or 'nan'/'inf'/'-inf'")


class Trial(BaseModel):
    trial_id: int
    round: int
    status: str = Field(description="completed, failed, pruned, stopped; running or pending for planned trials")
    reason: str | None
    value: float | None
    config: dict[str, Any]
    budget: float | None
    parent_id: int | None = Field(description="the trial whose checkpoint this one started from")
    planned_parent_id: int | None
    parent_note: str | None
    parent_step: int | None
    checkpoint: str | None
    checkpoint_step: int | None
    checkpoint_removed: bool = Field(description="deleted from disk by keep_checkpoints; the path stays as lineage")
    member: int | None = Field(default=None, description="Population-Based: the population member this trial is a step of")
    in_place: bool = Field(default=False, description="continued from its parent's live state in the same worker "
                                                      "(its parent checkpoint is recorded as a load from disk would be)")
    started: float | None
    ended: float | None
    duration_s: float | None
    node: str | None
    gpu_ids: list[str]
    attempts: int
    retry_note: str | None
    reports: list[Report]
    has_log: bool


class TrialDetail(Trial):
    log_tail: str | None
    trial_dir: str | None
    parent_checkpoint: str | None
    parent_hash: str | None
    checkpoint_hash: str | None


class TrialList(BaseModel):
    run: str
    metric: str
    mode: Literal["min", "max"]
    version: str
    trials: list[Trial]


class LineageNode(BaseModel):
    trial_id: int
    round: int
    status: str
    value: float | None
    parent_id: int | None
    note: str | None = Field(description="why the planned parent was not used, if it was not")
    config: dict[str, Any]
    children: list[LineageNode]


class Lineage(BaseModel):
    run: str
    roots: list[LineageNode]
    edges: int
    nodes: int


class LogText(BaseModel):
    trial_id: int
    source: Literal["file", "record", "none"] = Field(
        description="file: the trial's trial.log; record: the tail kept in the database; none: no log")
    text: str
    truncated: bool
    size: int | None


class Version(BaseModel):
    run: str
    version: str = Field(description="changes whenever the run's data does; poll it, refetch on change")
    status: str


class ControlInfo(BaseModel):
    enabled: bool = Field(description="whether this dashboard may stop, resume and start searches")
    spaces: list[str] = Field(description="space files a new search may start from")
    output: str | None = Field(description="where new searches write their run folders")


class ControlResult(BaseModel):
    run: str
    action: Literal["stop", "resume", "start"]
    job_id: str = Field(description="the Ray job that carries it out")


class StartRequest(BaseModel):
    """A new search from a space file on the server's storage (the file's `trial:` is the trial)."""

    model_config = {"extra": "forbid"}
    space: str = Field(min_length=1, max_length=1000, description="one of GET /api/control's spaces")
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r'^[^\x00-\x1f/\\:*?"<>|]+$')
    sampler: Literal["hazero", "pshe2", "bayes", "bayes-gp", "random"] | None = None
    evaluator: Literal["full", "pbt"] | None = None
    schedule: Literal["async", "rounds"] | None = None
    rounds: int | None = Field(None, ge=1, le=100_000)
    popsize: int | None = Field(None, ge=1, le=100_000)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    cpus_per_trial: float | None = Field(None, gt=0, le=1024)
    gpus_per_trial: float | None = Field(None, ge=0, le=64)


LineageNode.model_rebuild()
