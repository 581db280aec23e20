"""The dashboard on large runs: API answers, bytes and the run page in Chromium, by run size.

    python benchmarks/dashboard.py                  # runs of 1,000, 10,000 and 100,000 trials (3 reports each)
    python benchmarks/dashboard.py --quick          # CI: 1,000 trials
    python benchmarks/dashboard.py --sizes 10000    # one size

Each run starts as a real search (``autotune.run``, 2 trials of a Python objective on the in-process
executor, so its folder, settings and attributes are a real run's), then gets the rest of its trials
through the store's own write (``Store.record_trial``, one transaction per trial, as the driver writes
them): copies of its first trial with a new id, a random value and 3 reports.  Building a 100,000-trial
run that way takes minutes; searching it would take hours, and the dashboard reads the two alike.

For each size a new dashboard (``create_app``, nothing cached) is served by uvicorn on 127.0.0.1 and
timed from this process: the runs list (its first call, then again), the run's head, its trials and its
lineage, cold (before the page asked for them) and the bytes of each answer.  Then a new headless
Chromium (``AUTOTUNE_CHROMIUM``, default /usr/bin/chromium; Playwright drives it) opens the run page of
another new dashboard: the seconds until its header shows the run's name, until its first charts (best
so far, by trial and by time) are drawn (``document.body.dataset.firstCharts``), and until the page has
drawn every chart (``document.body.dataset.renders``, set after the charts and the table), the page's JS
heap then, and its slowest chart (the page times each chart's drawing).  Reported where the issue's targets are: the runs list under 0.5 s (the first call included),
the header and first charts under 2 s, every chart within 4 s.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

CHROMIUM = os.environ.get("AUTOTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                                                      "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}
REPORTS = 3


def objective(config: dict[str, Any], trial: Any) -> float:
    for step in range(1, REPORTS + 1):
        trial.report({"score": config["x"] * step / REPORTS})
    return config["x"]


def build(root: Path, name: str, n: int, seed: int) -> float:
    """A run of ``n`` trials under ``root``; the seconds it took."""
    import autotune
    from autotune.results import locate_run
    from autotune.space import SearchSpace

    t0 = time.perf_counter()
    result = autotune.run(objective, space=SPACE, sampler="random", evaluator="full", rounds=1, popsize=2, seed=seed,
                          output=root, name=name, executor="local")
    store, run_id, _ = locate_run(root / name)
    dists = SearchSpace.from_dict({"params": SPACE["params"]}).to_optuna_distributions()
    rng = random.Random(seed)
    first = result.records[0]
    for i in range(len(result.records), n):
        x = rng.random()
        config = {"x": x, "lr": 10 ** rng.uniform(-4, -1)}
        reports = [{"step": s, "metrics": {"score": x * s / REPORTS}, "time": first.ended} for s in range(1, REPORTS + 1)]
        store.record_trial(run_id, replace(first, trial_id=i, config=config, value=x, reports=reports), dists)
    return time.perf_counter() - t0


class Served:
    """A new dashboard over ``root`` on 127.0.0.1 (uvicorn in a thread)."""

    def __init__(self, root: Path) -> None:
        import uvicorn

        from autotune.dashboard.app import create_app

        self.server = uvicorn.Server(uvicorn.Config(create_app([root]), host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started and time.time() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("the dashboard did not start")
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def get(self, path: str) -> tuple[float, int]:
        """Seconds and bytes of one answer."""
        t0 = time.perf_counter()
        with urllib.request.urlopen(self.url + path, timeout=300) as resp:
            body = resp.read()
        return time.perf_counter() - t0, len(body)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def api_row(root: Path, name: str, n: int) -> dict[str, Any]:
    served = Served(root)
    try:
        row: dict[str, Any] = {"trials": n}
        for key, path in (("runs_first", "/api/runs"), ("runs_again", "/api/runs"), ("head", f"/api/runs/{name}"),
                          ("trials_list", f"/api/runs/{name}/trials"), ("lineage", f"/api/runs/{name}/lineage")):
            row[f"{key}_s"], row[f"{key}_bytes"] = served.get(path)
        return row
    finally:
        served.close()


def page_row(root: Path, name: str, n: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    served = Served(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                t0 = time.perf_counter()
                page.goto(f"{served.url}/#/run/{name}")
                page.wait_for_function(f"() => document.getElementById('run-title').textContent === {name!r}",
                                       timeout=300_000, polling=20)
                header = time.perf_counter() - t0
                page.wait_for_function("() => document.body.dataset.firstCharts === '1'", timeout=300_000, polling=20)
                first = time.perf_counter() - t0
                page.wait_for_function("() => Number(document.body.dataset.renders || 0) >= 1", timeout=300_000,
                                       polling=20)
                drawn = time.perf_counter() - t0
                heap = page.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize : null")
                draws = page.evaluate("() => window.autotuneDashboard.drawMs")  # ms per chart, in the page
            finally:
                browser.close()
        slowest = max(draws, key=draws.get) if draws else ""
        return {"trials": n, "page_header_s": header, "page_first_charts_s": first, "page_all_charts_s": drawn,
                "js_heap_mb": heap / 1e6 if heap else None, "slowest_chart": slowest,
                "slowest_chart_s": draws[slowest] / 1000 if draws else None}
    finally:
        served.close()


def main(argv: list[str] | None = None) -> int:
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", help="trials per run (default 1000 10000 100000; --quick 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-page", action="store_true", help="the API only (no Chromium)")
    args = p.parse_args(argv)
    out = _bench.out_dir(args)
    sizes = args.sizes or ([1000] if args.quick else [1000, 10_000, 100_000])
    work = Path(tempfile.mkdtemp(prefix="autotune-dashboard-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        for n in sizes:
            root, name = work / f"runs-{n}", f"run{n}"
            built = build(root, name, n, args.seed)
            row = {**api_row(root, name, n), "build_s": built}
            if not args.no_page:
                row.update(page_row(root, name, n))
            rows.append(row)
            print(f"{n} trials: built in {built:.1f} s; runs list {row['runs_first_s']:.3f} s, run head "
                  f"{row['head_s']:.3f} s, trials {row['trials_list_s']:.3f} s ({row['trials_list_bytes'] / 1e6:.1f} MB)"
                  + (f"; page header {row['page_header_s']:.2f} s, first charts {row['page_first_charts_s']:.2f} s, "
                     f"all charts {row['page_all_charts_s']:.2f} s (slowest: {row['slowest_chart']}, "
                     f"{row['slowest_chart_s']:.2f} s)" if "page_header_s" in row else ""), flush=True)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _bench.write_csv(out / "dashboard.csv", rows)
    _bench.write_machine(out / "dashboard_machine.csv", {"sizes": " ".join(map(str, sizes)), "seed": args.seed,
                                                         "reports_per_trial": REPORTS, "page": not args.no_page})
    print(_bench.table([(r["trials"], f"{r['runs_first_s']:.3f}", f"{r['runs_again_s']:.3f}", f"{r['head_s']:.3f}",
                         f"{r['trials_list_s']:.3f}", f"{r['trials_list_bytes'] / 1e6:.1f}", f"{r['lineage_s']:.3f}",
                         _fmt(r.get("page_header_s")), _fmt(r.get("page_first_charts_s")),
                         _fmt(r.get("page_all_charts_s")), _fmt(r.get("js_heap_mb")))
                        for r in rows],
                       ["trials", "runs list, first s", "again s", "run head s", "trials s", "trials MB", "lineage s",
                        "page header s", "first charts s", "all charts s", "JS heap MB"]))
    print(f"\nresults in {out}")
    return 0


def _fmt(v: Any) -> str:
    return "" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
