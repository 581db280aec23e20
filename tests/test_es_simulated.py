"""The early-stopping benchmark's replay of recorded learning curves (benchmarks/_es_simulated.py): the
table, snapping, what a warm-started child replays, costs that add up, and early stopping that saves
epochs, on autotune's simulated executor and on Syne Tune's simulator."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import autotune

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _es_simulated as es  # noqa: E402
import record_curves  # noqa: E402

LRS, BSS, WDS, SEEDS, EPOCHS = (1e-4, 1e-3, 1e-2), (16, 64), (1e-4, 1e-1), (0, 1, 2), 10


def quality(lr: float, bs: int, wd: float) -> float:
    return 0.9 - 0.15 * abs(math.log10(lr) + 3) - 0.05 * (bs == 64) - 0.02 * (wd > 0.01)


@pytest.fixture
def table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> es.Table:
    """A small complete grid in the recorder's format: accuracy rises with epochs toward a config's
    quality (seed noise +-0.01); every epoch's seconds differ by config, seed and epoch."""
    path = tmp_path / "curves.csv"
    with path.open("w", newline="") as f:
        f.write("# a test table\n")
        w = csv.DictWriter(f, fieldnames=record_curves.COLUMNS)
        w.writeheader()
        for i, (lr, bs, wd) in enumerate((a, b, c) for a in LRS for b in BSS for c in WDS):
            for s in SEEDS:
                for e in range(1, EPOCHS + 1):
                    acc = quality(lr, bs, wd) * (1 - math.exp(-e / 2)) + 0.01 * (s - 1)
                    w.writerow({"learning_rate": lr, "batch_size": bs, "weight_decay": wd, "seed": s, "epoch": e,
                                "val_accuracy": acc, "val_loss": 1.0, "train_loss": 1.0,
                                "seconds": 0.5 + 0.1 * (i % 3) + 0.01 * s + 0.001 * e, "wall_seconds": 1.0})
    monkeypatch.setattr(es, "TABLE", path)
    return es.Table.load()


def test_the_table_loads_as_a_complete_grid(table: es.Table) -> None:
    assert table.grid == {"learning_rate": LRS, "batch_size": (16.0, 64.0), "weight_decay": WDS}
    assert table.acc.shape == table.sec.shape == (12, 3, EPOCHS) and table.header == ["# a test table"]
    c = table.snap({"learning_rate": 1e-3, "batch_size": 64, "weight_decay": 1e-1})
    assert table.configs[c] == {"learning_rate": 1e-3, "batch_size": 64.0, "weight_decay": 1e-1}
    assert table.acc[c, 2, 9] == pytest.approx(quality(1e-3, 64, 0.1) * (1 - math.exp(-5)) + 0.01)
    assert table.full_cost == pytest.approx(table.sec.sum(axis=2).mean())


def test_an_incomplete_table_is_refused(table: es.Table, tmp_path: Path) -> None:
    lines = es.TABLE.read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join(lines[:-1]) + "\n")  # one epoch missing
    with pytest.raises(ValueError, match="not complete"):
        es.Table.load(short)


def test_proposals_snap_to_the_nearest_grid_point_on_a_log_scale(table: es.Table) -> None:
    snap = lambda **kw: table.configs[table.snap({"weight_decay": 1e-4, **kw})]  # noqa: E731
    assert snap(learning_rate=2.9e-4, batch_size=31)["learning_rate"] == 1e-4  # below the geometric midpoint
    assert snap(learning_rate=3.3e-4, batch_size=31)["learning_rate"] == 1e-3
    assert snap(learning_rate=1e-3, batch_size=31)["batch_size"] == 16
    assert snap(learning_rate=1e-3, batch_size=33)["batch_size"] == 64
    # the space reaches half a step past the extremes, so its bounds snap to the extreme grid points
    params = es.autotune_space(table)["params"]
    lr, bs = params["learning_rate"], params["batch_size"]
    assert lr["low"] == pytest.approx(1e-4 / math.sqrt(10)) and lr["high"] == pytest.approx(1e-2 * math.sqrt(10))
    assert snap(learning_rate=lr["low"], batch_size=bs["low"]) == {"learning_rate": 1e-4, "batch_size": 16.0,
                                                                   "weight_decay": 1e-4}
    assert snap(learning_rate=lr["high"], batch_size=bs["high"])["batch_size"] == 64
    assert params["weight_decay"] == {"type": "categorical", "choices": list(WDS)}


def test_a_child_continues_its_own_configs_curve_from_its_parents_epoch(table: es.Table) -> None:
    model = es.TableModel(table)
    cfg = {"learning_rate": 1e-3, "batch_size": 16, "weight_decay": 1e-4}
    c = table.snap(cfg)
    seg = model.segment(cfg, 3, 4, 2)
    assert seg.epochs == (5, 6, 7)
    assert seg.values == tuple(table.acc[c, 2, 4:7]) and seg.seconds == tuple(table.sec[c, 2, 4:7])
    assert model.segment(cfg, 3, 8, 0).epochs == (9, 10)  # cut at the table's end
    assert model.segment(cfg, 3, 10, 0).epochs == (1, 2, 3)  # nothing left to replay: from scratch
    assert model.segment(cfg, None, 0, 1).epochs == tuple(range(1, 11))  # no budget: every epoch
    sim = model(cfg, 2, None)  # the executor's TrialModel protocol
    assert sim.curve == tuple(table.acc[c, 0, :2]) and sim.duration == pytest.approx(table.sec[c, 0, :2].sum())


def run(table: es.Table, tmp_path: Path, evaluator: str, rule: str, budget_s: float | None = None,
        rounds: int = 3, slots: int = 4) -> es.TableExecutor:
    ex = es.TableExecutor(table, slots, run_seed=0, budget_s=budget_s)
    try:
        autotune.run(lambda config, trial: None, space=es.autotune_space(table), sampler="random",
                     evaluator=evaluator, rounds=rounds, popsize=4, seed=0, output=tmp_path,
                     name=f"{evaluator}-{rule}-{budget_s}", executor=ex, schedule="async", early_stop=rule,
                     budget=es.PBT_EPOCHS if evaluator == "pbt" else None)
    except es.BudgetSpent:
        pass
    return ex


def test_costs_add_up_and_reports_land_at_the_recorded_epoch_ends(table: es.Table, tmp_path: Path) -> None:
    ex = run(table, tmp_path, "full", "none")
    assert len(ex.log) == 12 * EPOCHS  # 12 trials, nothing stopped
    assert ex.cost == pytest.approx(sum(r.seconds for r in ex.log))
    assert ex.busy_s == pytest.approx(ex.cost)  # the simulated clock charged exactly the recorded seconds
    for trial in {r.trial for r in ex.log}:
        mine = sorted((r for r in ex.log if r.trial == trial), key=lambda r: r.at)
        assert [r.epoch for r in mine] == list(range(1, 11))
        steps = np.diff([r.at for r in mine])
        assert steps == pytest.approx([r.seconds for r in mine[1:]])
        assert {r.seed for r in mine} == {ex.seed_of[trial]}
        assert all(r.value == table.acc[r.config, r.seed, r.epoch - 1] for r in mine)
    assert len({ex.seed_of[t] for t in ex.seed_of}) > 1  # trials draw different recorded seeds


def test_asha_stops_trials_and_spends_fewer_epochs_than_none(table: es.Table, tmp_path: Path) -> None:
    none = run(table, tmp_path, "full", "none", rounds=6)
    asha = run(table, tmp_path, "full", "asha", rounds=6)
    per_trial = lambda ex: {t: sum(r.trial == t for r in ex.log) for t in {r.trial for r in ex.log}}  # noqa: E731
    assert set(per_trial(none).values()) == {EPOCHS}
    assert len(per_trial(asha)) == len(per_trial(none)) == 24
    assert min(per_trial(asha).values()) < EPOCHS  # some were stopped at a rung
    assert len(asha.log) < len(none.log) and asha.cost < none.cost


def test_a_budget_ends_the_run_and_the_trajectory_reads_it(table: es.Table, tmp_path: Path) -> None:
    budget = 3 * table.full_cost
    ex = run(table, tmp_path, "full", "asha", budget_s=budget, rounds=100)
    assert budget <= ex.cost < budget + table.sec.max()  # stopped at the report that crossed it
    traj = es.trajectory(ex.log, table, (1, 2, 3))
    assert [p["budget_full_trials"] for p in traj] == [1, 2, 3]
    bests = [p["best"] for p in traj]
    assert bests == sorted(bests) and bests[-1] == max(r.value for r in ex.log if r.at <= max(x.at for x in ex.log))
    best = max(ex.log, key=lambda r: r.value)
    assert traj[-1]["incumbent"] == pytest.approx(table.mean_acc[best.config, best.epoch - 1])


def test_pbt_children_replay_their_parents_epochs_and_seed(table: es.Table, tmp_path: Path) -> None:
    ex = run(table, tmp_path, "pbt", "none", rounds=8)
    first = {}
    for r in sorted(ex.log, key=lambda r: r.at):
        first.setdefault(r.trial, r)
    children = [t for t, r in first.items() if r.epoch > 1]
    assert children, "no child warm-started"
    for t in children:
        mine = sorted((r for r in ex.log if r.trial == t), key=lambda r: r.at)
        assert [r.epoch for r in mine] == list(range(mine[0].epoch, mine[0].epoch + len(mine)))
        assert len(mine) <= es.PBT_EPOCHS
    assert max(r.epoch for r in ex.log) > es.PBT_EPOCHS  # lineages go deeper than one trial


def test_syne_tune_pbt_children_resume_from_their_parents_epoch(table: es.Table, tmp_path: Path) -> None:
    pytest.importorskip("syne_tune")
    log = es.run_syne(es.Method("syne-tune", "PBT"), table, 0, 4, 12 * table.full_cost, tmp_path)
    first = {}
    for r in sorted(log, key=lambda r: r.at):
        first.setdefault(r.trial, r)
    assert any(r.epoch > 1 for r in first.values()), "no PBT child resumed from a checkpoint"
    assert sum(r.seconds for r in log) >= 12 * table.full_cost


def test_syne_tune_asha_stops_trials(table: es.Table, tmp_path: Path) -> None:
    pytest.importorskip("syne_tune")
    budget = 8 * table.full_cost
    rs = es.run_syne(es.Method("syne-tune", "RandomSearch"), table, 0, 4, budget, tmp_path / "rs")
    asha = es.run_syne(es.Method("syne-tune", "ASHA"), table, 0, 4, budget, tmp_path / "asha")
    assert len({r.trial for r in asha}) > len({r.trial for r in rs})  # the same compute, more configs tried
    assert all(r.value == table.acc[r.config, r.seed, r.epoch - 1] for r in asha)  # the table's values
