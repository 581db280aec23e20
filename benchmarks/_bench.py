"""Shared helpers for the benchmark scripts: command-line options, machine description, CSV output.

Every script takes ``--quick`` (a small run that CI executes so the benchmarks never rot) and
``--out DIR`` (where its CSV files go; the committed full results live in ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a small run (CI): minutes, not the committed results")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for the CSV files (default: benchmarks/results for a full run, "
                        "a new temporary folder for --quick, so quick runs never overwrite committed results)")
    return p


def out_dir(args: argparse.Namespace) -> Path:
    if args.out is not None:
        out = args.out
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="autotune-bench-"))
    else:
        out = RESULTS
    out.mkdir(parents=True, exist_ok=True)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy

    info: dict[str, Any] = {
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    for mod in ("optuna", "cma", "ray", "torch", "cocoex"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional for some scripts
            pass
    return info


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write rows (dicts) as CSV; floats with 6 significant digits."""
    cols = list(columns or (rows[0].keys() if rows else []))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return path


def write_machine(path: Path, extra: Mapping[str, Any] | None = None) -> Path:
    info = {**machine(), **dict(extra or {})}
    return write_csv(path, [{"key": k, "value": v} for k, v in info.items()], ["key", "value"])


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines)
