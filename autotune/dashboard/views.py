"""What the API returns, built from a :class:`~autotune.dashboard.catalog.Snapshot` as plain data.

JSON has no NaN or infinity: a non-finite number becomes ``null`` where a number is expected (a
trial's value) and the string ``"nan"``/``"inf"``/``"-inf"`` inside free-form data (configs and
reported metrics), the same spelling the records use.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from ..artifacts import Artifacts
from ..ranking import best_record
from ..records import TrialRecord
from ..settings import ASYNC, MODES, ROUNDS, SCHEDULES
from ..statuses import COMPLETED, FAILED, PENDING, PRUNED, RUNNING, STOPPED
from .catalog import Head, RunRef, Snapshot

LOG_FILE = "trial.log"
MAX_DEPTH = 64  # nesting kept in configs and metrics; deeper values are cut


def number(x: Any) -> float | None:
    """A finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    f = float(x)
    return f if math.isfinite(f) else None


def integer(x: Any) -> int | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x == int(x):
        return int(x)
    return None


def plain(x: Any, depth: int = 0) -> Any:
    """``x`` as JSON-safe data: non-finite floats spelled as strings, unknown objects as str."""
    if depth > MAX_DEPTH:
        return None
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {str(k): plain(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v, depth + 1) for v in x]
    return str(x)


def _text(x: Any) -> str | None:
    return None if x is None else str(x)


# -- runs ------------------------------------------------------------------------------------------
def _settings(snap: Snapshot | Head) -> dict[str, Any]:
    s = snap.attrs.get("settings")
    return s if isinstance(s, dict) else {}


def _mode(settings: dict[str, Any]) -> str:
    mode = settings.get("mode")
    return mode if mode in MODES else "max"


def _schedule(settings: dict[str, Any]) -> str:
    """The run's schedule; runs recorded before schedules existed ran in rounds (as RunSettings reads them)."""
    schedule = settings.get("schedule")
    return schedule if schedule in SCHEDULES else ROUNDS


def round_word(settings: dict[str, Any]) -> str:
    """What a trial's ``round`` is in this run: its generation under the async schedule, else its round."""
    return "generation" if _schedule(settings) == ASYNC else "round"


def summary(ref: RunRef, head: Head) -> dict[str, Any]:
    """A run's line in the runs list (and the head of its page)."""
    a = head.attrs
    settings = _settings(head)
    mode = _mode(settings)
    counts = {COMPLETED: 0, FAILED: 0, PRUNED: 0, STOPPED: 0}
    for t in head.tallies:
        counts[t.status] = counts.get(t.status, 0) + 1
    best = best_record(head.tallies, mode)
    ended = [e for e in (number(t.ended) for t in head.tallies) if e is not None]
    status = str(a.get("status", "unknown"))
    return {
        "id": ref.key,
        "name": ref.name,
        "status": status,
        "sampler": _text(settings.get("sampler")),
        "evaluator": _text(settings.get("evaluator")),
        "metric": str(settings.get("metric", "")),
        "mode": mode,
        "rounds": integer(settings.get("rounds")),
        "popsize": integer(settings.get("popsize")),
        "schedule": _schedule(settings),
        "round": head.state_round,
        "trials_total": len(head.tallies),
        "trials_done": counts[COMPLETED],
        "trials_failed": counts[FAILED],
        "trials_pruned": counts[PRUNED],
        "trials_stopped": counts[STOPPED],
        "trials_running": head.running if status == RUNNING else 0,
        "best_value": number(best.value) if best else None,
        "best_trial": best.trial_id if best else None,
        "started": number(a.get("created")),
        "finished": number(a.get("finished")),
        "updated": max(ended) if ended else None,
        "source": ref.source,
    }


def _params(space: Any) -> list[dict[str, Any]]:
    params = space.get("params") if isinstance(space, dict) else None
    out = []
    for name, p in (params or {}).items() if isinstance(params, dict) else []:
        p = p if isinstance(p, dict) else {}
        choices = p.get("choices")
        out.append({
            "name": str(name),
            "type": str(p.get("type", "float")),
            "low": number(p.get("low")),
            "high": number(p.get("high")),
            "log": bool(p.get("log", False)),
            "choices": plain(list(choices)) if isinstance(choices, (list, tuple)) else None,
        })
    return out


def detail(ref: RunRef, head: Head, record_of: Callable[[int], TrialRecord | None]) -> dict[str, Any]:
    """A run's page head: its summary, settings, parameters and its best trial's config (the one record
    read, through ``record_of``)."""
    out = summary(ref, head)
    best = None if out["best_trial"] is None else record_of(out["best_trial"])
    space = head.attrs.get("space")
    space = space if isinstance(space, dict) else {}
    fixed = space.get("fixed")
    out.update({
        "settings": plain(_settings(head)),
        "params": _params(space),
        "fixed": plain(fixed) if isinstance(fixed, dict) else {},
        "best": best_config(ref, head, best),
        "version": head.version,
        "control": control_events(head.attrs),
    })
    return out


def control_events(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's recorded stop/resume/start requests (see Store.add_control_event)."""
    from ..store import CONTROL_ATTR

    events = attrs.get(CONTROL_ATTR)
    out = []
    for e in events if isinstance(events, list) else []:
        if isinstance(e, dict) and isinstance(e.get("action"), str) and number(e.get("at")) is not None:
            out.append({"action": e["action"], "at": number(e["at"]), "client": str(e.get("client", "")),
                        "job_id": _text(e.get("job_id"))})
    return out


def best_config(ref: RunRef, head: Head, best: TrialRecord | None) -> dict[str, Any] | None:
    settings = _settings(head)
    if best is None:
        return None
    config = plain(best.config)
    head = (f"# best trial {best.trial_id} ({round_word(settings)} {best.round}) of run {ref.name}: "
            f"{settings.get('metric', 'value')} = {best.value!r}\n")
    head = head.replace("\r", " ").replace("\n", " ").rstrip() + "\n"
    text = head + yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return {"trial_id": best.trial_id, "round": best.round, "value": number(best.value), "config": config,
            "yaml": text}


# -- trials ----------------------------------------------------------------------------------------
def tally_columns(tallies: Any) -> dict[str, list[Any]]:
    """The tallies as columns (``trial_id``, ``status``, ``value``, ``ended``): a value only where completed."""
    return {"trial_id": [t.trial_id for t in tallies], "status": [str(t.status) for t in tallies],
            "value": [number(t.value) if t.status == COMPLETED else None for t in tallies],
            "ended": [number(t.ended) for t in tallies]}


def _reports(reports: Any) -> list[dict[str, Any]]:
    out = []
    for rep in reports if isinstance(reports, list) else []:
        if not isinstance(rep, dict):
            continue
        metrics = rep.get("metrics")
        out.append({"step": integer(rep.get("step")), "time": number(rep.get("time")),
                    "metrics": plain(metrics) if isinstance(metrics, dict) else {}})
    return out


def trial_row(ref: RunRef, r: TrialRecord) -> dict[str, Any]:
    started, ended = number(r.started), number(r.ended)
    parent = r.parent_id if r.parent_id is not None else r.planned_parent_id
    return {
        "trial_id": r.trial_id,
        "round": r.round,
        "status": str(r.status),
        "reason": _text(r.reason),
        "value": number(r.value),
        "config": plain(r.config) if isinstance(r.config, dict) else {},
        "budget": number(r.budget),
        "parent_id": integer(parent),
        "planned_parent_id": integer(r.planned_parent_id),
        "parent_note": _text(r.parent_note),
        "parent_step": integer(r.parent_step),
        "checkpoint": _text(r.checkpoint),
        "checkpoint_step": integer(r.checkpoint_step),
        "checkpoint_removed": bool(getattr(r, "checkpoint_removed", False)),
        "member": integer(getattr(r, "member", None)),
        "in_place": bool(getattr(r, "in_place", False)),
        "started": started,
        "ended": ended,
        "duration_s": (ended - started) if started is not None and ended is not None else None,
        "node": _text(r.node),
        "gpu_ids": [str(g) for g in (r.gpu_ids or [])],
        "attempts": integer(r.attempts) or 1,
        "retry_note": _text(r.retry_note),
        "reports": _reports(r.reports),
        "has_log": bool(r.log_tail) or ref.run_dir is not None,
    }


def pending_row(spec: dict[str, Any], running: bool) -> dict[str, Any]:
    parents = spec.get("parents") or []
    parent = parents[0].get("trial_id") if parents and isinstance(parents[0], dict) else None
    return {
        "trial_id": integer(spec.get("trial_id")) or 0, "round": integer(spec.get("round")) or 0,
        "status": RUNNING if running else PENDING, "reason": None, "value": None,
        "config": plain(spec.get("config")) if isinstance(spec.get("config"), dict) else {},
        "budget": number(spec.get("budget")), "parent_id": integer(parent), "planned_parent_id": integer(parent),
        "parent_note": None, "parent_step": None, "checkpoint": None, "checkpoint_step": None,
        "checkpoint_removed": False, "member": integer(spec.get("member")), "in_place": False, "started": None, "ended": None, "duration_s": None, "node": None, "gpu_ids": [], "attempts": 1,
        "retry_note": None, "reports": [], "has_log": False,
    }


def trials(ref: RunRef, snap: Snapshot) -> list[dict[str, Any]]:
    running = snap.attrs.get("status") == RUNNING
    rows = [trial_row(ref, r) for r in snap.records]
    for spec in snap.pending:
        row = pending_row(spec, running)
        live = snap.live.get(row["trial_id"]) if running else None
        if live is not None:  # its reports so far: the learning curve draws while it runs
            row["reports"] = _reports(live.get("reports"))
            row["started"] = number(live.get("started"))
        rows.append(row)
    return rows


def find(snap: Snapshot, trial_id: int) -> TrialRecord | None:
    for r in snap.records:
        if r.trial_id == trial_id:
            return r
    return None


def trial_detail(ref: RunRef, r: TrialRecord) -> dict[str, Any]:
    out = trial_row(ref, r)
    out.update({
        "log_tail": _text(r.log_tail),
        "trial_dir": _text(r.trial_dir),
        "parent_checkpoint": _text(r.parent_checkpoint),
        "parent_hash": _text(r.parent_hash),
        "checkpoint_hash": _text(r.checkpoint_hash),
    })
    return out


# -- lineage ---------------------------------------------------------------------------------------
def lineage(ref: RunRef, snap: Snapshot) -> dict[str, Any]:
    """The Population-Based family tree: each trial under the trial whose checkpoint it started from.

    A parent must be an earlier trial of the run (a smaller id), so a damaged database cannot make a
    cycle; a trial whose parent is unknown is a root.
    """
    nodes: dict[int, dict[str, Any]] = {}
    for row in trials(ref, snap):
        nodes[row["trial_id"]] = {
            "trial_id": row["trial_id"], "round": row["round"], "status": row["status"],
            "value": row["value"], "parent_id": row["parent_id"], "note": row["parent_note"],
            "config": row["config"], "children": [],
        }
    roots, edges = [], 0
    for tid in sorted(nodes):
        node = nodes[tid]
        parent = node["parent_id"]
        if parent is not None and parent in nodes and parent < tid:
            nodes[parent]["children"].append(node)
            edges += 1
        else:
            roots.append(node)
    return {"run": ref.key, "roots": roots, "edges": edges, "nodes": len(nodes)}


# -- logs ------------------------------------------------------------------------------------------
def read_log(ref: RunRef, r: TrialRecord, tail: int, artifacts: str | None = None) -> dict[str, Any]:
    """The end of ``<run folder>/<trial dir>/trial.log`` (the trial's own folder only), or of the copy
    in the run's object store (``--artifacts``), else the tail stored with the record."""
    if isinstance(artifacts, str) and artifacts and _safe_trial_dir(r.trial_dir):
        try:
            text = Artifacts(artifacts).read_text(f"{r.trial_dir}/{LOG_FILE}")
        except Exception:  # noqa: BLE001 - store unreachable from the dashboard: fall back to the record
            text = None
        if text is not None:
            data = text.encode("utf-8")
            return {"trial_id": r.trial_id, "source": "file", "text": data[-tail:].decode("utf-8", "replace"),
                    "truncated": len(data) > tail, "size": len(data)}
    path = _log_path(ref, r)
    if path is not None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            fd = -1
        if fd >= 0:
            with os.fdopen(fd, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(max(0, size - tail))
                data = f.read(tail)
            return {"trial_id": r.trial_id, "source": "file", "text": data.decode("utf-8", "replace"),
                    "truncated": size > tail, "size": size}
    if r.log_tail:
        text = str(r.log_tail)
        return {"trial_id": r.trial_id, "source": "record", "text": text[-tail:], "truncated": len(text) > tail,
                "size": None}
    return {"trial_id": r.trial_id, "source": "none", "text": "", "truncated": False, "size": None}


def _safe_trial_dir(trial_dir: Any) -> bool:
    """A trial folder name as autotune writes them (``trials/NNNNN``), nothing that could climb out."""
    return isinstance(trial_dir, str) and re.fullmatch(r"trials/[0-9]{1,12}", trial_dir) is not None


def _log_path(ref: RunRef, r: TrialRecord) -> Path | None:
    if ref.run_dir is None or not isinstance(r.trial_dir, str) or not r.trial_dir or "\0" in r.trial_dir:
        return None
    root = ref.run_dir.resolve()
    try:
        path = (root / r.trial_dir / LOG_FILE).resolve()
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or path == root or path.name != LOG_FILE or not path.is_file():
        return None
    return path
