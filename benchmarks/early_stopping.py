"""Early stopping side by side: autotune against Ray Tune and Optuna on the same trial and wall budget.

    python benchmarks/early_stopping.py                  # both parts, the committed results
    python benchmarks/early_stopping.py --quick          # CI: a few minutes
    python benchmarks/early_stopping.py --parts real --seeds 0 1 --budget-s 90 --tools autotune-asha-bayes,tune-pbt
    python benchmarks/early_stopping.py --parts real --workload text   # the PBTs on the bundled text trial

Part ``real`` (the code is in ``_es_real.py``): one machine, every tool in turn on the bundled image
trial (``trials/image_classification.py``: the MNIST-pretrained CNN fine-tuned on 100 Fashion-MNIST
images per class, val_accuracy on 2,000 images after every epoch), searching learning_rate
(log-uniform 1e-5..1e-1) and batch_size (16, 32, 64, 128) with the rest fixed as in
``search_spaces/lr_bs.yaml`` (AdamW, constant learning rate).  The tools:

* autotune, ``schedule="async"``, evaluator ``full`` + ``early_stop="asha"``, sampler ``bayes`` and ``pshe2``;
* autotune, evaluator ``pbt`` (sampler ``pshe2``);
* Ray Tune ``Tuner`` with ``ASHAScheduler`` + ``OptunaSearch``, and with ``PopulationBasedTraining``;
* Optuna ``TPESampler`` + ``HyperbandPruner`` with 2 worker processes on a shared journal file.

Fairness: every tool runs 2 trials at a time (a local Ray with ``num_cpus=2``, 1 CPU per trial, or 2
Optuna processes), one torch thread per trial, the same trial code through one wrapper that logs every
report with its wall time; at most ``--epochs`` (10) epochs per trial for the ASHA/Hyperband tools, with
the first rung at 1 epoch and reduction factor 3 in all of them; both PBTs take a decision every 2
epochs with a population of 4 and neither caps a lineage's epochs (autotune's pbt cannot), so a PBT
model may train longer than 10 epochs within the budget.  TPE runs with ``constant_liar=True`` and 10
random start-up trials in all three TPE users (autotune's ``bayes`` default); Ray Tune reuses its
actors (``reuse_actors=True``: without it Ray 2.60 starts a process per trial, see overhead.py).  Each
tool runs in a fresh process; torch and the tool are imported, and Ray started (``ray.init``, a few
seconds, recorded as ``ray_start_s``), before its clock starts; everything after, worker processes
included, is inside the budget of ``--budget-s`` wall seconds.  Each tool stops by its own time
budget: Ray Tune's ``time_budget_s`` (stops the running trials), Optuna's ``timeout`` and autotune's
``time_budget`` (no trial starts after it, the running ones finish); only reports made within the
budget count.  The tools run in a rotated order per seed so that load drifting over the run favours none.

Reported: ``early_stopping_real_curves.csv`` (tool, seed, t_s, best_so_far: the best val_accuracy any
report of the search had reached by then, pruned trials' reports included), ``early_stopping_real_runs.csv``
(one row per tool and seed), ``early_stopping_real_summary.csv`` (median final best, epochs trained,
trials ended and pruned within the budget -- a trial of autotune's pbt is one 2-epoch step, while Ray
Tune's PBT trials never end, so it shows 0 -- and the time each tool needs to reach the target: the best
peer's (non-autotune tool's) median final best), ``early_stopping_real_machine.csv``.  The goal set for
autotune: the target in at most half the best peer's median time.

Workload ``text`` (``--workload text``, part real only): the same, on the bundled text trial
(``trials/text_classification.py``: the MiniLM-L6 encoder + a linear head, fully fine-tuned on 40 BBC
News articles per class, val_accuracy on 200 held-out articles after every epoch), the PBT tools only
(``autotune-pbt`` with the library's default rules, ``autotune-pbt-perturb`` and ``-sampler`` with
those explore rules, ``tune-pbt``, ``tune-pb2``), a decision after every
epoch, population 4, 2 trials at a time as above.  Searched: ``encoder_lr`` (log-uniform 1e-6..3e-4),
``head_lr`` (log-uniform 1e-4..1e-1) and ``batch_size`` (8, 16, 32; PB2 keeps it as first drawn), the
ranges of ``search_spaces/text_finetune.yaml``; the rest is that file's ``fixed:`` made cheaper: 32 tokens
an article, 40 validation articles per class, a constant learning rate without warmup (13-21 s an
epoch a trial, 2 at a time, on 2 shared busy cores).  Default budget 240 s per tool and seed (seeds
0 1 2; --quick: 35 s, seed 0).
The CSV files are ``early_stopping_text_{curves,runs,summary,machine}.csv``, the same columns;
"final log10 lr" is the encoder's learning rate.

Part ``simulated``: see ``_es_simulated.py``.
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402
import _es_real  # noqa: E402

FULL = dict(seeds=[0, 1, 2, 3, 4], budget_s=90.0, epochs=10)
QUICK = dict(seeds=[0], budget_s=14.0, epochs=3)
#: --quick (CI) runs each peer and one autotune tool per evaluator: the other autotune tools differ from these
#: in flags only (a sampler, an explore rule, a schedule), which tests/test_pbt.py and test_stopping.py cover
QUICK_TOOLS = ["autotune-asha-bayes", "autotune-pbt", "tune-asha-optuna", "tune-pbt", "tune-pb2", "optuna-hyperband"]
#: --workload text: the PBT tools only (all of them also under --quick), epochs unused (no tool caps a lineage)
TEXT_FULL = dict(seeds=[0, 1, 2], budget_s=240.0, epochs=10)
TEXT_QUICK = dict(seeds=[0], budget_s=35.0, epochs=3)
PREFIX = {"image": "early_stopping_real", "text": "early_stopping_text"}  # the CSV files' names


def best_curve(reports: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(time, best so far) at every improvement."""
    out: list[tuple[float, float]] = []
    for e in reports:
        if "acc" in e and math.isfinite(e["acc"]) and (not out or e["acc"] > out[-1][1]):
            out.append((e["t"], e["acc"]))
    return out


def time_to(curve: list[tuple[float, float]], target: float) -> float:
    return next((t for t, best in curve if best >= target - 1e-12), math.inf)


def run_real(quick: bool, out: Path, seeds: list[int] | None, budget_s: float | None, epochs: int | None,
             tools: list[str], workload: str = "image") -> str:
    if workload == "image":
        cfg = dict(QUICK if quick else FULL)
    else:
        cfg = dict(TEXT_QUICK if quick else TEXT_FULL)
    prefix = PREFIX[workload]
    seeds = seeds if seeds is not None else cfg["seeds"]
    budget_s = budget_s or cfg["budget_s"]
    epochs = epochs or cfg["epochs"]
    runs: list[dict[str, Any]] = []
    failed: list[str] = []
    curves: dict[tuple[str, int], list[tuple[float, float]]] = {}
    work = Path(tempfile.mkdtemp(prefix="autotune-es-real-"))
    try:
        for i, seed in enumerate(seeds):
            k = i % len(tools)
            for pos, tool in enumerate(tools[k:] + tools[:k]):
                try:
                    res = _es_real.run_tool(tool, seed, budget_s, epochs, work / f"{tool}-{seed}", workload)
                except RuntimeError as e:  # keep the other runs of a long benchmark; main() fails at the end
                    print(f"FAILED: {e}", flush=True)
                    failed.append(f"{tool} seed {seed}")
                    continue
                finally:  # its checkpoints (the text trial's are 271 MB each) are of no further use
                    shutil.rmtree(work / f"{tool}-{seed}", ignore_errors=True)
                curve = best_curve(res["reports"])
                curves[(tool, seed)] = curve
                runs.append({"tool": tool, "seed": seed, "position": pos, "final_best": curve[-1][1] if curve else None,
                             "epochs": sum("acc" in e for e in res["reports"]), "completed": res["completed"],
                             "pruned": res["pruned"], "trials": res["completed"] + res["pruned"],
                             "errors": res.get("errors", 0), "ray_start_s": res["ray_start_s"],
                             "stop_s": res["stop_s"], **lr_drift(res.get("final_lrs") or [])})
                print(f"seed {seed} {tool}: best {runs[-1]['final_best']}, {runs[-1]['epochs']} epochs, "
                      f"{runs[-1]['trials']} trials ({res['pruned']} pruned)", flush=True)
                write_curves(out / f"{prefix}_curves.csv", curves, budget_s)  # as it goes
                _bench.write_csv(out / f"{prefix}_runs.csv", runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary, verdict = summarise(runs, curves, tools, workload)
    _bench.write_csv(out / f"{prefix}_summary.csv", summary)
    extra: dict[str, Any] = {"part": "real", "seeds": " ".join(map(str, seeds)), "budget_s": budget_s, "epochs": epochs,
                             "slots": _es_real.SLOTS, "tools": " ".join(tools)}
    if workload != "image":
        wl = _es_real.WORKLOADS[workload]
        extra.update(workload=workload, trial=f"trials/{wl['module']}.py", pbt_interval=wl["interval"],
                     population=_es_real.POPULATION,
                     space=" ".join([f"{k}=log-uniform({lo:g},{hi:g})" for k, (lo, hi) in wl["log"].items()]
                                    + [f"{k}={'|'.join(map(str, c))}" for k, c in wl["choices"].items()]),
                     fixed=" ".join(f"{k}={v}" for k, v in wl["fixed"].items()))
    _bench.write_machine(out / f"{prefix}_machine.csv", extra)
    rows = [[s["tool"], s["seeds"], _fmt(s["final_best_median"], 4), s["epochs_median"], s["trials_median"],
             s["pruned_median"], s["t_to_target_s"], _fmt(s["t_to_target_median_s"]), _fmt(s["x_best_peer"], 2),
             "" if s["final_log10_lr_median"] is None else
             f"{s['final_log10_lr_median']:.2f} ({s['final_log10_lr_spread_median']:.2f})"]
            for s in summary]
    if workload == "image":
        setup = f"at most {epochs} epochs per trial"
    else:
        interval = _es_real.WORKLOADS[workload]["interval"]
        setup = (f"workload {workload}, a PBT decision every {interval} epoch{'s' * (interval != 1)}, "
                 f"population {_es_real.POPULATION}")
    return (_bench.table(rows, ["tool", "seeds", "final best (median)", "epochs", "trials", "pruned",
                                "s to target, per seed", "s to target (median)", "x best peer's",
                                "final log10 lr, median (spread)"])
            + f"\n\nbudget {budget_s:g} s per tool and seed, {setup}, {_es_real.SLOTS} "
              f"trials at a time\n{verdict}" + (f"\nFAILED runs: {', '.join(failed)}" if failed else ""))


def lr_drift(lrs: list[float]) -> dict[str, Any]:
    """Where a PBT's final population's learning rates ended: the median and the spread (max - min) of
    log10(lr); a population that collapsed onto one low rate shows a low median and a spread near 0."""
    if not lrs:
        return {"final_log10_lr_median": None, "final_log10_lr_spread": None}
    logs = [math.log10(x) for x in lrs]
    return {"final_log10_lr_median": round(statistics.median(logs), 3), "final_log10_lr_spread": round(max(logs) - min(logs), 3)}


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return ""
    return "not reached" if math.isinf(x) else f"{x:.{digits}f}"


def write_curves(path: Path, curves: dict[tuple[str, int], list[tuple[float, float]]], budget_s: float) -> None:
    rows = []
    for (tool, seed), curve in curves.items():
        rows += [{"tool": tool, "seed": seed, "t_s": round(t, 3), "best_so_far": b} for t, b in curve]
        if curve:  # where the budget ended
            rows.append({"tool": tool, "seed": seed, "t_s": budget_s, "best_so_far": curve[-1][1]})
    _bench.write_csv(path, rows, ["tool", "seed", "t_s", "best_so_far"])


def summarise(runs: list[dict[str, Any]], curves: dict[tuple[str, int], list[tuple[float, float]]],
              tools: list[str], workload: str = "image") -> tuple[list[dict[str, Any]], str]:
    med = lambda xs: statistics.median(xs) if xs else None  # noqa: E731
    by = {t: [r for r in runs if r["tool"] == t] for t in tools}
    finals = {t: med([r["final_best"] if r["final_best"] is not None else 0.0 for r in rs]) for t, rs in by.items()}
    peers = [t for t in tools if not t.startswith("autotune") and by[t]]
    best_peer = max(peers, key=lambda t: finals[t]) if peers else None
    target = finals[best_peer] if best_peer else None
    times = {t: [time_to(curves[(t, r["seed"])], target) for r in rs] if target is not None else []
             for t, rs in by.items()}
    peer_time = med(times[best_peer]) if best_peer else None
    summary = []
    for t in tools:
        rs = by[t]
        tt = med(times[t])
        ratio = tt / peer_time if tt is not None and peer_time and math.isfinite(peer_time) else None
        summary.append({"tool": t, "setting": _es_real.setting(t, workload), "seeds": len(rs),
                        "final_best_median": finals[t],
                        "final_best_per_seed": " ".join(f"{r['final_best'] or 0:.4f}" for r in rs),
                        "epochs_median": med([r["epochs"] for r in rs]),
                        "trials_median": med([r["trials"] for r in rs]),
                        "pruned_median": med([r["pruned"] for r in rs]),
                        "ray_start_s_median": med([r["ray_start_s"] for r in rs]),
                        "final_log10_lr_median": med([r["final_log10_lr_median"] for r in rs
                                                      if r.get("final_log10_lr_median") is not None]),
                        "final_log10_lr_spread_median": med([r["final_log10_lr_spread"] for r in rs
                                                             if r.get("final_log10_lr_spread") is not None]),
                        "target": target, "best_peer": best_peer,
                        "t_to_target_s": " ".join(_fmt(x) for x in times[t]), "t_to_target_median_s": tt,
                        "x_best_peer": ratio})
    if best_peer is None:
        return summary, "no peer tool ran: no target"
    ours = [s for s in summary if s["tool"].startswith("autotune") and s["seeds"]]
    verdict = (f"target {target:.4f}: the median final best of the best peer, {best_peer}, which reaches it in a "
               f"median {_fmt(peer_time)} s")
    verdict += _pbt_verdict(summary, curves, runs)
    if ours:
        fastest = min(ours, key=lambda s: s["t_to_target_median_s"])
        r = fastest["x_best_peer"]
        if r is None or math.isinf(r):
            verdict += ("; no autotune search reaches it in the median seed within the budget "
                        "(goal: half the peer's time): NOT met")
        else:
            verdict += (f"; autotune's fastest, {fastest['tool']}: {_fmt(fastest['t_to_target_median_s'])} s, "
                        f"{r:.2f}x the peer's time (goal: <= 0.5x): " + ("met" if r <= 0.5 else "NOT met"))
    return summary, verdict


def _pbt_verdict(summary: list[dict[str, Any]], curves: dict[tuple[str, int], list[tuple[float, float]]],
                 runs: list[dict[str, Any]]) -> str:
    """The Population-Based goal: autotune's default pbt reaches Ray Tune PBT's median final best in at
    most half Ray Tune PBT's median time, and ends higher than every peer."""
    by = {s["tool"]: s for s in summary}
    if "autotune-pbt" not in by or "tune-pbt" not in by or not by["tune-pbt"]["seeds"]:
        return ""
    target = by["tune-pbt"]["final_best_median"]

    def med_time(tool: str) -> float:
        return statistics.median([time_to(curves[(tool, r["seed"])], target) for r in runs if r["tool"] == tool])

    ours, theirs = med_time("autotune-pbt"), med_time("tune-pbt")
    peers = [s for s in summary if not s["tool"].startswith("autotune") and s["seeds"]]
    top = max(peers, key=lambda s: s["final_best_median"])
    faster = math.isfinite(ours) and ours <= 0.5 * theirs
    higher = by["autotune-pbt"]["final_best_median"] > top["final_best_median"]
    return (f"\npbt: Ray Tune PBT's median final best {target:.4f}, reached in a median {_fmt(theirs)} s; autotune's "
            f"default pbt in {_fmt(ours)} s (goal: <= half): {'met' if faster else 'NOT met'}; autotune pbt ends at "
            f"{by['autotune-pbt']['final_best_median']:.4f}, the best peer ({top['tool']}) at "
            f"{top['final_best_median']:.4f} (goal: higher): {'met' if higher else 'NOT met'}")


def main() -> int:
    p = _bench.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--parts", help="comma-separated: real, simulated (default both; workload text: real)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2 3 4, workload text 0 1 2; --quick 0)")
    p.add_argument("--budget-s", type=float, help="real part: wall seconds per tool and seed (default 90; --quick 14; "
                                                  "workload text: 240; --quick 35)")
    p.add_argument("--epochs", type=int, help="real part: the most epochs of one trial (default 10; --quick 3)")
    p.add_argument("--tools", help=f"real part, comma-separated (default all; --quick: {', '.join(QUICK_TOOLS)}): "
                                   f"{', '.join(_es_real.TOOLS)}")
    p.add_argument("--workload", choices=list(_es_real.WORKLOADS), default="image",
                   help="real part: the bundled image trial (default) or the text trial, PBT tools only: "
                        f"{', '.join(_es_real.WORKLOADS['text']['tools'])}")
    args = p.parse_args()
    if args.workload == "image":
        args.tools = args.tools or ",".join(QUICK_TOOLS if args.quick else _es_real.TOOLS)
    else:
        args.tools = args.tools or ",".join(_es_real.WORKLOADS[args.workload]["tools"])
    parts = set((args.parts or ("real,simulated" if args.workload == "image" else "real")).split(","))
    if args.workload != "image" and "simulated" in parts:
        p.error("part simulated replays the image trial's table: run it without --workload")
    unknown = parts - {"real", "simulated"} | set(args.tools.split(",")) - set(_es_real.TOOLS)
    if unknown:
        p.error(f"unknown part or tool: {', '.join(sorted(unknown))}")
    other = set(args.tools.split(",")) - set(_es_real.WORKLOADS[args.workload]["tools"])
    if other:
        p.error(f"workload {args.workload} runs only {', '.join(_es_real.WORKLOADS[args.workload]['tools'])}, "
                f"not {', '.join(sorted(other))}")
    out = _bench.out_dir(args)
    ok = True
    if "real" in parts:
        text = run_real(args.quick, out, args.seeds, args.budget_s, args.epochs, args.tools.split(","), args.workload)
        ok = "FAILED runs" not in text
        print(text, flush=True)
    if "simulated" in parts:
        import _es_simulated

        print(_es_simulated.run(args.quick, out, args.seeds), flush=True)
    print(f"written to {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
