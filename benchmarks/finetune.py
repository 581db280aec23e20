"""A real fine-tune: best validation accuracy against trials and wall time, per sampler and evaluator.

    python benchmarks/finetune.py            # the committed results (see benchmarks/README.md)
    python benchmarks/finetune.py --quick    # CI: one sampler, 2 rounds x 2 trials, 1 epoch each

The workload is the default quick trial, ``search_spaces/lr_bs.yaml`` (the MNIST-pretrained CNN
fine-tuned on 100 Fashion-MNIST images per class; learning rate and batch size searched).

Design: equal total training epochs.  Both evaluators run the same rounds x popsize trials of the
same ``budget`` epochs, so every search trains rounds x popsize x budget epochs in all.  With
``full`` each trial starts from the pretrained model, so no model ever trains more than ``budget``
epochs; with ``pbt`` a trial continues from one of the best earlier checkpoints, so a lineage reaches
rounds x budget epochs.  That difference, at the same cost, is what Population-Based buys.

Trials run in this process (``executor="local"``, one after another, torch with the machine's
threads) unless ``--executor ray``: the wall-time axis then measures training plus autotune's own
bookkeeping, without Ray's worker start-up (which ``overhead.py`` measures).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402  (not "_common": trials/_common.py owns that name)

FULL = dict(samplers=("hazero", "pshe2", "bayes", "random", "pshe3"), evaluators=("full", "pbt"), seeds=3,
            rounds=4, popsize=4, budget=2)
QUICK = dict(samplers=("pshe2",), evaluators=("full", "pbt"), seeds=1, rounds=2, popsize=2, budget=1)
SPACE = _bench.ROOT / "search_spaces" / "lr_bs.yaml"
#: the evaluators compared: ``pbt`` with autotune's default rules, and with the sampler proposing every config
#: under quantile exploit (``pbt-sampler``) or round-robin parents (``pbt-autodl``, the rules before 2026-12-03)
EVALUATORS: dict[str, dict[str, Any]] = {
    "full": {"evaluator": "full"},
    "pbt": {"evaluator": "pbt"},
    "pbt-sampler": {"evaluator": "pbt", "pbt_explore": "sampler", "pbt_exploit": "quantile"},
    "pbt-autodl": {"evaluator": "pbt", "pbt_explore": "sampler", "pbt_exploit": "round-robin"},
}


def one_search(sampler: str, evaluator: str, seed: int, cfg: dict[str, Any], executor: str,
               work: Path) -> list[dict[str, Any]]:
    import autotune

    t0 = time.time()
    result = autotune.run(space=str(SPACE), sampler=sampler, rounds=cfg["rounds"],
                          popsize=cfg["popsize"], budget=cfg["budget"], seed=seed, output=work,
                          name=f"{sampler}-{evaluator}-{seed}", executor=executor, **EVALUATORS[evaluator])
    frame = result.trials.sort_values("ended")
    rows, best = [], -np.inf
    for k, (_, r) in enumerate(frame.iterrows(), start=1):
        value = r["value"] if r["status"] == "completed" and r["value"] == r["value"] else None
        if value is not None:
            best = max(best, float(value))
        ended = r["ended"].timestamp() if r["ended"] is not None else float("nan")
        rows.append({"sampler": sampler, "evaluator": evaluator, "seed": seed, "trial": k, "round": int(r["round"]),
                     "trial_id": int(r["trial_id"]), "status": r["status"], "value": value,
                     "best_so_far": best if best > -np.inf else None, "epochs_so_far": k * cfg["budget"],
                     "lineage_epochs": (int(r["checkpoint_step"]) if r["checkpoint_step"] == r["checkpoint_step"]
                                        and r["checkpoint_step"] is not None else None),
                     "elapsed_s": ended - t0, "batch_size": r.get("config.batch_size"),
                     "learning_rate": r.get("config.learning_rate")})
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import pandas as pd

    df = pd.DataFrame(rows)
    out = []
    for (sampler, evaluator), g in df.groupby(["sampler", "evaluator"]):
        finals = g.sort_values("trial").groupby("seed").last()
        half = g[g.trial == g.trial.max() // 2].set_index("seed")["best_so_far"]
        out.append({"sampler": sampler, "evaluator": evaluator, "seeds": len(finals),
                    "best_median": float(finals["best_so_far"].median()), "best_min": float(finals["best_so_far"].min()),
                    "best_max": float(finals["best_so_far"].max()),
                    "best_at_half_trials_median": float(half.median()) if len(half) else float("nan"),
                    "wall_s_median": float(finals["elapsed_s"].median()),
                    "max_lineage_epochs": float(g["lineage_epochs"].max()),
                    "trials": int(g.trial.max()), "epochs_per_search": int(g["epochs_so_far"].max())})
    return out


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    import pandas as pd

    df = pd.DataFrame(rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for (sampler, evaluator), g in df.groupby(["sampler", "evaluator"]):
        style = "-" if evaluator.startswith("pbt") else "--"
        curve = g.groupby("trial")["best_so_far"].median()
        axes[0].plot(curve.index, curve.values, style, label=f"{sampler} / {evaluator}")
        wall = g.groupby("trial")["elapsed_s"].median()
        axes[1].plot(wall.values, curve.values, style, label=f"{sampler} / {evaluator}")
    axes[0].set_xlabel("trials")
    axes[1].set_xlabel("wall seconds (median over seeds)")
    for ax in axes:
        ax.set_ylabel("best val_accuracy (median over seeds)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--samplers", type=lambda s: tuple(s.split(",")))
    p.add_argument("--evaluators", type=lambda s: tuple(s.split(",")), help=f"of {', '.join(EVALUATORS)}")
    p.add_argument("--seeds", type=int)
    p.add_argument("--rounds", type=int)
    p.add_argument("--popsize", type=int)
    p.add_argument("--budget", type=int)
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--merge", action="store_true",
                   help="replace only these samplers' rows with these evaluators in the output folder's finetune_trials.csv, keep the "
                        "others, and re-summarise")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for k in ("samplers", "evaluators", "seeds", "rounds", "popsize", "budget"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    out = _bench.out_dir(args)
    work = Path(tempfile.mkdtemp(prefix="autotune-finetune-"))
    started = time.time()
    rows: list[dict[str, Any]] = []
    try:
        for seed in range(cfg["seeds"]):
            for sampler in cfg["samplers"]:
                for evaluator in cfg["evaluators"]:
                    t = time.time()
                    got = one_search(sampler, evaluator, seed, cfg, args.executor, work)
                    rows += got
                    failed = sum(r["status"] != "completed" for r in got)
                    print(f"{sampler}/{evaluator} seed {seed}: best {got[-1]['best_so_far']} "
                          f"in {time.time() - t:.0f} s ({failed} failed trials)", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.merge and (out / "finetune_trials.csv").exists():
        import pandas as pd

        kept = pd.read_csv(out / "finetune_trials.csv")
        ran = kept["sampler"].isin(cfg["samplers"]) & kept["evaluator"].isin(cfg["evaluators"])
        kept = kept[~ran]
        rows += [{k: (None if v != v else v) for k, v in r.items()} for r in kept.to_dict("records")]
        print(f"merged with {len(kept)} kept rows of other samplers and evaluators", flush=True)
    _bench.write_csv(out / "finetune_trials.csv", rows)
    summary = summarise(rows)
    _bench.write_csv(out / "finetune_summary.csv", summary)
    _bench.write_machine(out / ("finetune_machine_merge.csv" if args.merge else "finetune_machine.csv"), {**{k: v for k, v in cfg.items()}, "executor": args.executor,
                                                         "elapsed_s": round(time.time() - started, 1)})
    plot(rows, out / "finetune_curves.png")
    print(_bench.table([(r["sampler"], r["evaluator"], f"{r['best_median']:.4f}",
                          f"[{r['best_min']:.4f}, {r['best_max']:.4f}]", f"{r['best_at_half_trials_median']:.4f}",
                          f"{r['wall_s_median']:.0f}", r["max_lineage_epochs"]) for r in summary],
                        ["sampler", "evaluator", "best (median)", "range", "best at half the trials", "wall s",
                         "longest lineage (epochs)"]))
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
