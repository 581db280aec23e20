"""The dashboard page in real headless Chromium (Debian's package, driven by Playwright).

Runs here without the browser are skipped, except under CI (the variable CI set), where a missing
browser fails.  Screenshots are kept in tests/artifacts/.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import objective

import autotune
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.results import load_result

CHROMIUM = os.environ.get("AUTOTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LR_SPACE = {"metric": "neg_loss", "mode": "max", "budget": 2,
            "params": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True, "init": 0.05}}}
X_SPACE = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
CHARTS = ["chart-best-trial", "chart-best-time", "chart-rounds", "chart-parallel", "chart-params", "chart-curves",
          "chart-lineage"]

# Series data lengths of every chart, by series id.
SERIES_SIZES = """(ids) => Object.fromEntries(ids.map((id) => {
  const chart = echarts.getInstanceByDom(document.getElementById(id));
  return [id, Object.fromEntries(chart.getOption().series.map((s) => [s.id, (s.data || []).length]))];
}))"""

# Trials and parent-child links drawn in the lineage tree.
TREE_SIZE = """() => {
  const chart = echarts.getInstanceByDom(document.getElementById('chart-lineage'));
  let nodes = 0, links = 0;
  const walk = (n, depth) => { for (const c of n.children || []) { nodes++; if (depth > 0) links++; walk(c, depth + 1); } };
  walk(chart.getOption().series[0].data[0], 0);
  return {nodes, links};
}"""

# Page coordinates of a trial's node in the lineage tree, from the chart's own layout.
TREE_NODE_XY = """(tid) => {
  const node = document.getElementById('chart-lineage');
  const chart = echarts.getInstanceByDom(node);
  const data = chart.getModel().getSeriesByIndex(0).getData();
  for (let i = 0; i < data.count(); i++) {
    const opt = data.tree.getNodeByDataIndex(i).getModel().option;
    if (opt && opt.trial === tid) {
      const [x, y] = data.getItemGraphicEl(i).transformCoordToGlobal(0, 0);
      const r = node.getBoundingClientRect();
      return {x: r.left + x, y: r.top + y};
    }
  }
  return null;
}"""


def _browser_or_skip():
    problem = None
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        problem = "playwright is not installed (pip install playwright)"
    if problem is None and not Path(CHROMIUM).exists():
        problem = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {problem}")
        pytest.skip(problem)


def _sim_model(config: dict, budget: float | None, parent) -> SimTrial:
    """Simulated trials (no process starts): 6 reports rising to a value set by x; x above ``fail_above``
    fails; a warm start ends ``child`` above its parent's value (negative: below)."""
    if config["x"] > config.get("fail_above", 2.0):
        return SimTrial(curve=(None,), duration=2.0)
    end = parent.value + config["child"] if parent is not None else 1.0 - (config["x"] - 0.3) ** 2
    return SimTrial(curve=tuple(end * (1 - math.exp(-(e + 1) / 2)) / (1 - math.exp(-3)) for e in range(6)),
                    duration=6.0)


def _sim_run(root: Path, name: str, fixed: dict, slots: int, **kwargs) -> None:
    space = {**X_SPACE, "fixed": {"child": 0.0, **fixed}}
    autotune.run(objective("quadratic"), space=space, sampler="random", evaluator="pbt", seed=0, output=root,
                 name=name, executor=SimulatedExecutor(_sim_model, slots=slots), schedule="async", **kwargs)


def _stored_run(root: Path, name: str, parents: list[int | None], rounds: int, popsize: int,
                schedule: str = "async") -> None:
    """A finished Population-Based run written straight to its database (all the dashboard reads), with
    exactly this lineage: trial i warm-started from trial ``parents[i]`` (None: from scratch); its round
    is its depth."""
    from optuna.distributions import FloatDistribution

    from autotune.records import TrialRecord
    from autotune.settings import RunSettings
    from autotune.store import Store, sqlite_url

    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"name": name, "storage": None}))
    store = Store(sqlite_url(run_dir))
    settings = RunSettings(name=name, metric="score", mode="max", sampler="random", evaluator="pbt", rounds=rounds,
                           popsize=popsize, schedule=schedule)
    t0 = time.time() - 100
    run_id = store.create_run(name, "max", {"settings": settings.to_dict(), "space": X_SPACE, "status": "completed",
                                            "created": t0, "finished": t0 + len(parents), "run_dir": str(run_dir)})
    depth: dict[int, int] = {}
    for i, parent in enumerate(parents):
        depth[i] = 0 if parent is None else depth[parent] + 1
        value = round(0.5 + 0.4 * ((i * 0.618) % 1), 4)
        step = depth[i] + 1
        record = TrialRecord(
            trial_id=i, round=depth[i], config={"x": value - 0.4}, budget=None, status="completed", reason=None,
            value=value, reports=[{"step": step, "metrics": {"score": value}}], planned_parent_id=parent,
            parent_id=parent, parent_checkpoint=None if parent is None else f"trials/{parent:06d}/checkpoint",
            parent_step=None if parent is None else step - 1, parent_hash=None, parent_note=None,
            checkpoint=f"trials/{i:06d}/checkpoint", checkpoint_step=step, checkpoint_hash=None, started=t0 + i,
            ended=t0 + i + 1, node="stored", gpu_ids=[], log_tail=None, trial_dir=f"trials/{i:06d}")
        store.record_trial(run_id, record, {"x": FloatDistribution(0.0, 1.0)})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dash") / "runs"
    autotune.run(objective("weights"), space=LR_SPACE, sampler="random", evaluator="pbt", rounds=3, popsize=4,
                 seed=0, output=root, name="demo", executor="local")
    autotune.run(objective("mixed"), space=X_SPACE, sampler="random", evaluator="full", rounds=2, popsize=6,
                 seed=1, output=root, name="mixed", executor="local")
    # early stopping: pruned trials (with their reports) beside failed ones
    _sim_run(root, "pruned", {"fail_above": 0.85}, 4, rounds=6, popsize=4, early_stop="asha",
             early_stop_options={"grace_period": 1, "reduction_factor": 2})
    # a chain of warm starts: generations past --rounds (3 x 2 trials, generation 4)
    _stored_run(root, "deep", [None, None, 1, 2, 3, 4], rounds=3, popsize=2)
    # one parent of 12 children, one of which has two of its own
    _stored_run(root, "fan", [None, None] + [1] * 12 + [2, 2], rounds=8, popsize=2)
    # synchronous rounds: round is the round
    _stored_run(root, "sync", [None, None, 0, 1, 2, 2], rounds=3, popsize=2, schedule="rounds")
    # a large run: more trials than the table shows at once and than the curves chart draws one by one
    _sim_run(root, "large", {"child": 0.001}, 8, rounds=30, popsize=10)
    return root


@pytest.fixture(scope="module")
def live_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def base_url(runs, live_root):
    import uvicorn

    from autotune.dashboard.app import create_app

    app = create_app([runs, live_root], allowed_hosts=["127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "the dashboard server did not start"
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.errors = errors
    yield pg
    context.close()
    assert not errors, f"the page logged errors: {errors}"


def _open_run(page, base_url: str, name: str, query: str = "") -> None:
    page.goto(f"{base_url}/{query}#/run/{name}")
    page.wait_for_function("() => Number(document.body.dataset.renders || 0) >= 1", timeout=20_000)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


# -- tests -----------------------------------------------------------------------------------------
def test_runs_list_links_to_each_run(page, base_url):
    page.goto(base_url + "/")
    page.wait_for_selector("[data-testid=run-row][data-run=demo]")
    rows = {r.get_attribute("data-run"): r.inner_text() for r in page.query_selector_all("[data-testid=run-row]")}
    assert {"demo", "mixed"} <= set(rows)
    assert "pbt" in rows["demo"] and "completed" in rows["demo"] and "neg_loss (max)" in rows["demo"]
    page.click("[data-testid=run-row][data-run=mixed] a")
    page.wait_for_function("() => document.getElementById('run-title').textContent === 'mixed'")
    assert page.url.endswith("#/run/mixed")


def test_charts_draw_one_point_per_trial(page, base_url, runs):
    records = load_result(runs / "demo").records
    done = [r for r in records if r.status == "completed" and _finite(r.value)]
    reports = sum(_finite(rep["metrics"].get("neg_loss")) for r in records for rep in r.reports)
    _open_run(page, base_url, "demo")
    sizes = page.evaluate(SERIES_SIZES, CHARTS)
    n = len(done)
    assert n == 12
    assert sizes["chart-best-trial"] == {"trials": n, "best": n, "failed": 0}
    assert sizes["chart-best-time"] == {"trials": n, "best": n, "failed": 0}
    assert sizes["chart-rounds"] == {"box": len({r.round for r in done}), "strip": n}  # one box per generation
    assert sizes["chart-parallel"] == {"trials": n}
    assert sizes["chart-params"] == {"param-lr": n}
    curves = {k: v for k, v in sizes["chart-curves"].items() if k.startswith("trial-")}
    assert len(curves) == len(records) and sum(curves.values()) == reports == 24
    assert sizes["chart-curves"]["warmstarts"] == sum(r.parent_id is not None for r in records)
    assert page.evaluate(TREE_SIZE) == {"nodes": 12, "links": 8}
    # best so far is monotone and ends at the run's best value
    best = page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-best-trial'))
        .getOption().series.find((s) => s.id === 'best').data.map((p) => p[1])""")
    assert best == sorted(best) and best[-1] == pytest.approx(max(r.value for r in done))
    # every chart really drew on its canvas
    for chart in CHARTS:
        box = page.locator(f"#{chart} canvas").first.bounding_box()
        assert box and box["width"] > 200 and box["height"] > 150, chart
    assert page.locator("[data-testid=trial-row]").count() == 12
    _screenshot(page, "dashboard-demo.png")


def test_failed_trial_shows_its_reason_and_log(page, base_url, runs):
    records = load_result(runs / "mixed").records
    failed = [r for r in records if r.status == "failed"]
    done = [r for r in records if r.status == "completed"]
    assert failed, "the mixed run needs a failed trial"
    _open_run(page, base_url, "mixed")
    sizes = page.evaluate(SERIES_SIZES, ["chart-best-trial"])
    assert sizes["chart-best-trial"] == {"trials": len(done), "best": len(done), "failed": len(failed)}
    assert page.locator("[data-testid=trial-row][data-status=failed]").count() == len(failed)
    assert page.is_hidden("#chart-lineage") and "no warm starts" in page.text_content("[data-testid=lineage-note]")
    bad = failed[0]
    page.click(f"[data-testid=trial-row][data-trial-id='{bad.trial_id}']")
    page.wait_for_selector("[data-testid=trial-detail]:not([hidden])")
    assert page.text_content("[data-testid=detail-id]") == str(bad.trial_id)
    assert page.text_content("[data-testid=detail-status]") == "failed"
    assert page.text_content("[data-testid=trial-reason]") == bad.reason
    page.click("[data-testid=load-log]")
    page.wait_for_function("() => document.getElementById('detail-log').dataset.source === 'file'")
    log = page.text_content("[data-testid=trial-log]")
    assert log == (runs / "mixed" / bad.trial_dir / "trial.log").read_text()
    assert "Traceback" in log and bad.reason in log
    _screenshot(page, "dashboard-failed-trial.png")


def test_lineage_tree_leads_back_to_round_zero(page, base_url, runs):
    records = {r.trial_id: r for r in load_result(runs / "demo").records}
    leaf = max((r for r in records.values() if r.round == 2), key=lambda r: r.value)
    _open_run(page, base_url, "demo")
    page.locator("#chart-lineage").scroll_into_view_if_needed()
    xy = page.evaluate(TREE_NODE_XY, leaf.trial_id)
    assert xy is not None
    page.mouse.click(xy["x"], xy["y"])  # a real click on the tree's canvas
    page.wait_for_function(f"() => document.getElementById('detail-id').textContent === '{leaf.trial_id}'")
    chain = [leaf.trial_id]
    while page.locator("[data-testid=detail-parent]").count():
        parent = int(page.get_attribute("[data-testid=detail-parent]", "data-trial-id"))
        assert parent == records[chain[-1]].parent_id
        page.click("[data-testid=detail-parent]")
        page.wait_for_function(f"() => document.getElementById('detail-id').textContent === '{parent}'")
        children = [int(b.get_attribute("data-trial-id")) for b in page.query_selector_all("[data-testid=detail-child]")]
        assert chain[-1] in children
        chain.append(parent)
    assert [records[t].round for t in chain] == [2, 1, 0]
    assert "started from scratch" in page.text_content("[data-testid=detail-family]")


def test_trial_table_sorts_by_a_column(page, base_url, runs):
    records = load_result(runs / "mixed").records
    _open_run(page, base_url, "mixed")

    def ids() -> list[int]:
        return [int(r.get_attribute("data-trial-id")) for r in page.query_selector_all("[data-testid=trial-row]")]

    assert ids() == sorted(r.trial_id for r in records)
    page.click("#trials-table th[data-sort=value]")  # mode max: best first
    valued = sorted((r for r in records if r.value is not None), key=lambda r: (-r.value, r.trial_id))
    missing = sorted(r.trial_id for r in records if r.value is None)
    assert ids() == [r.trial_id for r in valued] + missing
    assert page.get_attribute("#trials-table th[data-sort=value]", "aria-sort") == "descending"
    page.click("#trials-table th[data-sort=value]")
    assert ids() == [r.trial_id for r in reversed(valued)] + missing


def test_best_config_copies_as_yaml(page, base_url, runs):
    import yaml

    result = load_result(runs / "demo")
    _open_run(page, base_url, "demo")
    shown = page.text_content("[data-testid=best-yaml]")
    assert yaml.safe_load(shown) == result.best_config
    page.click("[data-testid=copy-yaml]")
    page.wait_for_function("() => document.getElementById('copy-status').textContent === 'copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == shown


def _api(base_url: str, path: str):
    try:
        with urllib.request.urlopen(base_url + path, timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError:
        return None


def _start_run(code: str, base_url: str, name: str, timeout: float) -> subprocess.Popen:
    """Start a search (Python ``code``) in its own process and wait until the API lists run ``name``."""
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while _api(base_url, f"/api/runs/{name}") is None:
        assert driver.poll() is None, driver.stderr.read().decode()
        assert time.time() < deadline, "the live run never appeared"
        time.sleep(0.1)
    return driver


def _end(driver: subprocess.Popen) -> None:
    if driver.poll() is None:
        driver.kill()
        driver.wait()


def test_a_running_search_updates_without_reload(page, base_url, live_root):
    space = {"metric": "score", "mode": "max", "fixed": {"sleep": 0.5},
             "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    code = (f"import autotune; autotune.run({objective('quadratic')!r}, space={space!r}, sampler='random', "
            f"evaluator='full', rounds=4, popsize=2, seed=0, output={str(live_root)!r}, name='live', executor='local')")
    driver = _start_run(code, base_url, "live", 60)
    try:
        _open_run(page, base_url, "live", "?poll=250")
        page.evaluate("() => { window.__notReloaded = true; }")
        first = page.evaluate("() => autotuneDashboard.trials.filter((t) => t.status === 'completed').length")
        assert first < 8
        page.wait_for_selector("[data-testid=live-indicator]:not([hidden])", timeout=10_000)
        page.wait_for_function("() => document.getElementById('run-status').textContent === 'completed'",
                               timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('[data-testid=trial-row]').length === 8")
        assert page.evaluate("() => window.__notReloaded") is True
        assert int(page.evaluate("() => document.body.dataset.renders")) > 1
        assert page.evaluate(SERIES_SIZES, ["chart-best-trial"])["chart-best-trial"]["trials"] == 8
        assert page.is_hidden("[data-testid=live-indicator]")
        assert driver.wait(30) == 0
    finally:
        _end(driver)


def test_learning_curves_of_running_trials_draw_live(page, base_url, live_root):
    """Trials that report and then wait (tests/programs/objectives.py:slow_curve): their curves are on the
    page while they run, each report a point, and the page follows them to the end without a reload."""
    gate = live_root / "curves-go"
    space = {"metric": "score", "mode": "max", "fixed": {"steps": 4, "pause": 0.1, "gate": str(gate)},
             "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    code = (f"import autotune; autotune.run({objective('slow_curve')!r}, space={space!r}, sampler='random', "
            f"evaluator='full', rounds=1, popsize=2, seed=0, output={str(live_root)!r}, name='curves')")
    driver = _start_run(code, base_url, "curves", 120)
    try:
        _open_run(page, base_url, "curves", "?poll=250")
        page.evaluate("() => { window.__notReloaded = true; }")
        # both trials running, 3 reports each so far: two curves of 3 points, drawn as running
        page.wait_for_function("""() => {
            const chart = echarts.getInstanceByDom(document.getElementById('chart-curves'));
            const s = chart.getOption().series.filter((x) => String(x.id).startsWith('trial-'));
            return s.length === 2 && s.every((x) => x.data.length === 3);
        }""", timeout=90_000)
        running = page.evaluate("() => autotuneDashboard.trials.filter((t) => t.status === 'running').length")
        assert running == 2
        gate.touch()  # let them finish
        page.wait_for_function("() => document.getElementById('run-status').textContent === 'completed'",
                               timeout=90_000)
        page.wait_for_function("""() => {
            const chart = echarts.getInstanceByDom(document.getElementById('chart-curves'));
            const s = chart.getOption().series.filter((x) => String(x.id).startsWith('trial-'));
            return s.length === 2 && s.every((x) => x.data.length === 4);
        }""", timeout=30_000)
        assert page.evaluate("() => window.__notReloaded") is True
        assert driver.wait(60) == 0
    finally:
        gate.touch()
        _end(driver)


# -- control, shown only when it is on ------------------------------------------------------------------
CONTROL_TOKEN = "browser-control-token"
CONTROLS = ["start-form", "start-submit", "run-control", "control-stop", "control-resume"]

# One Tab press: the element it focused (null: none, or the browser's own UI), tagged so a second
# visit shows that focus went once round the page.
TAB = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const seen = e.__tabbed === true;
  e.__tabbed = true;
  return {seen: seen, id: e.id || e.tagName, control: !!e.closest('#start-form, #run-control')};
}"""


def _serve(app) -> tuple[object, threading.Thread, str]:
    """Serve ``app`` on a free loopback port in a thread: (server, thread, base URL)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.02)
    assert server.started, "the dashboard server did not start"
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@pytest.fixture(scope="module")
def control_url(runs, tmp_path_factory):
    """The same runs on a dashboard with control on (a job server that is never called: nothing is clicked)."""
    from autotune.dashboard.app import create_app
    from autotune.dashboard.control import Control

    spaces = tmp_path_factory.mktemp("spaces")
    (spaces / "space.yaml").write_text(json.dumps(X_SPACE))
    control = Control("http://127.0.0.1:9", CONTROL_TOKEN, spaces=spaces, output=runs)
    server, thread, url = _serve(create_app([runs], allowed_hosts=["127.0.0.1", "localhost"], control=control))
    yield url
    server.should_exit = True
    thread.join(10)


def _tab_stops(page, limit: int = 80) -> list[dict]:
    """The elements Tab focuses, in order, once round the page."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    stops: list[dict] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        here = page.evaluate(TAB)
        if here is None:
            continue
        if here["seen"]:
            return stops
        stops.append(here)
    return stops


def _visible_controls(page) -> list[str]:
    return [c for c in CONTROLS if page.is_visible(f"[data-testid={c}]")]


def test_without_control_no_control_is_shown_or_focusable(page, base_url):
    page.goto(base_url + "/")
    page.wait_for_selector("[data-testid=run-row][data-run=demo]")
    page.wait_for_function("() => document.body.dataset.control === 'off'")
    assert _visible_controls(page) == []
    stops = _tab_stops(page)
    assert any(s["id"] == "A" for s in stops)  # the run links are reached
    assert [s for s in stops if s["control"]] == []
    _open_run(page, base_url, "demo")
    assert _visible_controls(page) == []
    stops = _tab_stops(page)
    assert any(s["id"] == "copy-yaml" for s in stops)
    assert [s for s in stops if s["control"]] == []


def test_the_start_form_offers_the_schemas_settings_and_shows_a_refusal_in_its_words(page, control_url):
    """The form's fields come from GET /api/settings (autotune.schema); a value the schema refuses comes back
    with the message the command line gives, and nothing starts."""
    from autotune.schema import BY_NAME, DASHBOARD_KEYS

    page.goto(control_url + "/?token=" + CONTROL_TOKEN)
    page.wait_for_selector("[data-testid=start-form]:not([hidden])")
    page.wait_for_selector("[data-testid=start-rounds]")
    for key in DASHBOARD_KEYS:
        assert page.is_visible(f"[data-testid=start-{key}]"), key
    evaluators = page.eval_on_selector_all("[data-testid=start-evaluator] option", "(os) => os.map((o) => o.value)")
    assert evaluators == ["", *BY_NAME["evaluator"].choices]
    assert page.get_attribute("[data-testid=start-cpus_per_trial]", "min") == "0"
    page.fill("[data-testid=start-rounds]", "0")
    page.click("[data-testid=start-submit]")
    page.wait_for_function("() => document.querySelector('[data-testid=start-status]').dataset.ok === '0'")
    status = page.text_content("[data-testid=start-status]")
    assert status == "Cannot start: rounds must be an integer >= 1, but got 0", status
    # the browser logs the refused request itself; that one is expected, anything else still fails the test
    expected = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
    assert page.errors == [expected], page.errors
    page.errors.clear()


def test_with_control_the_controls_are_shown(page, control_url):
    page.goto(control_url + "/")
    page.wait_for_selector("[data-testid=run-row][data-run=demo]")
    page.wait_for_function("() => document.body.dataset.control === 'on'")
    page.wait_for_selector("[data-testid=start-form]:not([hidden])")
    assert _visible_controls(page) == ["start-form", "start-submit"]
    assert page.eval_on_selector("[data-testid=start-space]", "(s) => s.value") == "space.yaml"
    from autotune.samplers import sampler_names

    offered = page.eval_on_selector_all("[data-testid=start-sampler] option", "(os) => os.map((o) => o.value)")
    assert sorted(offered) == sorted(["", *sampler_names()])  # "": the space file's
    assert "start-submit" in [s["id"] for s in _tab_stops(page)]
    _open_run(page, control_url, "demo")
    page.wait_for_selector("[data-testid=run-control]:not([hidden])")
    assert _visible_controls(page) == ["run-control", "control-stop", "control-resume"]
    # a finished run: neither applies, both are shown disabled
    assert page.is_disabled("[data-testid=control-stop]") and page.is_disabled("[data-testid=control-resume]")


# -- pruned is not failed ---------------------------------------------------------------------------------
REASON_STYLE = """(sel) => { const td = document.querySelector(sel); const s = getComputedStyle(td);
  return {color: s.color, whole: td.scrollWidth <= td.clientWidth, title: td.title, text: td.textContent}; }"""
BAD = "rgb(200, 55, 45)"  # style.css --bad


def test_pruned_trials_are_counted_apart_and_not_shown_as_errors(page, base_url, runs):
    records = load_result(runs / "pruned").records
    by = {s: [r for r in records if r.status == s] for s in ("completed", "pruned", "failed")}
    assert all(by.values()) and sum(map(len, by.values())) == len(records), "the fixture needs all three"
    _open_run(page, base_url, "pruned")
    # parallel coordinates: pruned trials drawn in grey at their last report, failed ones left out, each counted
    assert page.text_content("[data-testid=parallel-note]") == (
        f"({len(by['pruned'])} pruned trials are drawn grey and dashed, at their last report; "
        f"{len(by['failed'])} failed trials are not drawn (no value))")
    assert page.evaluate(SERIES_SIZES, ["chart-parallel"])["chart-parallel"] == {
        "trials": len(by["completed"]), "pruned": len(by["pruned"])}
    drawn = page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-parallel')).getOption()
        .series.find((s) => s.id === 'pruned').data.map((d) => [d.trial, d.value[d.value.length - 1]])""")
    assert drawn == [[r.trial_id, pytest.approx(r.reports[-1]["metrics"]["score"])] for r in by["pruned"]]
    # learning curves: a pruned trial's curve is grey, not the failures' red
    pruned, failed = by["pruned"][0], by["failed"][0]
    curve = page.evaluate("""(id) => echarts.getInstanceByDom(document.getElementById('chart-curves')).getOption()
        .series.find((s) => s.id === id).itemStyle.color""", f"trial-{pruned.trial_id}")
    assert curve == "#9aa4b2"
    # the table: a pruned trial's reason is muted and readable whole; a failed trial's stays red
    cell = "[data-testid=trial-row][data-trial-id='{}'] td[data-col=reason]"
    shown = page.evaluate(REASON_STYLE, cell.format(pruned.trial_id))
    assert shown["color"] != BAD and shown["whole"] and shown["title"] == shown["text"] == pruned.reason
    assert page.evaluate(REASON_STYLE, cell.format(failed.trial_id))["color"] == BAD
    # and in the trial panel
    page.click(f"[data-testid=trial-row][data-trial-id='{pruned.trial_id}']")
    page.wait_for_function(f"() => document.getElementById('detail-id').textContent === '{pruned.trial_id}'")
    assert page.eval_on_selector("[data-testid=trial-reason]", "(e) => getComputedStyle(e).color") != BAD
    page.click(f"[data-testid=trial-row][data-trial-id='{failed.trial_id}']")
    page.wait_for_function(f"() => document.getElementById('detail-id').textContent === '{failed.trial_id}'")
    assert page.eval_on_selector("[data-testid=trial-reason]", "(e) => getComputedStyle(e).color") == BAD
    _screenshot(page, "dashboard-pruned.png")


def test_parallel_note_counts_failed_trials(page, base_url, runs):
    failed = sum(r.status == "failed" for r in load_result(runs / "mixed").records)
    _open_run(page, base_url, "mixed")
    noun = "trial is" if failed == 1 else "trials are"
    assert page.text_content("[data-testid=parallel-note]") == f"({failed} failed {noun} not drawn (no value))"


# -- the lineage tree's labels ------------------------------------------------------------------------------
# Each node's label box and node centre (chart pixels), from the chart's own layout (labels are drawn on
# the canvas, not in the DOM); a label hidden by the chart is left out.
TREE_LABELS = """() => {
  const chart = echarts.getInstanceByDom(document.getElementById('chart-lineage'));
  const data = chart.getModel().getSeriesByIndex(0).getData();
  const out = [];
  for (let i = 0; i < data.count(); i++) {
    const el = data.getItemGraphicEl(i);
    if (!el) continue;
    const [cx, cy] = el.transformCoordToGlobal(0, 0);
    let text = el.getTextContent();
    el.traverse((c) => { text = text || c.getTextContent(); });  // a symbol group: its path holds the label
    let box = null;
    if (text && !text.ignore && !text.invisible) {
      const r = text.getBoundingRect().clone();
      const m = text.getComputedTransform();
      if (m) r.applyTransform(m);
      // the chart measures a line's height on a CJK glyph, too short where no such font is installed
      const h = Math.max(r.height, 1.2 * (text.style.fontSize || 12));
      box = {x: r.x, y: r.y + r.height / 2 - h / 2, w: r.width, h: h};
    }
    out.push({text: text ? text.style.text : null, cx: cx, cy: cy, box: box});
  }
  return out;
}"""


def _overlap(a: dict, b: dict, slack: float = 0.5) -> bool:
    return (a["x"] + slack < b["x"] + b["w"] and b["x"] + slack < a["x"] + a["w"]
            and a["y"] + slack < b["y"] + b["h"] and b["y"] + slack < a["y"] + a["h"])


def test_lineage_labels_do_not_overlap_when_a_parent_has_many_children(page, base_url):
    _open_run(page, base_url, "fan")
    page.locator("#chart-lineage").scroll_into_view_if_needed()
    nodes = page.evaluate(TREE_LABELS)
    assert len(nodes) == 17  # the run and its 16 trials, every label shown
    assert all(n["box"] for n in nodes), [n["text"] for n in nodes if not n["box"]]
    assert sum(n["text"].startswith("#") for n in nodes) == 16
    clashes = [(a["text"], b["text"]) for i, a in enumerate(nodes) for b in nodes[i + 1:] if _overlap(a["box"], b["box"])]
    assert clashes == []
    dot = 5  # symbolSize 10
    covered = [(a["text"], b["text"]) for a in nodes for b in nodes if a is not b and _overlap(
        a["box"], {"x": b["cx"] - dot, "y": b["cy"] - dot, "w": 2 * dot, "h": 2 * dot})]
    assert covered == []  # no label lies on another trial's node
    page.locator("#chart-lineage").screenshot(path=str(ARTIFACTS / "dashboard-lineage-fan.png"))


# -- generation, not round, under the async schedule ----------------------------------------------------------
FACTS = """() => Object.fromEntries(Array.from(document.querySelectorAll('#run-facts div'))
  .map((d) => [d.querySelector('dt').textContent, [d.querySelector('dd').textContent, d.title]]))"""
ROUNDS_AXIS = """() => echarts.getInstanceByDom(document.getElementById('chart-rounds')).getOption().xAxis[0].name"""


def test_async_runs_call_round_a_generation_and_say_what_it_is(page, base_url):
    """A 3 x 2 run whose lineage is 5 deep: its `round` is shown as the generation it is, explained on the spot."""
    _open_run(page, base_url, "deep")
    legend = page.text_content("[data-testid=round-legend]")
    assert page.is_visible("[data-testid=round-legend]")
    assert legend.startswith("generation: lineage depth under Population-Based training")
    assert legend.endswith("; --rounds × --popsize is the number of trials")
    facts = page.evaluate(FACTS)
    assert "rounds" not in facts
    assert facts["schedule"] == ["async", ""]
    assert facts["trials planned"] == ["3 × 2 = 6", ""]
    assert facts["generations"] == ["0–4", legend]
    header = page.locator("#trials-table th[data-sort=round]")
    assert header.text_content() == "Generation" and header.get_attribute("title").startswith(legend)
    shown = [int(c.text_content()) for c in page.query_selector_all("[data-testid=trial-row] td[data-col=round]")]
    assert shown == [0, 0, 1, 2, 3, 4]
    assert page.text_content("#rounds-caption") == "Population of each generation"
    assert page.evaluate(ROUNDS_AXIS) == "generation"
    page.click("[data-testid=trial-row][data-trial-id='5']")
    page.wait_for_selector("[data-testid=trial-detail]:not([hidden])")
    detail = page.locator("#detail-facts div", has=page.locator("[data-testid=detail-round]"))
    assert detail.locator("dt").text_content() == "generation" and detail.get_attribute("title") == legend
    assert page.text_content("[data-testid=detail-round]") == "4"
    assert page.text_content("[data-testid=best-yaml]").startswith("# best trial 3 (generation 2) of run deep")


def test_rounds_runs_keep_round(page, base_url):
    _open_run(page, base_url, "sync")
    assert page.is_hidden("[data-testid=round-legend]")
    facts = page.evaluate(FACTS)
    assert facts["schedule"] == ["rounds", ""] and facts["rounds"][0] == "– / 3 × 2"
    assert "generations" not in facts
    assert page.locator("#trials-table th[data-sort=round]").text_content() == "Round"
    assert page.text_content("#rounds-caption") == "Population of each round"
    assert page.evaluate(ROUNDS_AXIS) == "round"


# -- large runs --------------------------------------------------------------------------------------------
LINEAGE_OF_PAGE = """() => {
  const ids = (nodes) => nodes.map((n) => [n.trial_id, ids(n.children)]);
  const l = window.autotuneDashboard.lineage;
  return { edges: l.edges, nodes: l.nodes, roots: ids(l.roots) };
}"""


@pytest.mark.parametrize("name", ["demo", "large"])
def test_the_pages_lineage_is_the_apis(page, base_url, name):
    """The page builds the family tree from the trials list it has (one fetch less); it must be the tree
    GET /lineage gives."""
    _open_run(page, base_url, name)
    api = json.loads(urllib.request.urlopen(f"{base_url}/api/runs/{name}/lineage").read())

    def ids(nodes):
        return [[n["trial_id"], ids(n["children"])] for n in nodes]

    mine = page.evaluate(LINEAGE_OF_PAGE)
    assert mine == {"edges": api["edges"], "nodes": api["nodes"], "roots": ids(api["roots"])} and api["edges"] > 0


def test_a_large_run_shows_its_table_by_pages_and_its_other_curves_as_a_band(page, base_url, runs):
    records = load_result(runs / "large").records
    assert len(records) == 300
    _open_run(page, base_url, "large")
    assert page.get_attribute("body", "data-first-charts") == "1"  # drawn before the rest
    rows = page.locator("[data-testid=trial-row]")
    assert rows.count() == 200
    more = page.locator("[data-testid=trials-more]")
    assert more.is_visible() and more.text_content() == "Show 100 more (100 not shown)"
    page.click("[data-testid=trials-table] th[data-sort=value]")  # sorted first: the best trials come first
    best = sorted(records, key=lambda r: (-r.value, r.trial_id))
    assert int(rows.first.get_attribute("data-trial-id")) == best[0].trial_id
    more.click()
    assert rows.count() == 300 and more.is_hidden()
    series = page.evaluate("""() => echarts.getInstanceByDom(document.getElementById('chart-curves'))
        .getOption().series.map((s) => s.id)""")
    drawn = {int(s.split("-")[1]) for s in series if s.startswith("trial-")}
    assert drawn == {r.trial_id for r in best[:100]}  # the best 100 one by one (none runs)
    assert {"band-low", "band", "band-median"} <= set(series)
    assert "the 200 others as a grey band" in page.text_content("[data-testid=curves-note]")
    assert not page.errors
