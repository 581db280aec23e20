"""The early-stopping benchmark's replay of recorded learning curves (benchmarks/_es_simulated.py): the
table, interpolation between grid points (and snapping), what a warm-started child replays, costs that
add up, early stopping that saves epochs, and autotune's Population-Based explore and exploit rules, on
autotune's simulated executor and on Syne Tune's simulator."""

from __future__ import annotations

import csv
import json
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
    return es.Table.load()  # interpolated, as the committed results


@pytest.fixture
def snap_table(table: es.Table) -> es.Table:
    return es.Table.load(es.TABLE, es.SNAP)


def curve(table: es.Table, point: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    return table.curves(dict(zip(es.AXES, point)))


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


def test_proposals_snap_to_the_nearest_grid_point_on_a_log_scale(snap_table: es.Table) -> None:
    table = snap_table
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
    # a snapped config replays its grid point's curves exactly
    acc, sec = table.curves({"learning_rate": 2.9e-4, "batch_size": 31, "weight_decay": 1e-4})
    c = table.snap({"learning_rate": 1e-4, "batch_size": 16, "weight_decay": 1e-4})
    assert (acc == table.acc[c]).all() and (sec == table.sec[c]).all()
    assert table.key({"learning_rate": 2.9e-4, "batch_size": 31, "weight_decay": 1e-4}) == (1e-4, 16.0, 1e-4)


def test_interpolation_replays_the_recorded_curves_at_grid_points(table: es.Table) -> None:
    for c, cfg in enumerate(table.configs):
        acc, sec = table.curves(cfg)
        assert (acc == table.acc[c]).all() and (sec == table.sec[c]).all()  # every seed and epoch, exactly
        assert table.weights(cfg) == ((c, 1.0),)
        assert table.mean_curve(cfg) == pytest.approx(table.mean_acc[c])


def test_interpolation_is_linear_in_log_lr_and_log_batch_size_between_grid_points(table: es.Table) -> None:
    at = lambda lr, bs, wd=1e-4: table.curves({"learning_rate": lr, "batch_size": bs, "weight_decay": wd})  # noqa: E731
    g = lambda lr, bs, wd=1e-4: table.snap({"learning_rate": lr, "batch_size": bs, "weight_decay": wd})  # noqa: E731
    # the geometric midpoint of two learning rates: the mean of their curves, seed by seed, epoch by epoch
    acc, sec = at(math.sqrt(1e-4 * 1e-3), 16)
    assert acc == pytest.approx((table.acc[g(1e-4, 16)] + table.acc[g(1e-3, 16)]) / 2)
    assert sec == pytest.approx((table.sec[g(1e-4, 16)] + table.sec[g(1e-3, 16)]) / 2)
    lo, hi = np.minimum(table.acc[g(1e-4, 16)], table.acc[g(1e-3, 16)]), np.maximum(table.acc[g(1e-4, 16)],
                                                                                       table.acc[g(1e-3, 16)])
    assert ((lo < acc) & (acc < hi) | (lo == hi)).all() and (lo < hi).any()  # values in between
    # a quarter of the way in log batch size (16 -> 64: 16 * 4**0.25), and bilinear in both
    acc, _ = at(1e-3, 16 * 4 ** 0.25)
    assert acc == pytest.approx(0.75 * table.acc[g(1e-3, 16)] + 0.25 * table.acc[g(1e-3, 64)])
    lr, bs = 1e-4 * 10 ** 0.3, 16 * 4 ** 0.6
    corners = [(1e-4, 16, 0.7 * 0.4), (1e-3, 16, 0.3 * 0.4), (1e-4, 64, 0.7 * 0.6), (1e-3, 64, 0.3 * 0.6)]
    assert at(lr, bs)[0] == pytest.approx(sum(w * table.acc[g(a, b)] for a, b, w in corners))
    assert sum(w for _, w in table.weights({"learning_rate": lr, "batch_size": bs, "weight_decay": 1e-4})) == \
        pytest.approx(1.0)
    # nothing is extrapolated: beyond the recorded range the extreme grid point; weight decay: the nearest
    assert (at(1e-6, 8)[0] == table.acc[g(1e-4, 16)]).all() and (at(1.0, 512)[0] == table.acc[g(1e-2, 64)]).all()
    assert (at(1e-3, 16, 0.05)[0] == table.acc[g(1e-3, 16, 0.1)]).all()
    assert table.key({"learning_rate": 1e-6, "batch_size": 8, "weight_decay": 0.05}) == (1e-4, 16.0, 0.1)
    # the searched space is the recorded range exactly (no half step beyond it: nothing to replay there)
    params = es.autotune_space(table)["params"]
    assert (params["learning_rate"]["low"], params["learning_rate"]["high"]) == (1e-4, 1e-2)
    assert (params["batch_size"]["low"], params["batch_size"]["high"]) == (16, 64)
    # no point between grid points is better than the grid's best: the ceiling (and target) are the grid's
    rng = np.random.default_rng(0)
    for _ in range(200):
        cfg = {"learning_rate": 10 ** rng.uniform(-4, -2), "batch_size": int(16 * 4 ** rng.uniform()),
               "weight_decay": WDS[int(rng.integers(2))]}
        assert table.mean_curve(cfg).max() <= table.mean_acc.max() + 1e-12


def test_a_child_continues_its_own_configs_curve_from_its_parents_epoch(table: es.Table) -> None:
    model = es.TableModel(table)
    cfg = {"learning_rate": 1e-3, "batch_size": 16, "weight_decay": 1e-4}
    c = table.snap(cfg)
    seg = model.segment(cfg, 3, 4, 2)
    assert seg.epochs == (5, 6, 7) and seg.config == (1e-3, 16.0, 1e-4)
    assert seg.values == tuple(table.acc[c, 2, 4:7]) and seg.seconds == tuple(table.sec[c, 2, 4:7])
    assert seg.means == pytest.approx(tuple(table.mean_acc[c, 4:7]))
    assert model.segment(cfg, 3, 8, 0).epochs == (9, 10)  # cut at the table's end
    assert model.segment(cfg, 3, 10, 0).epochs == (1, 2, 3)  # nothing left to replay: from scratch
    assert model.segment(cfg, None, 0, 1).epochs == tuple(range(1, 11))  # no budget: every epoch
    sim = model(cfg, 2, None)  # the executor's TrialModel protocol
    assert sim.curve == tuple(table.acc[c, 0, :2]) and sim.duration == pytest.approx(table.sec[c, 0, :2].sum())
    off = {"learning_rate": 2e-3, "batch_size": 20, "weight_decay": 1e-4}  # off the grid: its interpolated curve
    acc, sec = table.curves(off)
    seg = model.segment(off, 2, 6, 1)
    assert seg.epochs == (7, 8) and seg.values == tuple(acc[1, 6:8]) and seg.seconds == tuple(sec[1, 6:8])


def run(table: es.Table, tmp_path: Path, evaluator: str, rule: str, budget_s: float | None = None,
        rounds: int = 3, slots: int = 4, explore: str | None = None, exploit: str | None = None,
        popsize: int = 4, schedule: str = "async") -> es.TableExecutor:
    ex = es.TableExecutor(table, slots, run_seed=0, budget_s=budget_s)
    try:
        autotune.run(lambda config, trial: None, space=es.autotune_space(table), sampler="random",
                     evaluator=evaluator, rounds=rounds, popsize=popsize, seed=0, output=tmp_path,
                     name=f"{evaluator}-{rule}-{budget_s}-{explore}-{exploit}-{schedule}", executor=ex,
                     schedule=schedule,
                     early_stop=rule, budget=es.PBT_EPOCHS if evaluator == "pbt" else None, pbt_explore=explore,
                     pbt_exploit=exploit)
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
        acc, sec = table.curves(ex.specs[trial].config)
        assert all(r.value == acc[r.seed, r.epoch - 1] and r.seconds == sec[r.seed, r.epoch - 1] for r in mine)
        assert all(r.mean == pytest.approx(acc[:, r.epoch - 1].mean()) for r in mine)
    assert len({ex.seed_of[t] for t in ex.seed_of}) > 1  # trials draw different recorded seeds
    assert len({r.config for r in ex.log}) == 12  # continuous proposals: no two trials replay the same point


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
    assert traj[-1]["incumbent"] == pytest.approx(curve(table, best.config)[0][:, best.epoch - 1].mean())


def test_time_to_target_is_the_compute_until_a_new_best_report_is_a_good_config(table: es.Table) -> None:
    goal = es.target(table)
    unit = table.full_cost
    r = lambda at, value, mean: es.Report(at, 0, (1e-3, 16.0, 1e-4), 0, 1, value, mean, unit / 2)  # noqa: E731
    log = [r(1, 0.5, goal - 0.1), r(2, 0.4, goal + 0.01), r(3, 0.6, goal), r(4, 0.7, goal + 0.02)]
    assert es.time_to_target(log, table) == pytest.approx(1.5)  # the 2nd report was not a new best
    assert es.time_to_target(log[:2], table) == math.inf


@pytest.mark.parametrize("explore,exploit", [("perturb", "quantile"), ("sampler", "round-robin")])
def test_pbt_children_replay_their_parents_epochs_and_seed(table: es.Table, tmp_path: Path, explore: str,
                                                            exploit: str) -> None:
    ex = run(table, tmp_path, "pbt", "none", rounds=8, explore=explore, exploit=exploit)
    first = {}
    for r in sorted(ex.log, key=lambda r: r.at):
        first.setdefault(r.trial, r)
    children = [t for t, r in first.items() if r.epoch > 1]
    assert children, "no child warm-started"
    for t in children:
        mine = sorted((r for r in ex.log if r.trial == t), key=lambda r: r.at)
        assert [r.epoch for r in mine] == list(range(mine[0].epoch, mine[0].epoch + len(mine)))
        assert len(mine) <= es.PBT_EPOCHS
        parent = ex.specs[t].parent.trial_id
        assert ex.seed_of[t] == ex.seed_of[parent]
        assert mine[0].epoch == max(r.epoch for r in ex.log if r.trial == parent) + 1
    assert max(r.epoch for r in ex.log) > es.PBT_EPOCHS  # lineages go deeper than one trial


@pytest.mark.parametrize("explore,schedule,slots", [("perturb", "async", 4), ("trust-gp", "async", 4),
                                                   ("perturb", "rounds", 8)])
def test_quantile_children_that_continue_keep_their_parents_config_exactly(table: es.Table, tmp_path: Path,
                                                                          explore: str, schedule: str,
                                                                          slots: int) -> None:
    ex = run(table, tmp_path, "pbt", "none", rounds=5, slots=slots, popsize=8, explore=explore, exploit="quantile",
             schedule=schedule)
    specs = ex.specs
    kept = replaced = 0
    for t, spec in specs.items():
        if spec.parent is None:
            continue
        parent = specs[spec.parent.trial_id]
        same = {k: spec.config[k] for k in es.AXES} == {k: parent.config[k] for k in es.AXES}
        if spec.member == parent.member:  # the member continues its lineage: the very same config
            assert same
            assert ex.segments[t][1].config == ex.segments[parent.trial_id][1].config
            kept += 1
        else:  # a bottom-quantile member replaced by a child of a top one, explored from it
            assert not same
            replaced += 1
    assert kept and replaced
    if schedule == "rounds":  # every generation after the first: the bottom quarter of 8 members replaced
        assert replaced == 2 * 4 and kept == 6 * 4
    assert all(specs[t].member is not None for t in specs)


# every pair of rules and schedule that the benchmark runs (its pshe2 and asha variants differ only in
# what autotune's other tests cover)
PBT_RULES = list({(m.rules, m.schedule): m for m in es.AUTOTUNE
                  if m.name == "pbt+none" and m.sampler == "random"}.values())


@pytest.mark.parametrize("method", PBT_RULES, ids=lambda m: m.label)
def test_every_pbt_method_of_the_benchmark_runs_with_its_rules(table: es.Table, tmp_path: Path,
                                                               method: es.Method) -> None:
    budget = 8 * table.full_cost
    ex = es.TableExecutor(table, 8, 0, budget)
    log = es.run_autotune(method, table, 0, 8, budget, tmp_path / "run", executor=ex)
    assert log is ex.log and budget <= ex.cost < budget + table.sec.max()
    kids = [s for s in ex.specs.values() if s.parent is not None]
    assert kids and log.children == len(kids)  # children warm-started
    explore, exploit = method.rules.split("/")
    assert all(s.member is not None for s in ex.specs.values()) == (exploit == "quantile")
    if exploit == "quantile":  # members that continue their lineage: the explore rule decides their config
        same = [s.config == ex.specs[s.parent.trial_id].config for s in kids
                if s.member == ex.specs[s.parent.trial_id].member]
        assert same and (all(same) if explore != "sampler" else not any(same))
    assert log.changed == sum(es.Table.key(table, s.config) != table.key(ex.specs[s.parent.trial_id].config)
                              for s in kids)


def test_the_benchmark_runs_each_explore_rule_and_the_old_rules_against_syne_tunes_pbt() -> None:
    labels = {m.label for m in es.AUTOTUNE + es.SYNE}
    for explore in ("perturb", "trust-gp", "sampler"):
        assert f"pbt+none (random; {explore}/quantile)" in labels
    assert {"pbt+none (random; sampler/round-robin)", "pbt+none (pshe2; perturb/quantile)", "PBT"} <= labels
    assert {m.label for m in es.QUICK} <= labels and len(es.QUICK) == 6  # CI stays short


def test_a_run_writes_every_method_with_its_rules_and_the_replay(table: es.Table, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    methods = [es.Method("autotune", "full+none", "random"),
               es.Method("autotune", "pbt+none", "random", "perturb/quantile"),
               es.Method("autotune", "pbt+none", "random", "perturb/quantile", "rounds")]
    monkeypatch.setattr(es, "QUICK_CHECKPOINTS", (1, 2, 4))
    text = es.run(True, tmp_path, [0], methods)
    runs = list(csv.DictReader((tmp_path / "early_stopping_sim_runs.csv").open()))
    assert [(r["method"], r["rules"], r["replay"]) for r in runs] == [
        ("full+none", "", "interpolate"), ("pbt+none", "perturb/quantile", "interpolate"),
        ("pbt+none", "perturb/quantile", "interpolate")]
    summary = list(csv.DictReader((tmp_path / "early_stopping_sim_summary.csv").open()))
    assert len(summary) == 3 and all(int(r["seeds"]) == 1 for r in summary)  # the schedules are told apart
    assert "pbt+none (random; perturb/quantile; rounds)" in text and "interpolated" in text
    machine = dict(csv.reader((tmp_path / "early_stopping_sim_machine.csv").open()))
    assert machine["replay"] == "interpolate" and machine["seeds"] == "0" and machine["command"]


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
    for r in asha:  # the same interpolated values as autotune's executor replays
        acc, sec = curve(table, r.config)
        assert r.value == pytest.approx(acc[r.seed, r.epoch - 1]) and r.seconds == sec[r.seed, r.epoch - 1]
    assert len({r.config for r in asha}) == len({r.trial for r in asha})  # off the grid: every config its own


def test_syne_tunes_blackbox_replays_the_interpolated_curves(table: es.Table) -> None:
    pytest.importorskip("syne_tune")
    blackbox = es._syne_blackbox(table)
    cfg = {"learning_rate": 2e-3, "batch_size": 20, "weight_decay": 1e-4}
    acc, sec = table.curves(cfg)
    values = blackbox.objective_function(cfg, seed=1)
    assert values[:, 0] == pytest.approx(acc[1])
    assert values[:, 1] == pytest.approx(np.cumsum(sec[1]) * es.SYNE_TIME_SCALE)
