"""The Python API: :func:`run` a search, :func:`resume` an interrupted one, :func:`load` a finished one.

Everything a user can get wrong is checked before the run folder is created; a run that cannot start
(no Ray, impossible resources) removes the folder it made, so bad input leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from .artifacts import check_uri
from .driver import Driver, ProgressFn, RunContext
from .errors import AutotuneError, ConfigError, RunInterrupted, SearchSpaceError, StoreWriteError, TrialError
from .evaluators import make_evaluator
from .executors import Executor, make_executor
from .liveness import DRIVER_ATTR, driver_alive
from .results import Result, load_result, locate_run, write_run_file
from .samplers import check_sampler_options, make_sampler
from .schema import SETTINGS, Kind, Setting
from .settings import ROUNDS, RunSettings
from .space import SearchSpace, SpaceFile, load_space_file
from .statuses import CREATED, RUN_COMPLETED, RUNNING
from .stopping import make_rule
from .store import Store, absolute_url, redact_url, sqlite_url
from .targets import TrialTarget, parse_target

DEFAULT_OUTPUT = "runs"
SpaceLike = str | os.PathLike[str] | SearchSpace | SpaceFile | Mapping[str, Any]


def _as_space(space: SpaceLike) -> SpaceFile:
    """The space file behind ``space=``: a path is read, a dict parsed; a bare SearchSpace presets nothing."""
    if isinstance(space, SpaceFile):
        return space
    if isinstance(space, SearchSpace):
        return SpaceFile(space)
    if isinstance(space, Mapping):
        return SpaceFile.from_dict(dict(space))
    if isinstance(space, (str, os.PathLike)):
        return load_space_file(space)
    raise SearchSpaceError(f"space must be a YAML path, a dict, a SearchSpace or a SpaceFile, got {type(space).__name__}")


def prepare(
    objective_or_script: str | Callable[..., Any] | None = None,
    *,
    space: SpaceLike,
    sampler: str | None = None,
    evaluator: str | None = None,
    rounds: int | None = None,
    popsize: int | None = None,
    metric: str | None = None,
    mode: str | None = None,
    output: str | os.PathLike[str] = DEFAULT_OUTPUT,
    name: str | None = None,
    seed: int | None = None,
    budget: float | None = None,
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    trial_timeout: float | None = None,
    time_budget: float | None = None,
    max_retries: int | None = None,
    top_fraction: float | None = None,
    keep_checkpoints: int | None = None,
    artifacts: str | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    script_args: tuple[str, ...] = (),
    schedule: str | None = None,
    early_stop: str | None = None,
    early_stop_options: Mapping[str, Any] | None = None,
    pbt_explore: str | None = None,
    pbt_exploit: str | None = None,
    quantile_fraction: float | None = None,
) -> tuple[RunSettings, SpaceFile, TrialTarget, Path]:
    """Validate everything a run needs, without creating anything.

    Every setting of :mod:`autotune.schema` is a keyword here: what the arguments leave as None the space
    file fills in (``defaults:``, or its top-level ``metric``, ``mode`` and ``budget``), then the schema's
    default; ``RunSettings`` checks the result by the schema's rules.
    """
    sp = _as_space(space)
    if objective_or_script is None:
        if not sp.trial:
            raise ConfigError("no trial to run: pass a script or objective, or set `trial:` in the space file")
        try:
            target = parse_target(sp.trial, script_args=script_args)
        except TrialError as e:  # say where the path came from: it is relative to the space file
            raise TrialError(f"{e} (the `trial:` of {sp.source or 'the space'}; a relative path there is "
                             "taken from the space file's folder)") from None
    else:
        target = parse_target(objective_or_script, script_args=script_args)
    arguments = locals()
    given = {s.name: arguments[s.name] for s in SETTINGS}
    res = dict(resources or {})
    for key, setting in (("cpu", "cpus_per_trial"), ("gpu", "gpus_per_trial")):  # resources={"cpu": 2}
        amount = res.pop(key, res.pop(key.upper(), None))
        if amount is not None and given[setting] is not None and amount != given[setting]:
            raise ConfigError(f"{setting}={given[setting]!r} and resources[{key!r}]={amount!r} disagree: give one")
        given[setting] = given[setting] if given[setting] is not None else amount
    values = {s.name: _setting_value(s, given[s.name], sp) for s in SETTINGS}
    run_name = name if name is not None else f"{_stem(space)}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings = RunSettings(
        name=run_name,
        **values,
        resources_per_trial={k: float(v) for k, v in res.items()},
        address=address,
        artifacts=check_uri(artifacts) if artifacts else None,
    )
    for key in ("cpus_per_trial", "gpus_per_trial"):
        setattr(settings, key, float(getattr(settings, key)))
    make_rule(settings.early_stop, settings.early_stop_options)  # its options are checked before anything runs
    run_dir = Path(output) / settings.name
    for folder in (Path(output), run_dir):
        if folder.exists() and not folder.is_dir():
            raise ConfigError(f"{folder} is a file, not a folder: choose another --output or --name")
    if run_dir.exists() and any(run_dir.iterdir()):
        if (run_dir / "run.json").exists():
            raise ConfigError(f"run folder {run_dir} already exists; continue it with: autotune resume {run_dir}")
        raise ConfigError(f"{run_dir} already exists and is not empty (not a run folder): choose another --name "
                          f"or --output")
    check_sampler_options(settings.sampler, settings.sampler_options)  # before a `seed` option collides
    make_sampler(settings.sampler, sp.space, settings.popsize, seed=settings.seed, **settings.sampler_options)
    return settings, sp, target, run_dir


def _setting_value(setting: Setting, given: Any, sp: SpaceFile) -> Any:
    """A setting's value for a new run: the argument, else the space file's, else the schema's default."""
    if setting.file == "top":
        preset = getattr(sp, setting.name)
    else:
        preset = sp.defaults.get(setting.name) if setting.file == "defaults" else None
    if setting.kind is Kind.OPTIONS:  # the file's options, with the arguments' on top
        return {**(preset or {}), **(given or {})} if isinstance(given or {}, Mapping) else given
    value = given if given is not None else preset if preset is not None else setting.default
    return setting.check(value)


def _stem(space: Any) -> str:
    if isinstance(space, (str, os.PathLike)):
        return Path(space).stem
    return "run"


def _build(ctx: RunContext, fixed: Mapping[str, Any], executor: Executor | str, progress: ProgressFn | None) -> Driver:
    """The driver of a run; ``fixed`` is the space file's values passed to every trial."""
    s = ctx.settings
    sampler = make_sampler(s.sampler, ctx.space, s.popsize, seed=s.seed, **s.sampler_options)
    pbt = dict(space=ctx.space, explore=s.pbt_explore, exploit=s.pbt_exploit, quantile_fraction=s.quantile_fraction,
               seed=s.seed) if s.evaluator == "pbt" else {}
    evaluator = make_evaluator(s.evaluator, budget=s.budget, mode=s.mode, timeout=s.trial_timeout,
                               fixed=fixed, top_fraction=s.top_fraction, **pbt)
    if isinstance(executor, str):
        if executor == "ray":
            executor = make_executor("ray", address=s.address, cpus_per_trial=s.cpus_per_trial,
                                     gpus_per_trial=s.gpus_per_trial, resources_per_trial=s.resources_per_trial,
                                     max_workers=s.popsize if s.schedule == ROUNDS else s.rounds * s.popsize,
                                     max_retries=s.max_retries)
        else:
            executor = make_executor(executor)
    return Driver(ctx, sampler, evaluator, executor, progress)


def run(
    objective_or_script: str | Callable[..., Any] | None = None,
    *,
    space: SpaceLike,
    storage: str | None = None,
    executor: Executor | str = "ray",
    progress: ProgressFn | None = None,
    **options: Any,
) -> Result:
    """Run a search and return its :class:`Result`.

    ``objective_or_script``: a Python function ``objective(config, trial)``, a ``file.py:function``
    or ``module:function`` string, or a script path (AutoDL Finetuner protocol); None takes the space
    file's ``trial:``.  Defaults: sampler ``pshe2``, evaluator ``pbt``, 10 rounds x population 5,
    mode ``max``, ``schedule="async"`` (a trial starts the moment a slot frees; ``"rounds"`` waits
    for each round's slowest trial, as AutoDL Finetuner did); the space file's ``defaults:`` override these, explicit arguments override both.
    ``time_budget``: seconds of search after which no trial starts; the trials running then finish
    (and may still be pruned), and the run completes with fewer than ``rounds x popsize`` trials, as
    Optuna's ``timeout`` does.  Counted from when the driver starts (again from the resume, for a
    resumed run).  ``resources``: ``{"cpu": 1, "gpu": 0.25, "<custom>": 1}`` per trial.  ``storage``: a database
    URL (default: SQLite in the run folder).
    """
    _check_options(options)
    settings, space_file, target, run_dir = prepare(objective_or_script, space=space, **options)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the run folder {run_dir}: {e.strerror or e}") from None
    storage = absolute_url(storage) if storage else None  # run.json must work from any directory
    url = storage or sqlite_url(run_dir)
    store: Store | None = None
    run_id: int | None = None
    try:
        store = Store(url)
        run_id = store.create_run(
            settings.name,
            settings.mode,
            {
                "settings": settings.to_dict(),
                "space": space_file.to_dict(),  # the whole file: resume and the dashboard read it back
                "target": target.to_dict(),
                "created": time.time(),
                "status": CREATED,
                "run_dir": str(run_dir.resolve()),
            },
        )
        write_run_file(run_dir, settings.name, None if storage is None else redact_url(url))
        ctx = RunContext(store, run_id, run_dir, settings, space_file.space, target)
        _build(ctx, space_file.fixed, executor, progress).run()
    except (RunInterrupted, StoreWriteError):
        raise  # resumable: keep everything
    except AutotuneError:
        # A run that failed before any trial started (no Ray, impossible resources, a name already taken
        # in a shared database) leaves nothing behind: no folder, no run in the database.
        if not _recorded_a_trial(store, run_id):
            if store is not None and run_id is not None and storage is not None:
                with contextlib.suppress(AutotuneError):
                    store.delete_run(run_id)
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return load_result(run_dir, storage)


def _check_options(options: Mapping[str, Any]) -> None:
    """A misspelt keyword names itself and its likely meaning, not an internal function."""
    known = [p for p in inspect.signature(prepare).parameters if p not in ("objective_or_script", "space")]
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; the options are: {', '.join(known)}"
            raise TypeError(f"autotune.run() got an unexpected keyword argument {key!r}{hint}")


def _recorded_a_trial(store: Store | None, run_id: int | None) -> bool:
    """Whether the run holds any trial (when in doubt, yes: then nothing is deleted)."""
    if store is None or run_id is None:
        return False
    try:
        return store.n_trials(run_id) > 0
    except AutotuneError:
        return True


def resume(
    run_dir: str | os.PathLike[str],
    *,
    storage: str | None = None,
    address: str | None = None,
    executor: Executor | str = "ray",
    progress: ProgressFn | None = None,
    objective: Callable[..., Any] | None = None,
) -> Result:
    """Continue an interrupted run where it stopped: no finished trial lost, none run twice.

    ``objective``: the run's objective function, needed only when it cannot be imported again (it was
    defined in the script that started the run, or is a lambda).
    """
    run_dir = Path(run_dir)
    store, run_id, name = locate_run(run_dir, storage)
    attrs = store.attrs(run_id)
    if attrs.get("status") == RUNNING and driver_alive(attrs):
        info = attrs.get(DRIVER_ATTR) or {}
        raise ConfigError(f"run {name!r} is still running (driver pid {info.get('pid')} on {info.get('host')}); "
                          f"stop that driver (Ctrl-C) before resuming the run")
    if attrs.get("status") == RUN_COMPLETED:  # nothing left to run: no objective, executor or Ray needed
        return load_result(run_dir, storage)
    settings = RunSettings.from_dict(attrs["settings"])
    if address is not None:
        settings.address = address
    space_file = SpaceFile.from_dict(attrs["space"])  # the whole file, as every run folder records it
    target = TrialTarget.from_dict(attrs["target"], objective)
    ctx = RunContext(store, run_id, run_dir, settings, space_file.space, target)
    _build(ctx, space_file.fixed, executor, progress).run()
    return load_result(run_dir, storage)


def load(run_dir: str | os.PathLike[str], storage: str | None = None) -> Result:
    """Open a run folder as a :class:`Result` (finished or not)."""
    return load_result(run_dir, storage)
