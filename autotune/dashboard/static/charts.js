/* autotune dashboard: ECharts options built from the API's data.  No state; app.js owns the charts.
 *
 * Every point of a trial carries `trial` (its id) so a click on it selects that trial.  Series ids are
 * stable ("trials", "best", "failed", "box", "strip", "trial-<id>", "lineage") for the browser tests.
 */
(function () {
  "use strict";

  // viridis, dark to bright: the best value is always the brightest
  const PALETTE = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
    "#b5de2b", "#fde725"];
  const FAILED = "#c8372d";
  const RUNNING = "#2f6fde";  // a running trial's curve, drawn as its reports arrive
  const GREY = "#9aa4b2";
  const MUTED = "#667085";  // a pruned trial's reason: the rule's verdict, not an error

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function fmt(v) {
    if (v === null || v === undefined || v === "") return "–";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }

  function fmtDuration(s) {
    if (s === null || s === undefined) return "–";
    s = Math.max(0, s);
    if (s < 60) return s.toFixed(s < 1 ? 2 : s < 10 ? 1 : 0) + " s";
    const m = Math.floor(s / 60), r = Math.round(s % 60);
    if (m < 60) return m + ":" + String(r).padStart(2, "0");
    return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0");
  }

  function better(a, b, mode) { return mode === "min" ? a < b : a > b; }

  function completed(trials) {
    return trials.filter((t) => t.status === "completed" && typeof t.value === "number");
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (!isFinite(lo)) return [0, 1];
    if (lo === hi) { const d = Math.abs(lo) * 0.05 || 1; return [lo - d, hi + d]; }
    return [lo, hi];
  }

  function colorScale(values, mode) {
    const [lo, hi] = extent(values);
    return function (v) {
      if (typeof v !== "number") return GREY;
      let t = (v - lo) / (hi - lo);
      if (mode === "min") t = 1 - t;
      t = Math.min(1, Math.max(0, t));
      return PALETTE[Math.min(PALETTE.length - 1, Math.floor(t * PALETTE.length))];
    };
  }

  function paletteFor(mode) { return mode === "min" ? PALETTE.slice().reverse() : PALETTE; }

  function configLines(config, names) {
    const keys = names && names.length ? names : Object.keys(config || {});
    return keys.filter((k) => config && k in config)
      .map((k) => esc(k) + ": " + esc(fmt(config[k]))).join("<br>");
  }

  // What a trial's `round` is: under the async schedule its generation (Population-Based: its lineage
  // depth, which can pass --rounds), else its round.
  function roundWord(run) { return run.schedule === "async" ? "generation" : "round"; }

  // The line that says so, for async runs ("" for rounds).
  function roundLegend(run) {
    if (run.schedule !== "async") return "";
    return "generation: " + (run.evaluator === "pbt" ? "lineage depth under Population-Based training (a parent's generation + 1)"
      : "the trial's place in the run, in steps of --popsize (every trial starts from scratch)") +
      "; --rounds × --popsize is the number of trials";
  }

  function trialTip(t, run) {
    let s = "<b>trial " + esc(t.trial_id) + "</b> · " + (t.round === undefined ? "" : roundWord(run) + " " + esc(t.round) + " · ") + esc(t.status);
    if (typeof t.value === "number") s += "<br>" + esc(run.metric) + " = " + esc(fmt(t.value));
    const last = t.status === "pruned" ? lastReported(t, run.metric) : null;
    if (last) s += "<br>" + esc(run.metric) + " = " + esc(fmt(last[1])) + " at step " + esc(last[0]) + " (its last report)";
    if (t.reason) s += "<br><span style=\"color:" + (t.status === "pruned" ? MUTED : FAILED) + "\">" + esc(t.reason.slice(0, 200)) + "</span>";
    const names = (run.params || []).map((p) => p.name);
    const c = configLines(t.config, names);
    return c ? s + "<br>" + c : s;
  }

  function base(extra) {
    return Object.assign({
      animation: false,
      textStyle: { fontFamily: "system-ui, sans-serif" },
      tooltip: { trigger: "item", confine: true },
    }, extra);
  }

  // -- best so far ---------------------------------------------------------------------------
  function bestSoFar(run, trials, byTime) {
    const mode = run.mode;
    const t0 = run.started || 0;
    const x = (t) => byTime ? (t.ended || t0) - t0 : t.trial_id;
    const done = completed(trials).slice().sort((a, b) => x(a) - x(b) || a.trial_id - b.trial_id);
    const failed = trials.filter((t) => t.status === "failed" || t.status === "stopped");
    let best = null;
    const line = [];
    for (const t of done) {
      if (best === null || better(t.value, best, mode)) best = t.value;
      line.push([x(t), best]);
    }
    const [lo, hi] = extent(done.map((t) => t.value));
    const floor = lo - (hi - lo) * 0.06;
    const xAxis = byTime
      ? { type: "value", name: "wall time", nameLocation: "middle", nameGap: 26, min: 0,
          axisLabel: { formatter: (v) => fmtDuration(v) } }
      : { type: "value", name: "trial", nameLocation: "middle", nameGap: 26, minInterval: 1, min: 0 };
    return base({
      grid: { left: 64, right: 16, top: 28, bottom: 44 },
      legend: { top: 0, right: 8, itemWidth: 12, textStyle: { fontSize: 11 } },
      xAxis: xAxis,
      yAxis: { type: "value", scale: true, name: run.metric, nameTextStyle: { align: "left" } },
      tooltip: {
        trigger: "item", confine: true,
        formatter: (p) => p.data && p.data.t ? trialTip(p.data.t, run)
          : esc(p.seriesName) + ": " + esc(fmt(p.value[1])) + (byTime ? " at " + fmtDuration(p.value[0]) : " after trial " + esc(p.value[0])),
      },
      series: [
        { id: "trials", name: "trial", type: "scatter", symbolSize: 7, itemStyle: { color: "#8aa4d6" },
          data: done.map((t) => ({ value: [x(t), t.value], trial: t.trial_id, t: t })) },
        { id: "best", name: "best so far", type: "line", step: "end", showSymbol: false, lineStyle: { width: 2 },
          itemStyle: { color: "#2f6fdf" }, data: line, z: 3 },
        { id: "failed", name: "failed", type: "scatter", symbol: "triangle", symbolSize: 8,
          itemStyle: { color: FAILED }, data: failed.map((t) => ({ value: [x(t), floor], trial: t.trial_id, t: t })) },
      ],
    });
  }

  // -- rounds --------------------------------------------------------------------------------
  function quantile(sorted, q) {
    const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
  }

  function jitter(id) { return ((id * 0.6180339887) % 1 - 0.5) * 0.5; }

  function rounds(run, trials) {
    const done = completed(trials);
    let last = 0;
    for (const t of trials) last = Math.max(last, t.round);
    const cats = [];
    const boxes = [];
    for (let r = 0; r <= last; r++) {
      cats.push(String(r));
      const vs = done.filter((t) => t.round === r).map((t) => t.value).sort((a, b) => a - b);
      boxes.push(vs.length ? [vs[0], quantile(vs, 0.25), quantile(vs, 0.5), quantile(vs, 0.75), vs[vs.length - 1]] : []);
    }
    const color = colorScale(done.map((t) => t.value), run.mode);
    return base({
      grid: { left: 64, right: 16, top: 16, bottom: 44 },
      xAxis: [
        { type: "category", data: cats, name: roundWord(run), nameLocation: "middle", nameGap: 26 },
        { type: "value", min: -0.5, max: last + 0.5, show: false },
      ],
      yAxis: { type: "value", scale: true, name: run.metric, nameTextStyle: { align: "left" } },
      tooltip: {
        trigger: "item", confine: true,
        formatter: (p) => p.data && p.data.t ? trialTip(p.data.t, run)
          : roundWord(run) + " " + esc(p.name) + "<br>max " + esc(fmt(p.value[5])) + "<br>median " + esc(fmt(p.value[3])) + "<br>min " + esc(fmt(p.value[1])),
      },
      series: [
        { id: "box", name: roundWord(run), type: "boxplot", data: boxes, itemStyle: { color: "#eef3fc", borderColor: "#6d8fd0" } },
        { id: "strip", name: "trial", type: "scatter", xAxisIndex: 1, symbolSize: 7, z: 3,
          data: done.map((t) => ({ value: [t.round + jitter(t.trial_id), t.value], trial: t.trial_id, t: t,
            itemStyle: { color: color(t.value), borderColor: "#fff", borderWidth: 0.5 } })) },
      ],
    });
  }

  // -- parallel coordinates ------------------------------------------------------------------
  function axisFor(p) {
    if (p.type === "categorical") return { type: "category", data: (p.choices || []).map(String) };
    if (p.log && p.low > 0) return { type: "log", min: p.low, max: p.high };
    const a = { type: "value" };
    if (typeof p.low === "number") a.min = p.low;
    if (typeof p.high === "number") a.max = p.high;
    return a;
  }

  function paramValue(p, t) {
    const v = t.config ? t.config[p.name] : undefined;
    if (v === undefined || v === null) return null;
    return p.type === "categorical" ? String(v) : v;
  }

  // Pruned trials stopped before their budget ended: no value, but a last report of the metric.  The
  // parallel chart draws them in grey at that report (where the search gave up), apart from the colour scale.
  function prunedDrawn(run, trials) {
    return trials.filter((t) => t.status === "pruned" && lastReported(t, run.metric) !== null);
  }

  // What the parallel chart draws, and the trials it leaves out counted by status (in STATUS_ORDER).
  const STATUS_ORDER = ["failed", "stopped", "pruned", "running", "pending", "completed"];
  function parallelCounts(run, trials) {
    const drawn = new Set(completed(trials).concat(prunedDrawn(run, trials)).map((t) => t.trial_id));
    const missing = {};
    for (const t of trials) if (!drawn.has(t.trial_id)) missing[t.status] = (missing[t.status] || 0) + 1;
    const order = STATUS_ORDER.filter((s) => s in missing).concat(Object.keys(missing).filter((s) => STATUS_ORDER.indexOf(s) < 0).sort());
    return { completed: completed(trials).length, pruned: prunedDrawn(run, trials).length,
      missing: order.map((s) => [s, missing[s]]) };
  }

  function parallel(run, trials) {
    const params = run.params || [];
    const done = completed(trials);
    const pruned = prunedDrawn(run, trials);
    const n = params.length;
    const [lo, hi] = extent(done.map((t) => t.value));
    const axes = params.map((p, i) => Object.assign({ dim: i, name: p.name }, axisFor(p)));
    axes.push({ dim: n, name: run.metric, type: "value", scale: true });
    return base({
      parallel: { left: 48, right: 150, top: 40, bottom: 24, parallelAxisDefault: { nameTextStyle: { fontSize: 12 } } },
      parallelAxis: axes,
      visualMap: { type: "continuous", dimension: n, min: lo, max: hi, calculable: true, right: 8, top: 30, seriesIndex: 0,
        itemHeight: 200, precision: 4, text: [run.mode === "min" ? "worse" : "better", run.mode === "min" ? "better" : "worse"],
        inRange: { color: paletteFor(run.mode) } },
      tooltip: { trigger: "item", confine: true, formatter: (p) => p.data && p.data.t ? trialTip(p.data.t, run) : "" },
      series: [{ id: "trials", type: "parallel", lineStyle: { width: 1.5, opacity: 0.75 }, emphasis: { lineStyle: { width: 3 } },
        data: done.map((t) => ({ value: params.map((p) => paramValue(p, t)).concat([t.value]), trial: t.trial_id, t: t })) }]
        .concat(pruned.length ? [{ id: "pruned", name: "pruned", type: "parallel", z: 1,
          lineStyle: { width: 1, opacity: 0.6, color: GREY, type: "dashed" }, emphasis: { lineStyle: { width: 2 } },
          data: pruned.map((t) => ({ value: params.map((p) => paramValue(p, t)).concat([lastReported(t, run.metric)[1]]),
            trial: t.trial_id, t: t })) }] : []),
    });
  }

  // -- parameters against the metric ---------------------------------------------------------
  const PARAM_COLS = 3;
  function paramsLayout(run) {
    const n = Math.max(1, (run.params || []).length);
    const cols = Math.min(n, PARAM_COLS);
    return { cols: cols, rows: Math.ceil(n / cols), height: Math.ceil(n / cols) * 230 + 16 };
  }

  function params(run, trials) {
    const ps = run.params || [];
    const done = completed(trials);
    const { cols } = paramsLayout(run);
    const [lo, hi] = extent(done.map((t) => t.value));
    const grids = [], xAxes = [], yAxes = [], series = [];
    ps.forEach((p, i) => {
      const col = i % cols, row = Math.floor(i / cols);
      const w = 100 / cols;
      grids.push({ left: (col * w + 6) + "%", width: (w - 10) + "%", top: row * 230 + 20, height: 170 });
      const ax = axisFor(p);
      delete ax.min; delete ax.max;
      xAxes.push(Object.assign(ax, { gridIndex: i, name: p.name, nameLocation: "middle", nameGap: 24, scale: true }));
      yAxes.push({ gridIndex: i, type: "value", scale: true, name: col === 0 ? run.metric : "", splitNumber: 4 });
      series.push({ id: "param-" + p.name, name: p.name, type: "scatter", xAxisIndex: i, yAxisIndex: i, symbolSize: 7,
        data: done.filter((t) => paramValue(p, t) !== null)
          .map((t) => ({ value: [paramValue(p, t), t.value], trial: t.trial_id, t: t })) });
    });
    return base({
      grid: grids.length ? grids : [{}], xAxis: xAxes.length ? xAxes : [{ type: "value" }],
      yAxis: yAxes.length ? yAxes : [{ type: "value" }],
      visualMap: { show: false, dimension: 1, min: lo, max: hi, inRange: { color: paletteFor(run.mode) },
        seriesIndex: series.map((_, i) => i) },
      tooltip: { trigger: "item", confine: true, formatter: (p) => p.data && p.data.t ? trialTip(p.data.t, run) : "" },
      series: series,
    });
  }

  // -- learning curves -----------------------------------------------------------------------
  function metricNames(trials, preferred) {
    const names = new Set();
    for (const t of trials) for (const r of t.reports || []) for (const k of Object.keys(r.metrics || {})) {
      if (typeof r.metrics[k] === "number") names.add(k);
    }
    const out = Array.from(names).sort();
    if (preferred && names.has(preferred)) { out.splice(out.indexOf(preferred), 1); out.unshift(preferred); }
    return out;
  }

  function pointsOf(t, metric) {
    // One point per step, the last report of a step winning, in step order: how the database keeps
    // intermediate values.  A trial may report a step again (a bundled trial with `patience` ends by
    // repeating its best epoch), which must not draw a stroke back along the curve.
    const byStep = new Map();
    (t.reports || []).forEach((r, i) => {
      const v = r.metrics ? r.metrics[metric] : undefined;
      if (typeof v === "number") byStep.set(r.step === null ? i + 1 : r.step, v);
    });
    return Array.from(byStep.entries()).sort((a, b) => a[0] - b[0]);
  }

  // [step, value] of a trial's last report of `metric`, or null.
  function lastReported(t, metric) {
    const pts = pointsOf(t, metric);
    return pts.length ? pts[pts.length - 1] : null;
  }

  const CURVES_DRAWN = 100;  // trials whose curves are drawn one by one; the others as a band per step

  // The trials a curves chart draws one by one: all of a small run; of a large one the best, the running
  // and the top by value, up to CURVES_DRAWN (a 10,000-line chart takes seconds to draw and shows nothing).
  function drawnCurves(run, trials) {
    if (trials.length <= CURVES_DRAWN) return new Set(trials.map((t) => t.trial_id));
    const sign = run.mode === "min" ? 1 : -1;
    const pick = trials.filter((t) => t.trial_id === run.best_trial || t.status === "running");
    const top = completed(trials).sort((a, b) => sign * (a.value - b.value) || a.trial_id - b.trial_id);
    const ids = new Set(pick.map((t) => t.trial_id));
    for (const t of top) { if (ids.size >= CURVES_DRAWN) break; ids.add(t.trial_id); }
    return ids;
  }

  // The 10%, 50% and 90% quantiles of `metric` at each step over `trials`: [[step, q10, q50, q90], ...].
  function bands(trials, metric) {
    const at = new Map();
    for (const t of trials) for (const [step, v] of pointsOf(t, metric)) {
      if (!at.has(step)) at.set(step, []);
      at.get(step).push(v);
    }
    return Array.from(at.entries()).sort((a, b) => a[0] - b[0]).map(([step, vs]) => {
      vs.sort((a, b) => a - b);
      return [step, quantile(vs, 0.1), quantile(vs, 0.5), quantile(vs, 0.9)];
    });
  }

  // `drawn`: the trials drawn one by one (default: drawnCurves), the others as a band
  function curves(run, trials, metric, drawn) {
    const byId = new Map(trials.map((t) => [t.trial_id, t]));
    const color = colorScale(completed(trials).map((t) => t.value), run.mode);
    const best = run.best_trial;
    drawn = drawn || drawnCurves(run, trials);
    const series = [];
    const links = [];
    for (const t of trials) {
      if (!drawn.has(t.trial_id)) continue;
      const pts = pointsOf(t, metric);
      if (!pts.length) continue;
      const isBest = t.trial_id === best;
      series.push({ id: "trial-" + t.trial_id, name: "trial " + t.trial_id, type: "line", data: pts.map((p) => ({ value: p, trial: t.trial_id, t: t })),
        showSymbol: true, symbolSize: 4, z: isBest ? 5 : 2,
        lineStyle: { width: isBest ? 3 : 1.2, opacity: isBest ? 1 : 0.75 },
        itemStyle: { color: t.status === "completed" ? color(t.value) : t.status === "running" ? RUNNING :
          t.status === "pruned" ? GREY : FAILED } });
      const parent = t.parent_id !== null ? byId.get(t.parent_id) : null;
      if (parent && t.parent_step !== null && drawn.has(parent.trial_id)) {
        const pp = pointsOf(parent, metric).filter((p) => p[0] === t.parent_step);
        if (pp.length) links.push({ coords: [pp[pp.length - 1], pts[0]], trial: t.trial_id });
      }
    }
    const rest = trials.filter((t) => !drawn.has(t.trial_id));
    if (rest.length) {  // the others: where the middle 80% of their reports lie at each step, and the median
      const b = bands(rest, metric);
      const band = { type: "line", stack: "band", symbol: "none", silent: true, lineStyle: { opacity: 0 }, z: 1 };
      series.push(Object.assign({ id: "band-low", name: "others, 10%", data: b.map((r) => [r[0], r[1]]) }, band));
      series.push(Object.assign({ id: "band", name: "others, 10-90%", data: b.map((r) => [r[0], r[3] - r[1]]),
        areaStyle: { color: GREY, opacity: 0.3 } }, band));
      series.push({ id: "band-median", name: "others, median", type: "line", symbol: "none", silent: true, z: 1,
        lineStyle: { color: GREY, width: 1.5, type: "dashed" }, data: b.map((r) => [r[0], r[2]]) });
    }
    series.push({ id: "warmstarts", name: "warm start", type: "lines", coordinateSystem: "cartesian2d", silent: true,
      lineStyle: { type: "dashed", width: 1, color: GREY, opacity: 0.8 }, data: links, z: 1 });
    return base({
      grid: { left: 64, right: 16, top: 28, bottom: 44 },
      xAxis: { type: "value", name: "step", nameLocation: "middle", nameGap: 26, minInterval: 1, scale: true },
      yAxis: { type: "value", scale: true, name: metric, nameTextStyle: { align: "left" } },
      tooltip: { trigger: "item", confine: true,
        formatter: (p) => p.data && p.data.t ? trialTip(p.data.t, run) + "<br>step " + esc(p.value[0]) + ": " + esc(metric) + " = " + esc(fmt(p.value[1])) : "" },
      series: series,
    });
  }

  // -- lineage -------------------------------------------------------------------------------
  // The family tree of the trials list, as GET /api/runs/{run}/lineage gives it (the page builds it from
  // the trials it has, rather than fetch them twice): each trial under the earlier trial whose checkpoint
  // it started from; a trial whose parent is unknown or not earlier is a root.
  function lineageOf(trials) {
    const nodes = new Map();
    for (const t of trials) {
      nodes.set(t.trial_id, { trial_id: t.trial_id, round: t.round, status: t.status, value: t.value,
        parent_id: t.parent_id, note: t.parent_note, config: t.config, children: [] });
    }
    const roots = [];
    let edges = 0;
    for (const id of Array.from(nodes.keys()).sort((a, b) => a - b)) {
      const n = nodes.get(id), p = n.parent_id;
      if (p !== null && p !== undefined && nodes.has(p) && p < id) { nodes.get(p).children.push(n); edges += 1; }
      else roots.push(n);
    }
    return { roots: roots, edges: edges, nodes: nodes.size };
  }

  function lineageTree(run, lineage, trials) {
    const color = colorScale(completed(trials).map((t) => t.value), run.mode);
    let leaves = 0;
    function node(n) {
      const kids = (n.children || []).map(node);
      if (!kids.length) leaves += 1;
      const failed = n.status === "failed" || n.status === "stopped";
      const pending = n.status === "running" || n.status === "pending";
      return {
        name: "#" + n.trial_id, value: n.value, trial: n.trial_id, t: n, children: kids,
        itemStyle: { color: failed ? "#fff" : pending ? "#fff" : color(n.value),
          borderColor: failed ? FAILED : pending ? "#2f6fdf" : "#555", borderWidth: failed || pending ? 2 : 1,
          borderType: pending ? "dashed" : "solid" },
        label: { formatter: "#" + n.trial_id + (typeof n.value === "number" ? "  " + fmt(n.value) : failed ? "  failed" :
          n.status === "pruned" ? "  pruned" : "") },
      };
    }
    const roots = (lineage.roots || []).map(node);
    const root = { name: run.name, children: roots, itemStyle: { color: "#1d2430" },
      label: { formatter: "run", position: "top", align: "center", distance: 4 } };
    const option = base({
      tooltip: { trigger: "item", confine: true, formatter: (p) => {
        const t = p.data && p.data.t;
        if (!t) return esc(run.name);
        let s = "<b>trial " + esc(t.trial_id) + "</b> · " + roundWord(run) + " " + esc(t.round) + " · " + esc(t.status);
        if (typeof t.value === "number") s += "<br>" + esc(run.metric) + " = " + esc(fmt(t.value));
        s += "<br>" + (t.parent_id !== null ? "from trial " + esc(t.parent_id) : "from scratch");
        if (t.note) s += "<br>" + esc(t.note);
        const c = configLines(t.config, (run.params || []).map((p) => p.name));
        return c ? s + "<br>" + c : s;
      } },
      series: [{ id: "lineage", type: "tree", data: [root], orient: "LR", layout: "orthogonal",
        left: 40, right: 120, top: 16, bottom: 16, symbol: "circle", symbolSize: 10,
        initialTreeDepth: -1, expandAndCollapse: false, roam: false,
        // Labels beside their node, never above it: a parent's label on its left (where only its own
        // incoming link runs, behind a light backdrop), a leaf's on its right.  Siblings are LEAF_PX apart,
        // more than a label's height, so a parent with many children stacks them without overlap; a tree
        // too deep for the width drops the labels that would still collide (tooltips keep every node).
        label: { position: "left", verticalAlign: "middle", align: "right", fontSize: 11, distance: 6,
          backgroundColor: "rgba(255,255,255,0.85)", padding: [1, 2] },
        leaves: { label: { position: "right", verticalAlign: "middle", align: "left", distance: 6 } },
        labelLayout: { hideOverlap: true },
        lineStyle: { color: "#b8c2d0", width: 1.2, curveness: 0.4 } }],
    });
    return { option: option, leaves: leaves, depth: depthOf(lineage.roots || []), height: lineageHeight(leaves) };
  }

  const LEAF_PX = 22;  // vertical room per leaf of the lineage tree: a label (11px text) and a gap
  function lineageHeight(leaves) { return Math.max(220, Math.min(6000, leaves * LEAF_PX + 40)); }

  function depthOf(nodes) {
    let d = 0;
    for (const n of nodes) d = Math.max(d, 1 + depthOf(n.children || []));
    return d;
  }

  window.AutotuneCharts = { esc, fmt, fmtDuration, bestSoFar, rounds, parallel, params, paramsLayout, curves,
    metricNames, lineageTree, completed, parallelCounts, roundWord, roundLegend, drawnCurves, CURVES_DRAWN, lineageOf };
})();
