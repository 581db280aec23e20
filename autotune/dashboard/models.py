"""The dashboard API's response shapes; FastAPI turns them into the OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from ..errors import AutotuneError
from ..schema import BY_NAME, DASHBOARD_KEYS, MAX_NAME_BYTES, NAME_FORBIDDEN, Kind, Setting, check_name


class ErrorBody(BaseModel):
    detail: Any = Field(description="what was wrong with the request")


class RunSummary(BaseModel):
    id: str = Field(description="the name the run is served under (its run name, or NAME~2 on a clash)")
    name: str
    status: str = Field(description="created, running, completed, interrupted or failed")
    sampler: str | None
    evaluator: str | None
    metric: str
    mode: Literal[BY_NAME["mode"].choices]  # type: ignore[valid-type]
    rounds: int | None
    popsize: int | None
    schedule: Literal[BY_NAME["schedule"].choices] = Field(  # type: ignore[valid-type]
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
    mode: Literal[BY_NAME["mode"].choices]  # type: ignore[valid-type]
    version: str
    trials: list[Trial]


class Tallies(BaseModel):
    """Each finished trial's status, value and end, one list per field (the same order): what the page draws
    its first charts from at once, cheap to read and send while the whole trials list is on its way."""

    run: str
    version: str
    trial_id: list[int]
    status: list[str]
    value: list[float | None]
    ended: list[float | None]


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


class SettingInfo(BaseModel):
    """A run setting as autotune.schema declares it: what the start form offers and checks."""

    name: str
    flag: str = Field(description="the `autotune run` option")
    kind: Literal["integer", "number", "choice", "text", "options"]
    rule: str = Field(description="what a value must be, as the error messages say it")
    help: str
    default: Any = Field(description="the default of a new run when neither the space file nor the request sets it")
    choices: list[str] = Field(description="a choice's canonical values (empty for other kinds)")
    low: float | None
    high: float | None
    low_open: bool = Field(description="the value must be > low (else >= low)")
    high_open: bool
    nullable: bool = Field(description="whether it may be unset")
    in_start_form: bool = Field(description="whether POST /api/runs takes it")


def setting_info(setting: Setting) -> dict[str, Any]:
    return {"name": setting.name, "flag": setting.flag, "kind": setting.kind.value, "rule": setting.rule(),
            "help": setting.help, "default": setting.default, "choices": list(setting.choices), "low": setting.low,
            "high": setting.high, "low_open": setting.low_open, "high_open": setting.high_open,
            "nullable": setting.nullable, "in_start_form": setting.in_dashboard}


def _checked(setting: Setting) -> Any:
    """A start request's field for a setting: checked by the setting's own rule (the same message as the
    command line's), its range in the OpenAPI document; absent means the space file's value."""
    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            return setting.check(value)
        except AutotuneError as e:
            raise ValueError(str(e)) from None

    if setting.kind is Kind.CHOICE:
        base: Any = Literal[setting.choices]  # type: ignore[valid-type]
    else:
        base = int if setting.kind is Kind.INT else float
    bounds: dict[str, float] = {}
    if setting.low is not None:
        bounds["gt" if setting.low_open else "ge"] = setting.low
    if setting.high is not None:
        bounds["lt" if setting.high_open else "le"] = setting.high
    return (Annotated[base | None, BeforeValidator(check)], Field(None, description=setting.help, **bounds))


def _name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a run name is a string, but got {value!r}")
    try:
        return check_name(value)
    except AutotuneError as e:
        raise ValueError(str(e)) from None


#: a new search from a space file on the server's storage (the file's `trial:` is the trial); its settings
#: are the schema's that the start form offers (autotune.schema: `in_dashboard`)
StartRequest = create_model(
    "StartRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__="A new search from a space file on the server's storage (the file's `trial:` is the trial).",
    space=(str, Field(min_length=1, max_length=1000, description="one of GET /api/control's spaces")),
    name=(Annotated[str | None, BeforeValidator(lambda v: v if v is None else _name(v))],
          Field(None, description="the run name (default SPACE-TIMESTAMP): a folder name, at most "
                                  f"{MAX_NAME_BYTES} bytes, without control characters or {NAME_FORBIDDEN[:-1]}")),
    **{key: _checked(BY_NAME[key]) for key in DASHBOARD_KEYS},
)


LineageNode.model_rebuild()
