/* autotune dashboard: routing, polling, tables and the trial panel.  Data comes from /api only; every
 * text from a run is set with textContent (ECharts tooltips escape it in charts.js).
 *
 * Routes: #/ (runs list) and #/run/<name>.  The page polls /api/runs/<name>/version every `poll` ms
 * (2000, or ?poll=MS in the address) and refetches the run only when that string changes.
 */
(function () {
  "use strict";
  const C = window.AutotuneCharts;
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const POLL_MS = Math.min(60000, Math.max(200, parseInt(params.get("poll") || "2000", 10) || 2000));
  const RUNS_POLL_MS = Math.max(POLL_MS, 5000);
  const TABLE_PAGE = 200;  // trial rows drawn at a time: a run of 10,000 opens without 120,000 table cells

  const S = {
    view: null, runId: null, run: null, trials: [], lineage: null, version: null, loading: false,
    selected: null, detail: null, sort: { key: "trial_id", dir: 1 }, metric: null, charts: {},
    lastRunsPoll: 0, renders: 0, control: null, tableRows: TABLE_PAGE, drawMs: {},
  };
  window.autotuneDashboard = S; // for tests and curious users

  // -- helpers -------------------------------------------------------------------------------
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-") || k === "title" || k === "href" || k === "type" || k.startsWith("aria-")) e.setAttribute(k, v);
      else e[k] = v;
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const b = await r.json(); if (b && typeof b.detail === "string") msg = b.detail; } catch (e) { /* not JSON */ }
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return r.json();
  }

  // A state-changing request: the token travels in the page's SameSite cookie, and the custom header
  // (which another site's page cannot send without a CORS preflight) marks it as this page's own.
  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json", "X-Autotune-Request": "1" },
      body: JSON.stringify(body || {}),
    });
    let b = null;
    try { b = await r.json(); } catch (e) { /* not JSON */ }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      if (b && typeof b.detail === "string") msg = b.detail;
      else if (b && Array.isArray(b.detail)) {  // a refused field: the settings schema's own message
        msg = b.detail.map((d) => String(d.msg || "").replace(/^Value error, /, "")).join("; ");
      }
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return b;
  }

  async function loadControl() {
    try { S.control = await api("/api/control"); } catch (e) { S.control = null; }
    if (S.control && !S.control.enabled) S.control = null;
    const form = $("start-form");
    const spaces = S.control ? S.control.spaces : [];
    form.hidden = !spaces.length;
    $("start-space").replaceChildren(...spaces.map((n) => el("option", { value: n }, n)));
    if (spaces.length && !S.settings) {
      try { S.settings = (await api("/api/settings")).filter((s) => s.in_start_form); } catch (e) { S.settings = []; }
      $("start-settings").replaceChildren(...S.settings.map(settingField));
    }
    document.body.dataset.control = S.control ? "on" : "off"; // for tests: the answer is in
  }

  // A start-form field for a run setting, from GET /api/settings (autotune's settings schema): a choice is a
  // select whose empty value keeps the space file's; a number an input with the setting's range.
  function settingField(s) {
    const id = "start-" + s.name;
    const label = s.name.charAt(0).toUpperCase() + s.name.slice(1).replace(/_/g, " ");
    let input;
    if (s.kind === "choice") {
      input = el("select", { id: id, "data-testid": id, title: s.help });
      input.append(el("option", { value: "" }, "(the file's)"), ...s.choices.map((c) => el("option", { value: c }, c)));
    } else {
      input = el("input", { id: id, "data-testid": id, type: "number", title: s.help + " (" + s.rule + ")" });
      if (s.low !== null) input.min = String(s.low);
      if (s.high !== null) input.max = String(s.high);
      input.step = s.kind === "integer" ? "1" : "any";
    }
    return el("label", {}, label + " ").appendChild(input).parentNode;
  }

  function renderControl(run) {
    const box = $("run-control");
    box.hidden = !S.control;
    if (!S.control) return;
    $("control-stop").disabled = run.status !== "running";
    $("control-resume").disabled = !(run.status === "interrupted" || run.status === "failed");
    box.dataset.status = run.status;
  }

  async function control(action) {
    const status = $("control-status");
    const id = S.runId;
    $("control-stop").disabled = true;
    $("control-resume").disabled = true;
    status.textContent = action === "stop" ? "stopping…" : "resuming…";
    try {
      const r = await post(runPath(id) + "/" + action);
      status.textContent = (action === "stop" ? "stop requested" : "resumed") + " (job " + r.job_id + ")";
      status.dataset.ok = "1";
    } catch (e) {
      status.textContent = "Cannot " + action + ": " + e.message;
      status.dataset.ok = "0";
      if (S.run) renderControl(S.run);
    }
  }

  async function startSearch(ev) {
    ev.preventDefault();
    const status = $("start-status");
    const body = { space: $("start-space").value };
    const name = $("start-name").value.trim();
    if (name) body.name = name;
    for (const s of S.settings || []) {  // an empty field keeps the space file's value; the server checks the rest
      const text = $("start-" + s.name).value.trim();
      if (!text) continue;
      body[s.name] = s.kind === "choice" ? text : Number(text);
    }
    status.textContent = "starting…";
    try {
      const r = await post("/api/runs", body);
      status.textContent = "started run " + r.run + " (job " + r.job_id + "); it appears above when its driver starts";
      status.dataset.ok = "1";
      status.dataset.run = r.run;
    } catch (e) {
      status.textContent = "Cannot start: " + e.message;
      status.dataset.ok = "0";
    }
  }

  function banner(msg) {
    const b = $("banner");
    b.textContent = msg || "";
    b.hidden = !msg;
  }

  function when(t) { return typeof t === "number" ? new Date(t * 1000).toLocaleString() : "–"; }

  function runPath(id) { return "/api/runs/" + encodeURIComponent(id); }

  function badge(node, status) {
    node.textContent = status;
    node.className = "badge " + String(status).replace(/[^a-z]/g, "");
  }

  function facts(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v, testid, title] of pairs) {
      const d = el("div", { title: title || null });
      d.append(el("dt", {}, k), el("dd", { "data-testid": testid || null }, v));
      dl.append(d);
    }
  }

  // -- routing -------------------------------------------------------------------------------
  function route() {
    const m = location.hash.match(/^#\/run\/(.+)$/);
    if (m) {
      let id;
      try { id = decodeURIComponent(m[1]); } catch (e) { id = m[1]; }
      showRun(id);
    } else {
      showRuns();
    }
  }

  function crumbs(name) {
    const c = $("crumbs");
    c.replaceChildren(el("a", { href: "#/" }, "Runs"));
    if (name) c.append(el("span", {}, name));
  }

  function setView(v) {
    S.view = v;
    $("view-runs").hidden = v !== "runs";
    $("view-run").hidden = v !== "run";
  }

  // -- runs list -----------------------------------------------------------------------------
  async function showRuns() {
    setView("runs");
    S.runId = null;
    document.title = "autotune dashboard";
    crumbs(null);
    $("live").hidden = true;
    await loadRuns();
  }

  async function loadRuns() {
    S.lastRunsPoll = Date.now();
    let data;
    try { data = await api("/api/runs"); banner(""); } catch (e) { banner("Cannot load runs: " + e.message); return; }
    const body = $("runs-table").querySelector("tbody");
    body.replaceChildren();
    for (const r of data.runs) {
      const tr = el("tr", { "data-testid": "run-row", "data-run": r.id });
      const a = el("a", { href: "#/run/" + encodeURIComponent(r.id) }, r.id);
      const st = el("span");
      badge(st, r.status);
      tr.append(el("td"), el("td"), el("td", {}, r.sampler || "–"), el("td", {}, r.evaluator || "–"),
        el("td", {}, r.metric + " (" + r.mode + ")"), el("td", { class: "num" }, r.trials_done),
        el("td", { class: "num" }, r.trials_failed), el("td", { class: "num" }, r.trials_pruned),
        el("td", { class: "num" }, C.fmt(r.best_value)),
        el("td", {}, when(r.started)));
      tr.children[0].append(a);
      tr.children[1].append(st);
      tr.addEventListener("click", (ev) => { if (ev.target.tagName !== "A") location.hash = "#/run/" + encodeURIComponent(r.id); });
      body.append(tr);
    }
    $("runs-empty").hidden = data.runs.length > 0;
    $("runs-problems").replaceChildren(...data.problems.map((p) => el("li", {}, p)));
    $("live").hidden = !data.runs.some((r) => r.status === "running");
  }

  // -- one run -------------------------------------------------------------------------------
  async function showRun(id) {
    const changed = S.runId !== id;
    setView("run");
    S.runId = id;
    crumbs(id);
    if (changed) {
      S.run = null; S.trials = []; S.lineage = null; S.version = null; S.selected = null; S.detail = null; S.metric = null;
      S.sort = { key: "trial_id", dir: 1 }; S.tableRows = TABLE_PAGE;
      delete document.body.dataset.firstCharts;
      $("trial-detail").hidden = true;
      $("control-status").textContent = "";
    }
    await loadRun();
  }

  async function loadRun() {
    if (S.loading || !S.runId) return;
    S.loading = true;
    const id = S.runId;
    try {
      const runP = api(runPath(id));
      const all = Promise.all([runP, api(runPath(id) + "/trials")]);
      if (!S.run) {  // a run opened: its header, then its first charts from the tallies, while its trials come
        const talliesP = api(runPath(id) + "/tallies").catch(() => null);
        const head = await runP.catch(() => null);
        if (head && id === S.runId && !S.run) {
          renderHead(head);
          await nextFrame();
          const tallies = await Promise.race([talliesP, all.then(() => null, () => null)]);
          if (tallies && id === S.runId && !S.run) { drawFirstCharts(head, tallies); await nextFrame(); }
        }
      }
      const [run, trials] = await all;
      if (id !== S.runId) return;
      S.run = run; S.trials = trials.trials; S.lineage = C.lineageOf(S.trials); S.version = trials.version;
      banner("");
      await render();
      if (S.selected !== null) await selectTrial(S.selected, { keepLog: true, quiet: true });
    } catch (e) {
      banner(e.status === 404 ? "No run named “" + id + "” here." : "Cannot load run: " + e.message);
    } finally {
      S.loading = false;
    }
  }

  // The browser paints what was drawn before the next frame: charts drawn before it show at once.
  function nextFrame() {
    return new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  }

  async function render() {
    renderHead(S.run);
    await renderCharts();
    renderTable();
    $("best-yaml").textContent = S.run.best ? S.run.best.yaml : "No completed trial yet.";
    $("copy-yaml").disabled = !S.run.best;
    S.renders += 1;
    document.body.dataset.version = S.version;
    document.body.dataset.renders = String(S.renders);
  }

  // The run's name, status, controls and facts: all from the run's own answer (the trials only add the
  // deepest generation).
  function renderHead(run) {
    document.title = run.name + " · autotune dashboard";
    $("run-title").textContent = run.name;
    badge($("run-status"), run.status);
    renderControl(run);
    $("live").hidden = run.status !== "running";
    const dur = (run.finished || (run.status === "running" ? Date.now() / 1000 : run.updated) || run.started) - run.started;
    const legend = C.roundLegend(run);
    const deepest = S.trials.reduce((m, t) => Math.max(m, t.round), -1);
    const size = run.rounds !== null && run.popsize !== null ? " = " + run.rounds * run.popsize : "";
    const schedule = legend ? [  // async: --rounds x --popsize counts trials; a trial's round is its generation
      ["trials planned", (run.rounds === null ? "–" : run.rounds) + " × " + (run.popsize || "–") + size, "fact-planned"],
      ["generations", deepest < 0 ? "–" : "0–" + deepest, "fact-generations", legend],
    ] : [
      ["rounds", (run.round === null ? "–" : run.round + 1) + " / " + (run.rounds === null ? "–" : run.rounds) + " × " + (run.popsize || "–")],
    ];
    facts($("run-facts"), [
      ["sampler", run.sampler || "–"], ["evaluator", run.evaluator || "–"],
      ["metric", run.metric + " (" + run.mode + ")"], ["schedule", run.schedule, "fact-schedule"],
    ].concat(schedule).concat([
      ["trials", run.trials_done + " done, " + run.trials_failed + " failed" +
        (run.trials_pruned ? ", " + run.trials_pruned + " pruned" : "") +
        (run.trials_stopped ? ", " + run.trials_stopped + " stopped" : "") +
        (run.trials_running ? ", " + run.trials_running + " running" : ""), "fact-trials"],
      ["best", run.best_value === null ? "–" : C.fmt(run.best_value) + " (trial " + run.best_trial + ")", "fact-best"],
      ["started", when(run.started)], ["duration", C.fmtDuration(dur)], ["source", run.source],
    ]));
    $("round-legend").textContent = legend;
    $("round-legend").hidden = !legend;
    $("rounds-caption").textContent = "Population of each " + C.roundWord(run);
  }

  // -- charts --------------------------------------------------------------------------------
  function chart(id) {
    if (!S.charts[id]) {
      const c = echarts.init($(id), null, { renderer: "canvas" });
      c.on("click", (p) => {
        const tid = p.data && typeof p.data.trial === "number" ? p.data.trial : null;
        if (tid !== null) selectTrial(tid, {});
      });
      S.charts[id] = c;
    }
    return S.charts[id];
  }

  function setChart(id, option, height) {
    const node = $(id);
    if (height && node.style.height !== height + "px") {
      node.style.height = height + "px";
      if (S.charts[id]) S.charts[id].resize();
    }
    const t0 = performance.now();
    chart(id).setOption(option, { notMerge: true });
    S.drawMs[id] = performance.now() - t0;  // the last drawing of each chart, for the benchmark
  }

  // The best-so-far charts from the tallies (each finished trial's status, value and end, by column), drawn
  // again from the whole trials list when it comes.
  function drawFirstCharts(run, tallies) {
    drawBestSoFar(run, tallies.trial_id.map((id, i) => ({ trial_id: id, status: tallies.status[i],
      value: tallies.value[i], ended: tallies.ended[i] })));
    document.body.dataset.firstCharts = "1";
  }

  function drawBestSoFar(run, trials) {
    setChart("chart-best-trial", C.bestSoFar(run, trials, false));
    setChart("chart-best-time", C.bestSoFar(run, trials, true));
  }

  async function renderCharts() {
    const run = S.run, trials = S.trials;
    drawBestSoFar(run, trials);
    if (!document.body.dataset.firstCharts) {  // the first view of the run: show these before drawing the rest
      document.body.dataset.firstCharts = "1";
      await nextFrame();
    }
    setChart("chart-rounds", C.rounds(run, trials));
    $("parallel-note").textContent = parallelNote(C.parallelCounts(run, trials));
    setChart("chart-parallel", C.parallel(run, trials));
    setChart("chart-params", C.params(run, trials), C.paramsLayout(run).height);
    renderCurves();
    const edges = S.lineage.edges;
    $("lineage-note").textContent = "(" + (edges ? edges + " warm starts" :
      "no warm starts in this run: every trial started from scratch") + ")";
    const treeNode = $("chart-lineage");
    treeNode.hidden = !edges;
    if (edges) {
      const tree = C.lineageTree(run, S.lineage, trials);
      if (S.charts["chart-lineage"]) S.charts["chart-lineage"].resize();
      setChart("chart-lineage", tree.option, tree.height);
    }
  }

  function listed(items) {
    return items.length < 2 ? items.join("") : items.slice(0, -1).join(", ") + " and " + items[items.length - 1];
  }

  // The parallel chart's note: the pruned trials it draws in grey, and the trials it leaves out, by status.
  function parallelNote(counts) {
    const parts = [];
    const p = counts.pruned;
    if (p) parts.push(p + " pruned " + (p === 1 ? "trial is" : "trials are") + " drawn grey and dashed, at " +
      (p === 1 ? "its" : "their") + " last report");
    const left = counts.missing.reduce((a, m) => a + m[1], 0);
    if (left) {
      const what = counts.missing.map(([status, k]) => k + " " + (status === "completed" ? "completed without a value" :
        status === "pruned" ? "pruned before any report" : status));
      parts.push(listed(what) + (left === 1 ? " trial is" : " trials are") + " not drawn (no value)");
    }
    return parts.length ? "(" + parts.join("; ") + ")" : "";
  }

  function renderCurves() {
    const names = C.metricNames(S.trials, S.run.metric);
    const sel = $("curve-metric");
    if (!S.metric || names.indexOf(S.metric) < 0) S.metric = names[0] || S.run.metric;
    const current = Array.from(sel.options).map((o) => o.value).join("\n");
    if (current !== names.join("\n")) sel.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    sel.value = S.metric;
    const shown = C.drawnCurves(S.run, S.trials);
    setChart("chart-curves", C.curves(S.run, S.trials, S.metric, shown));
    const drawn = shown.size, others = S.trials.length - drawn;
    $("curves-note").textContent = others > 0 ? "(the " + drawn + " best and running trials; the " + others +
      " others as a grey band, from 10% to 90% of their reports at each step, dashed at the median)" : "";
  }

  // -- trial table ---------------------------------------------------------------------------
  function columns() {
    const cols = [
      { key: "trial_id", label: "#", num: true, get: (t) => t.trial_id },
      { key: "round", label: C.roundWord(S.run) === "generation" ? "Generation" : "Round", num: true, get: (t) => t.round,
        tip: C.roundLegend(S.run) },
      { key: "status", label: "Status", get: (t) => t.status },
      { key: "value", label: S.run.metric, num: true, get: (t) => t.value, show: C.fmt },
    ];
    for (const p of S.run.params || []) {
      cols.push({ key: "p:" + p.name, label: p.name, num: p.type !== "categorical", get: (t) => t.config ? t.config[p.name] : null, show: C.fmt });
    }
    cols.push(
      { key: "parent_id", label: "Parent", num: true, get: (t) => t.parent_id },
      { key: "duration_s", label: "Time", num: true, get: (t) => t.duration_s, show: C.fmtDuration },
      { key: "node", label: "Node", get: (t) => t.node },
      { key: "reason", label: "Reason", get: (t) => t.reason },
    );
    return cols;
  }

  function compare(a, b) {
    const an = a === null || a === undefined, bn = b === null || b === undefined;
    if (an || bn) return an && bn ? 0 : an ? 1 : -1; // missing values last
    if (typeof a === "number" && typeof b === "number") return a - b;
    return String(a).localeCompare(String(b), undefined, { numeric: true });
  }

  function renderTable() {
    const cols = columns();
    const table = $("trials-table");
    const head = table.querySelector("thead tr");
    head.replaceChildren(...cols.map((c) => {
      const th = el("th", { class: c.num ? "num" : null, "data-sort": c.key,
        title: (c.tip ? c.tip + " (click to sort)" : "sort by " + c.label) }, c.label);
      th.setAttribute("aria-sort", S.sort.key === c.key ? (S.sort.dir > 0 ? "ascending" : "descending") : "none");
      th.addEventListener("click", () => {
        S.sort = { key: c.key, dir: S.sort.key === c.key ? -S.sort.dir : (c.key === "value" && S.run.mode === "max" ? -1 : 1) };
        renderTable();
      });
      return th;
    }));
    const col = cols.find((c) => c.key === S.sort.key) || cols[0];
    const rows = S.trials.slice().sort((a, b) => {
      const va = col.get(a), vb = col.get(b);
      const missing = (va === null || va === undefined) - (vb === null || vb === undefined);
      return missing || S.sort.dir * compare(va, vb) || a.trial_id - b.trial_id;
    });
    const body = table.querySelector("tbody");
    const shown = rows.slice(0, S.tableRows);
    body.replaceChildren(...shown.map((t) => {
      const tr = el("tr", { "data-testid": "trial-row", "data-trial-id": String(t.trial_id), "data-status": t.status,
        class: "st-" + t.status.replace(/[^a-z]/g, "") + (t.trial_id === S.selected ? " selected" : "") });
      for (const c of cols) {
        const v = c.get(t);
        const text = c.show ? c.show(v) : (v === null || v === undefined ? "–" : String(v));
        const td = el("td", { class: c.key === "reason" && v ? "reason" : c.num ? "num" : null, title: c.key === "reason" && v ? v : null }, text);
        td.dataset.col = c.key;
        tr.append(td);
      }
      tr.addEventListener("click", () => selectTrial(t.trial_id, {}));
      return tr;
    }));
    const left = rows.length - shown.length;  // a large run's table grows by pages, in the chosen order
    const more = $("trials-more");
    more.hidden = left <= 0;
    more.textContent = "Show " + Math.min(left, TABLE_PAGE) + " more (" + left + " not shown)";
    const done = S.run.trials_done, failed = S.run.trials_failed, running = S.run.trials_running;
    const pruned = S.run.trials_pruned;
    $("trials-count").textContent = "(" + S.trials.length + ": " + done + " done, " + failed + " failed" +
      (pruned ? ", " + pruned + " pruned" : "") + (running ? ", " + running + " running" : "") + ")";
  }

  // -- trial panel ---------------------------------------------------------------------------
  async function selectTrial(id, opts) {
    S.selected = id;
    for (const tr of $("trials-table").querySelectorAll("tbody tr")) {
      tr.classList.toggle("selected", tr.dataset.trialId === String(id));
    }
    let t;
    try { t = await api(runPath(S.runId) + "/trials/" + id); } catch (e) {
      if (!opts.quiet) banner("Cannot load trial " + id + ": " + e.message);
      return;
    }
    if (S.selected !== id) return;
    const keepLog = opts.keepLog && S.detail && S.detail.trial_id === id && $("detail-log").dataset.source === "file";
    S.detail = t;
    const panel = $("trial-detail");
    panel.hidden = false;
    panel.dataset.trialId = String(id);
    $("detail-id").textContent = String(id);
    badge($("detail-status"), t.status);
    facts($("detail-facts"), [
      [C.roundWord(S.run), t.round, "detail-round", C.roundLegend(S.run)], [S.run.metric, C.fmt(t.value), "detail-value"],
      ["budget", C.fmt(t.budget)],
      ["started", when(t.started)], ["duration", C.fmtDuration(t.duration_s)], ["node", t.node || "–"],
      ["GPUs", t.gpu_ids.length ? t.gpu_ids.join(", ") : "–"], ["attempts", t.attempts],
      ["checkpoint", t.checkpoint ? t.checkpoint + (t.checkpoint_step !== null ? " (step " + t.checkpoint_step + ")" : "") + (t.checkpoint_removed ? " (deleted: keep_checkpoints)" : "") : "–"],
    ].concat(t.parent_note ? [["parent note", t.parent_note]] : []).concat(t.retry_note ? [["retry", t.retry_note]] : []));
    renderFamily(t);
    const reason = $("detail-reason");
    reason.hidden = !t.reason;
    reason.textContent = t.reason || "";
    reason.classList.toggle("pruned", t.status === "pruned");
    $("detail-config").textContent = toYaml(t.config);
    if (!keepLog) {
      const log = $("detail-log");
      log.textContent = t.log_tail || (t.has_log ? "(press “Show full log”)" : "(no log)");
      log.dataset.source = "tail";
    }
    $("load-log").disabled = !t.has_log && !t.log_tail;
    if (!opts.quiet) panel.scrollIntoView({ block: "nearest" });
  }

  function renderFamily(t) {
    const fam = $("detail-family");
    fam.replaceChildren();
    if (t.parent_id !== null) {
      fam.append(el("span", {}, "started from"));
      const b = el("button", { type: "button", "data-testid": "detail-parent", "data-trial-id": String(t.parent_id) },
        "trial " + t.parent_id + (t.parent_step !== null ? " @ step " + t.parent_step : ""));
      b.addEventListener("click", () => selectTrial(t.parent_id, {}));
      fam.append(b);
    } else {
      fam.append(el("span", {}, "started from scratch"));
    }
    const kids = S.trials.filter((c) => c.parent_id === t.trial_id);
    if (kids.length) {
      fam.append(el("span", {}, "· children"));
      for (const k of kids) {
        const b = el("button", { type: "button", "data-testid": "detail-child", "data-trial-id": String(k.trial_id) }, "trial " + k.trial_id);
        b.addEventListener("click", () => selectTrial(k.trial_id, {}));
        fam.append(b);
      }
    }
  }

  async function loadLog() {
    if (!S.detail) return;
    const id = S.detail.trial_id;
    const log = $("detail-log");
    try {
      const r = await api(runPath(S.runId) + "/trials/" + id + "/log");
      if (!S.detail || S.detail.trial_id !== id) return;
      log.textContent = (r.truncated ? "… (showing the last " + r.text.length + " characters)\n" : "") + (r.text || "(empty log)");
      log.dataset.source = r.source === "file" ? "file" : "record";
    } catch (e) {
      log.textContent = "Cannot load the log: " + e.message;
    }
  }

  function yamlScalar(v) {
    if (v === null || v === undefined) return "null";
    if (typeof v === "number" || typeof v === "boolean") return String(v);
    const s = String(v);
    return /^[\w.\-/+ ]+$/.test(s) && !/^(true|false|null|yes|no|on|off|~)$/i.test(s) && isNaN(Number(s)) ? s : JSON.stringify(s);
  }

  function toYaml(obj) {
    const keys = Object.keys(obj || {});
    if (!keys.length) return "{}";
    return keys.map((k) => {
      const v = obj[k];
      return yamlScalar(k) + ": " + (v !== null && typeof v === "object" ? JSON.stringify(v) : yamlScalar(v));
    }).join("\n");
  }

  async function copyYaml() {
    const text = S.run && S.run.best ? S.run.best.yaml : "";
    const status = $("copy-status");
    if (!text) return;
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; }
    } catch (e) { ok = false; }
    if (!ok) { // plain http on another address: the older way
      const ta = el("textarea", { value: text });
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed"; ta.style.opacity = "0";
      document.body.append(ta);
      ta.select();
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      ta.remove();
    }
    status.textContent = ok ? "copied" : "copy failed: select the text below";
    status.dataset.ok = ok ? "1" : "0";
    setTimeout(() => { if (status.textContent === "copied") status.textContent = ""; }, 4000);
  }

  // -- polling -------------------------------------------------------------------------------
  async function tick() {
    if (!document.hidden) {
      try {
        if (S.view === "run" && S.runId && !S.loading) {
          const v = await api(runPath(S.runId) + "/version");
          banner("");
          if (v.version !== S.version) await loadRun();
        } else if (S.view === "runs" && Date.now() - S.lastRunsPoll >= RUNS_POLL_MS) {
          await loadRuns();
        }
      } catch (e) {
        banner(e.status ? "Update failed: " + e.message : "Lost contact with the dashboard server; retrying…");
      }
    }
    setTimeout(tick, POLL_MS);
  }

  function init() {
    $("copy-yaml").addEventListener("click", copyYaml);
    $("control-stop").addEventListener("click", () => control("stop"));
    $("control-resume").addEventListener("click", () => control("resume"));
    $("start-form").addEventListener("submit", startSearch);
    $("load-log").addEventListener("click", loadLog);
    $("detail-close").addEventListener("click", () => { $("trial-detail").hidden = true; S.selected = null; S.detail = null; });
    $("curve-metric").addEventListener("change", (e) => { S.metric = e.target.value; renderCurves(); });
    $("trials-more").addEventListener("click", () => { S.tableRows += TABLE_PAGE; renderTable(); });
    window.addEventListener("hashchange", route);
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => Object.values(S.charts).forEach((c) => c.resize()), 150);
    });
    loadControl().then(() => { if (S.run) renderControl(S.run); });
    route();
    setTimeout(tick, POLL_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
