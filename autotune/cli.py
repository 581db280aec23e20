"""The ``autotune`` command line: run, resume, show, export, dashboard.

Every error a user can cause is one line on stderr and exit status 2; Ctrl-C leaves a resumable run
and exits 130.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import math
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import AutotuneError, RunInterrupted
from .events import ProgressEvent, RoundEnd, RoundStart, RunStart, TrialEnd, TrialStart
from .statuses import COMPLETED, FAILED, PRUNED, RUN_COMPLETED, RUNNING, STOPPED
from .schema import SETTINGS, Kind, Setting
from .settings import ASYNC

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line like every other autotune error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise AutotuneError(f"{self.prog}: {message}")


def _integer(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    return v


def _port(text: str) -> int:
    port = _integer(text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {port}")
    return port


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _resource(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=AMOUNT, got {text!r}")
    return key, _number(value)


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE, the value read as a YAML scalar (0.25, 3, true, null, text)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        return key.strip(), value


def _setting_type(setting: Setting) -> Any:
    """argparse's type for a setting: the text read and checked by the setting's declared rule."""
    def parse(text: str) -> Any:
        try:
            return setting.parse(text)
        except AutotuneError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = setting.name  # argparse names the type in some messages
    return parse


def _setting_help(setting: Setting) -> str:
    if setting.kind is Kind.OPTIONS:
        return f"{setting.help} (repeatable)"
    default = "unset" if setting.default is None else repr(setting.default)
    preset = {"defaults": "the space file's `defaults:`", "top": f"the space file's `{setting.name}:`"}.get(setting.file)
    return f"{setting.help}; {setting.rule()} (default: {preset + ', else ' if preset else ''}{default})"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """The options `run` and `submit` share: the trial, the space, the name and every run setting."""
    p.add_argument("trial", nargs="?", help="trial: script.py, file.py:function or module:function "
                   "(default: the space file's `trial:`)")
    p.add_argument("--space", required=True, help="search space YAML (autotune or PaddleHub format)")
    p.add_argument("--name", help="run name (default SPACE-TIMESTAMP)")
    for setting in SETTINGS:  # declared once, in autotune.schema
        if setting.kind is Kind.OPTIONS:
            p.add_argument(setting.flag, dest=setting.name, type=_option, action="append", default=[],
                           metavar=setting.value_name, help=_setting_help(setting))
        else:
            p.add_argument(setting.flag, dest=setting.name, type=_setting_type(setting), metavar=setting.value_name,
                           help=_setting_help(setting))
    p.add_argument("--resource", type=_resource, action="append", default=[], metavar="NAME=AMOUNT",
                   help="custom Ray resource per trial (repeatable)")
    p.add_argument("--artifacts", metavar="URI", help="keep trial folders (logs, checkpoints) in an object store: "
                   "s3://bucket/prefix, gs://..., file:///shared/path (default: in the run folder)")
    p.add_argument("--storage", help="results database URL (default: SQLite in the run folder)")


def _settings_of(a: argparse.Namespace) -> dict[str, Any]:
    """The run settings a parsed `run` or `submit` command line gives (None: not given)."""
    return {s.name: (dict(getattr(a, s.name)) or None) if s.kind is Kind.OPTIONS else getattr(a, s.name)
            for s in SETTINGS}


STORAGE_HELP = "results database URL, if not the run folder's (needed when run.json hides its password)"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="autotune", description="Hyperparameter search for fine-tuning, on Ray.")
    p.add_argument("--version", action="version", version=f"autotune {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("run", help="run a search",
                       usage="autotune run [TRIAL] --space FILE [options] [-- SCRIPT_ARGS...]",
                       epilog="Arguments after `--` are passed to every run of a script trial, before the "
                              "searched --NAME=VALUE flags (fixed settings, e.g. -- --epochs=3).")
    _add_run_options(r)
    r.add_argument("--output", default="runs", help="folder for run folders (default ./runs)")
    r.add_argument("--address", help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: local Ray)")
    r.add_argument("--executor", choices=["ray", "local"], default="ray", help=argparse.SUPPRESS)

    rs = sub.add_parser("resume", help="continue an interrupted run")
    rs.add_argument("run_dir")
    rs.add_argument("--storage", help=STORAGE_HELP)
    rs.add_argument("--address", help="Ray cluster to continue on")
    rs.add_argument("--executor", choices=["ray", "local"], default="ray", help=argparse.SUPPRESS)

    sh = sub.add_parser("show", help="print a run's trials and best trial (or list the runs of a folder)")
    sh.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                    help="run folders; a folder of run folders (e.g. runs/) lists its runs")
    sh.add_argument("--json", action="store_true",
                    help="print JSON for scripts: {best, trials} for one run, a list of those for several")
    sh.add_argument("--storage", help=STORAGE_HELP)

    ex = sub.add_parser("export", help="export a run's trial table")
    ex.add_argument("run_dir")
    ex.add_argument("--format", choices=["csv", "parquet"], type=str.lower,
                    help="csv or parquet (default: from --output's extension, else csv)")
    ex.add_argument("--output", help="file to write (default RUN_DIR/trials.FORMAT)")
    ex.add_argument("--storage", help=STORAGE_HELP)

    db = sub.add_parser("dashboard", help="serve the web dashboard of runs")
    db.add_argument("run_dirs", nargs="*", help="run folders, or folders of run folders (default ./runs)")
    db.add_argument("--storage", help="a database URL whose runs to serve")
    db.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default 127.0.0.1; 0.0.0.0 serves the network: add --token)")
    db.add_argument("--port", type=_port, default=8080, help="port (default 8080)")
    db.add_argument("--token", help="require this token (or AUTOTUNE_DASHBOARD_TOKEN)")
    db.add_argument("--control", action="store_true",
                    help="allow stopping, resuming and starting searches from the dashboard, as Ray Jobs "
                         "(needs --address; every such request needs the token)")
    db.add_argument("--address", help="with --control: the Ray head's job server, http://HEAD:8265")
    db.add_argument("--spaces", metavar="DIR", help="with --control: the folder of space files the dashboard "
                    "may start searches from, on the cluster's storage (default: none, so no new searches)")
    db.add_argument("--output", metavar="DIR", help="with --control: where searches started from the "
                    "dashboard write their run folders (default: the first run folder source)")
    _service_parsers(sub)
    return p


JOB_ADDRESS_HELP = "the Ray head's job server, http://HEAD:8265 (or RAY_API_SERVER_ADDRESS)"


def _service_parsers(sub: Any) -> None:
    """submit, jobs, logs, stop: searches as Ray Jobs on the cluster (see autotune.service)."""
    s = sub.add_parser("submit",
                       help="run a search on the cluster as a Ray Job, and return",
                       usage="autotune submit [TRIAL] --space FILE --address http://HEAD:8265 --output DIR "
                             "[run options] [-- SCRIPT_ARGS...]",
                       description="Submits `autotune run` with the same options as a Ray Job; the driver runs "
                                   "on the cluster. Prints the run name and the job id.")
    _add_run_options(s)
    s.add_argument("--address", help=JOB_ADDRESS_HELP)
    s.add_argument("--output", help="folder for run folders, an absolute path on the cluster's storage")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--upload", metavar="DIR", help="send DIR (default: the current folder) to the cluster as "
                       "the job's working_dir; the space and trial files must be inside it")
    where.add_argument("--cluster-dir", metavar="DIR", help="the project is already at DIR on storage the "
                       "cluster shares: upload nothing and run from there")
    s.add_argument("--upload-limit", type=_number, default=100.0, metavar="MIB",
                   help="refuse to upload more than this many MiB (default 100)")
    j = sub.add_parser("jobs", help="list the searches submitted to the cluster")
    j.add_argument("--address", help=JOB_ADDRESS_HELP)
    j.add_argument("--json", action="store_true", help="print JSON")
    lg = sub.add_parser("logs", help="print a submitted search's output")
    lg.add_argument("name", metavar="NAME", help="run name (its newest job) or job id")
    lg.add_argument("--address", help=JOB_ADDRESS_HELP)
    lg.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    st = sub.add_parser("stop", help="stop a submitted search gracefully: it can be resumed")
    st.add_argument("name", metavar="NAME", help="run name or job id")
    st.add_argument("--address", help=JOB_ADDRESS_HELP)
    st.add_argument("--no-wait", action="store_true", help="return at once, without waiting for the job to end")


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Where the run lives, then a live status line on a terminal; otherwise (logs) a plain line per
    round, or per ``popsize`` finished trials when the schedule is asynchronous."""

    def __init__(self, stream: Any = None, mode: str = "max") -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.mode = mode
        self.t0 = time.time()
        self.round = 0
        self.rounds = 0
        self.total = self.done = self.failed = self.pruned = 0
        self.running = 0
        self.slots = 1
        self.every = 0  # asynchronous: a plain line each time this many more trials have ended
        self.best: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        if isinstance(event, RunStart):
            self._start(event)
            return
        if isinstance(event, RoundStart):
            self.round, self.rounds, self.total = event.round, event.rounds, event.trials
            self.done = self.total - event.todo
            self.slots = max(1, event.slots or 1)
            self.mode = event.mode
            self.failed = self.pruned = 0
        elif isinstance(event, TrialStart):
            self.running, self.slots, self.mode = event.running, event.slots, event.mode
        elif isinstance(event, TrialEnd):
            rec = event.record
            self.done = event.done if self.every else self.done + 1
            self.running = event.running
            self.failed += rec.status not in (COMPLETED, PRUNED)  # pruned is the rule's verdict, not a failure
            self.pruned += rec.status == PRUNED
            if rec.status == COMPLETED and rec.value is not None and (
                self.best is None or (rec.value > self.best.value if self.mode == "max" else rec.value < self.best.value)
            ):
                self.best = rec
        elif isinstance(event, RoundEnd):
            self.best = event.best or self.best
        if isinstance(event, RoundEnd):
            self.stream.write(("\r\033[K" if self.live else "") + self._round_line() + "\n")
        elif self.every and isinstance(event, TrialEnd) and (self.done % self.every == 0 or self.done == self.total):
            self.stream.write(("\r\033[K" if self.live else "") + self._trials_line() + "\n")
        elif self.live:
            self.stream.write("\r\033[K" + (self._async_line() if self.every else self._line()))
        else:
            return
        self.stream.flush()

    def _start(self, event: RunStart) -> None:
        if event.schedule == ASYNC:
            self.total, self.done, self.rounds = event.total, event.done, event.rounds
            self.every = max(1, self.total // max(1, self.rounds))
            what = f"{self.total} trials, asynchronous" + (f", continuing after {self.done}" if self.done else "")
        else:
            start = f", continuing at round {event.round + 1}" if event.round else ""
            what = f"{event.rounds} rounds{start}"
        self.stream.write(f"run folder {event.run_dir} ({what}); "
                          f"watch it with: autotune dashboard {shlex.quote(str(event.run_dir))}\n")
        self.stream.flush()

    def _best(self) -> str:
        return f"best {self.best.value:.4g} (trial {self.best.trial_id})" if self.best else "best -"

    def _round_line(self) -> str:
        return (f"round {self.round + 1}/{self.rounds}: {self.total} trials, {self._ended()}; "
                f"{self._best()}  [{time.time() - self.t0:.0f}s]")

    def _ended(self, live: bool = False) -> str:
        """The ended trials that did not complete: failed, and pruned apart (when any). ``live``: the
        status line's "failed N  pruned M" form."""
        if live:
            return f"failed {self.failed}" + (f"  pruned {self.pruned}" if self.pruned else "")
        return f"{self.failed} failed" + (f", {self.pruned} pruned" if self.pruned else "")

    def _trials_line(self) -> str:
        return (f"trials {self.done}/{self.total}: {self._ended()}; {self._best()}  "
                f"[{time.time() - self.t0:.0f}s]")

    def _async_line(self) -> str:
        queued = self.total - self.done - self.running
        return (f"trials {self.done}/{self.total}  running {self.running}  queued {queued}  "
                f"{self._ended(live=True)}  {self._best()}  [{time.time() - self.t0:.0f}s]")

    def _line(self) -> str:
        left = self.total - self.done
        running = min(self.slots, left)
        return (f"round {self.round + 1}/{self.rounds}  running {running}  queued {left - running}  "
                f"done {self.done - self.failed - self.pruned}  {self._ended(live=True)}  {self._best()}  [{time.time() - self.t0:.0f}s]")


# -- commands ------------------------------------------------------------------------------------
def _cmd_run(a: argparse.Namespace) -> int:
    from .api import run
    from .executors.sigterm import sigterm_as_interrupt

    with sigterm_as_interrupt() as guard:  # `autotune stop` (Ray's stop_job) sends SIGTERM: stop as Ctrl-C does
        result = _run_cli(run, a, guard(Progress()))
    _summary(result)
    return 0


def _run_cli(run: Any, a: argparse.Namespace, progress: Any) -> Any:
    return run(a.trial, space=a.space, output=a.output, name=a.name, address=a.address, resources=dict(a.resource),
               artifacts=a.artifacts, storage=a.storage, executor=a.executor, progress=progress,
               script_args=a.script_args, **_settings_of(a))


def _cmd_resume(a: argparse.Namespace) -> int:
    from .api import resume
    from .results import load_result
    from .executors.sigterm import sigterm_as_interrupt
    from .service import is_job_address

    if is_job_address(a.address):  # resume on the cluster, as a new Ray Job
        return _cmd_resume_job(a)
    if load_result(a.run_dir, a.storage).status == RUN_COMPLETED:
        print(f"run {a.run_dir} is already completed: nothing to resume", file=sys.stderr)
    with sigterm_as_interrupt() as guard:
        result = resume(a.run_dir, storage=a.storage, address=a.address, executor=a.executor,
                        progress=guard(Progress()))
    _summary(result)
    return 0


def _summary(result: Any) -> None:
    recs = result.records
    failed = sum(r.status == FAILED for r in recs)
    stopped = sum(r.status == STOPPED for r in recs)
    pruned = sum(r.status == PRUNED for r in recs)
    counts = f"{failed} failed" + (f", {pruned} pruned" if pruned else "") + (f", {stopped} stopped" if stopped else "")
    print(f"run {result.name}: {len(recs)} trials ({counts}), status {result.status}")
    if result.time_budget_spent is not None:
        print(f"its time budget ({result.settings.time_budget:g} s) ran out after {len(recs)} of "
              f"{result.settings.rounds * result.settings.popsize} planned trials")
    b = result.best
    if b is not None:
        print(f"best {result.settings.metric} = {b.value:.6g} (trial {b.trial_id}, "
              f"{_round_column(result.settings)[0]} {b.round}): "
              + json.dumps({k: b.config[k] for k in result.param_names if k in b.config}))
    print(f"results: {result.path}  (autotune show {result.path})")


def _cmd_show(a: argparse.Namespace) -> int:
    from .results import load_result, run_folders

    listed = {Path(d): run_folders(d) for d in a.run_dirs}
    for folder, runs in listed.items():
        if not runs:
            raise AutotuneError(f"{folder} is not an autotune run folder and holds none (no run.json in it or "
                                f"in its subfolders)")
    if a.json:
        single = len(a.run_dirs) == 1 and listed[Path(a.run_dirs[0])] == [Path(a.run_dirs[0])]
        if single:  # one run asked for by name: unreadable is an error
            print(json.dumps(_run_doc(load_result(a.run_dirs[0], a.storage)), default=str))
            return 0
        docs = []
        for runs in listed.values():
            for run in runs:  # a listing says which run cannot be read, as the table does, and goes on
                try:
                    docs.append(_run_doc(load_result(run, a.storage)))
                except AutotuneError as e:
                    docs.append({"name": run.name, "path": str(run), "status": "unreadable", "error": str(e)})
        print(json.dumps(docs, default=str))
        return 0
    first = True
    for folder, runs in listed.items():
        if not first:
            print()
        first = False
        if runs == [folder]:
            _show_run(load_result(folder, a.storage))
        else:
            _list_runs(folder, runs, a.storage)
    return 0


def _run_doc(r: Any) -> dict[str, Any]:
    return {"name": r.name, "path": str(r.path), "status": r.status, "metric": r.settings.metric,
            "mode": r.settings.mode, "best": r.best.to_dict() if r.best else None,
            "trials": [t.to_dict() for t in r.records],
            "running": [{**t, "status": RUNNING} for t in r.running]}


def _list_runs(folder: Path, runs: list[Path], storage: str | None) -> None:
    """One line per run of a folder of runs; a run that cannot be read says why instead of stopping the list."""
    from .results import load_result

    rows = []
    for run in runs:
        try:
            r = load_result(run, storage)
        except AutotuneError as e:
            rows.append([run.name, "unreadable", "", "", str(e)[:80]])
            continue
        b = r.best
        rows.append([r.name, r.status, str(len(r.records)), str(sum(t.status != COMPLETED for t in r.records)),
                     f"{r.settings.metric}={b.value:.4g} (trial {b.trial_id})" if b else "-"])
    _print_table(["run", "status", "trials", "failed", "best"], rows)
    print(f"\n{len(runs)} run{'' if len(runs) == 1 else 's'} in {folder}; one in full: autotune show {runs[-1]}")


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def _round_column(settings: Any) -> tuple[str, str | None]:
    """What the show table calls a trial's ``round``, and the legend line that explains it (None: it is the
    round).  Under the async schedule it is the trial's generation, which can pass --rounds."""
    from .evaluators.pbt import PopulationBasedEvaluator

    if settings.schedule != ASYNC:
        return "round", None
    what = ("lineage depth under Population-Based training (a parent's generation + 1)"
            if settings.evaluator == PopulationBasedEvaluator.name
            else "the trial's place in the run, in steps of --popsize (every trial starts from scratch)")
    return "generation", (f"generation: {what}; --rounds x --popsize ({settings.rounds} x {settings.popsize}) "
                          "is the number of trials")


def _show_run(result: Any) -> None:
    names = result.param_names
    column, legend = _round_column(result.settings)
    header = ["trial", column, "status", result.settings.metric, *names, "parent", "secs", "reason"]
    rows = []
    for r in result.records:
        secs = f"{r.ended - r.started:.1f}" if r.started and r.ended else ""
        rows.append([str(r.trial_id), str(r.round), r.status, "" if r.value is None else f"{r.value:.4g}",
                     *[_fmt(r.config.get(n)) for n in names], "" if r.parent_id is None else str(r.parent_id),
                     secs, (r.reason or "")[:60]])
    for t in result.running:  # a live run: what is running now, with its last report
        last = (t.get("last_report") or {})
        value = (last.get("metrics") or {}).get(result.settings.metric)
        secs = f"{time.time() - t['started']:.1f}" if t.get("started") else ""
        step = f"step {last['step']}" if last.get("step") is not None else "no report yet"
        rows.append([str(t["trial_id"]), str(t.get("round", "")), RUNNING,
                     _fmt(value) if isinstance(value, (int, float)) else "",
                     *[_fmt(t["params"].get(n)) for n in names], "", secs, step])
    _print_table(header, rows)
    if legend:
        print(legend)
    b = result.best
    pruned = sum(r.status == PRUNED for r in result.records)
    print(f"\nrun {result.name} ({result.status}): {len(result.records)} trials, "
          f"{sum(r.status not in (COMPLETED, PRUNED) for r in result.records)} failed"
          + (f", {pruned} pruned" if pruned else ""))
    if b:
        print(f"best: trial {b.trial_id} {result.settings.metric}={b.value:.6g} "
              + json.dumps({k: b.config[k] for k in names if k in b.config}))
    best_config = result.path / "best" / "config.yaml"  # written by the driver as the best trial changes
    if best_config.is_file():
        print(f"best config: {best_config}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _typed_columns(frame: Any) -> Any:
    """Parquet columns have one type: a categorical mixing kinds (``[auto, 16]``) is written as text."""
    frame = frame.copy()
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object and col.dropna().map(type).nunique() > 1:
            frame[name] = col.map(lambda v: v if v is None or (isinstance(v, float) and v != v) else str(v))
    return frame


def _cmd_export(a: argparse.Namespace) -> int:
    from .results import load_result

    result = load_result(a.run_dir, a.storage)
    frame = result.trials
    if a.format is None:
        a.format = "parquet" if a.output and Path(a.output).suffix.lower() in (".parquet", ".pq") else "csv"
    out = Path(a.output) if a.output else Path(a.run_dir) / f"trials.{a.format}"
    try:
        if a.format == "csv":
            frame.to_csv(out, index=False)
        else:
            _typed_columns(frame).to_parquet(out, index=False)
    except OSError as e:
        raise AutotuneError(f"cannot write {out}: {e.strerror or e}") from None
    except (ValueError, TypeError, ImportError) as e:  # e.g. pyarrow and a column of mixed types
        raise AutotuneError(f"cannot write {out} as {a.format}: {type(e).__name__}: {e}".splitlines()[0]
                            + ("; try --format csv" if a.format != "csv" else "")) from None
    print(out)
    return 0


def _cmd_dashboard(a: argparse.Namespace) -> int:
    try:
        from .dashboard.server import serve
    except ImportError as e:
        raise AutotuneError(f"the dashboard is not available: {e}") from None
    serve(run_dirs=a.run_dirs or ["runs"], storage=a.storage, host=a.host, port=a.port, token=a.token,
          control=a.control, address=a.address, spaces=a.spaces, output=a.output)
    return 0


# -- the search service (Ray Jobs) -----------------------------------------------------------------
def _run_flags(a: argparse.Namespace) -> list[str]:
    """The `autotune run` options of a parsed `submit` command line, for the job to run with."""
    flags: list[str] = []
    for setting in SETTINGS:
        value = getattr(a, setting.name)
        flags += setting.tokens(dict(value) if setting.kind is Kind.OPTIONS else value)
    for key, amount in a.resource:
        flags += ["--resource", f"{key}={amount:g}"]
    if a.artifacts:
        flags += ["--artifacts", a.artifacts]
    return flags


def _cmd_submit(a: argparse.Namespace) -> int:
    from .api import _stem
    from .service import submit

    name = a.name or f"{_stem(a.space)}-{time.strftime('%Y%m%d-%H%M%S')}"
    run, job_id = submit(a.address, _run_flags(a), name=name, output=a.output, space=a.space, trial=a.trial,
                         storage=a.storage, upload=a.upload, cluster_dir=a.cluster_dir,
                         upload_limit_mb=a.upload_limit, script_args=a.script_args)
    addr = f" --address {a.address}" if a.address else ""
    print(f"run {run}")
    print(f"job {job_id}")
    print(f"follow it: autotune logs {run} --follow{addr}; stop it: autotune stop {run}{addr}", file=sys.stderr)
    return 0


def _cmd_jobs(a: argparse.Namespace) -> int:
    from .service import job_client, list_jobs, when

    jobs = list_jobs(job_client(a.address))
    if a.json:
        print(json.dumps([j.to_dict() for j in jobs]))
        return 0
    _print_table(["job", "run", "action", "status", "started", "ended"],
                 [[j.job_id, j.run, j.action, j.status, when(j.start_time), when(j.end_time)] for j in jobs])
    return 0


def _cmd_logs(a: argparse.Namespace) -> int:
    from .service import print_logs

    print_logs(a.address, a.name, a.follow)
    return 0


def _cmd_stop(a: argparse.Namespace) -> int:
    from .service import stop

    job, status = stop(a.address, a.name, wait=0.0 if a.no_wait else 120.0)
    if a.no_wait:
        print(f"stopping run {job.run} (job {job.job_id})")
    else:
        print(f"run {job.run} (job {job.job_id}): {status.lower() or 'stopping'}; continue it with: "
              f"autotune resume {job.run} --address {a.address or '...'}")
    return 0


def _cmd_resume_job(a: argparse.Namespace) -> int:
    from .service import resume_remote

    run, job_id = resume_remote(a.address, a.run_dir, a.storage)
    print(f"run {run}")
    print(f"job {job_id}")
    return 0


COMMANDS = {"run": _cmd_run, "resume": _cmd_resume, "show": _cmd_show, "export": _cmd_export,
            "dashboard": _cmd_dashboard, "submit": _cmd_submit, "jobs": _cmd_jobs, "logs": _cmd_logs,
            "stop": _cmd_stop}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack: what a stuck driver waits on
        with contextlib.suppress(AttributeError, OSError, ValueError):  # a stderr with no file (captured)
            faulthandler.register(signal.SIGUSR1, all_threads=True)
    script_args: list[str] = []
    if argv[:1] in (["run"], ["submit"]) and "--" in argv:  # `autotune run script.py --space F -- --epochs=3`
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1:]
    try:
        args = build_parser().parse_args(argv)
        args.script_args = tuple(script_args)
        return COMMANDS[args.command](args)
    except RunInterrupted as e:
        print(f"\nautotune: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nautotune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except AutotuneError as e:
        msg = str(e).strip().replace("\n", " ")
        print(f"autotune: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `autotune show runs/ | head`: the reader has gone, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
