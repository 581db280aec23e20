"""The dashboard API's response shapes; FastAPI turns them into the OpenAPI document."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was wrong with the request")


class RunSummary(BaseModel):
    id: str = Field(description="the name the run is served under (its run name, or NAME~2 on a clash)")
    name: str
    status: str = Field(description="created, running, completed, interrupted or failed")
    sampler: Optional[str]
    evaluator: Optional[str]
    metric: str
    mode: Literal["min", "max"]
    rounds: Optional[int]
    popsize: Optional[int]
    round: Optional[int] = Field(description="the round the driver is in or last finished")
    trials_total: int
    trials_done: int
    trials_failed: int
    trials_stopped: int
    trials_running: int
    best_value: Optional[float]
    best_trial: Optional[int]
    started: Optional[float] = Field(description="unix time the run was created")
    finished: Optional[float]
    updated: Optional[float] = Field(description="unix time the latest trial ended")
    source: str = Field(description="the run folder, or the database URL with its password hidden")


class RunList(BaseModel):
    runs: list[RunSummary]
    problems: list[str] = Field(description="sources that could not be read, one line each")


class ParamInfo(BaseModel):
    name: str
    type: str
    low: Optional[float]
    high: Optional[float]
    log: bool
    choices: Optional[list[Any]]


class BestConfig(BaseModel):
    trial_id: int
    round: int
    value: Optional[float]
    config: dict[str, Any]
    yaml: str = Field(description="the config as YAML, ready to paste into a training config")


class RunDetail(RunSummary):
    settings: dict[str, Any]
    params: list[ParamInfo]
    fixed: dict[str, Any]
    best: Optional[BestConfig]
    version: str


class Report(BaseModel):
    step: Optional[int]
    time: Optional[float]
    metrics: dict[str, Any] = Field(description="metric name -> number, or 'nan'/'inf'/'-inf'")


class Trial(BaseModel):
    trial_id: int
    round: int
    status: str = Field(description="completed, failed, stopped; running or pending for planned trials")
    reason: Optional[str]
    value: Optional[float]
    config: dict[str, Any]
    budget: Optional[float]
    parent_id: Optional[int] = Field(description="the trial whose checkpoint this one started from")
    planned_parent_id: Optional[int]
    parent_note: Optional[str]
    parent_step: Optional[int]
    checkpoint: Optional[str]
    checkpoint_step: Optional[int]
    started: Optional[float]
    ended: Optional[float]
    duration_s: Optional[float]
    node: Optional[str]
    gpu_ids: list[str]
    attempts: int
    retry_note: Optional[str]
    reports: list[Report]
    has_log: bool


class TrialDetail(Trial):
    log_tail: Optional[str]
    trial_dir: Optional[str]
    parent_checkpoint: Optional[str]
    parent_hash: Optional[str]
    checkpoint_hash: Optional[str]


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
    value: Optional[float]
    parent_id: Optional[int]
    note: Optional[str] = Field(description="why the planned parent was not used, if it was not")
    config: dict[str, Any]
    children: list["LineageNode"]


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
    size: Optional[int]


class Version(BaseModel):
    run: str
    version: str = Field(description="changes whenever the run's data does; poll it, refetch on change")
    status: str


LineageNode.model_rebuild()
