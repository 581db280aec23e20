"""The Lightning integration (autotune.integrations.lightning) with real Lightning on CPU: live reports
that early stopping acts on, checkpoints, a Population-Based child that continues its parent at its own
learning rate, script trials (one DDP on two gloo processes) and Python objectives."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
from conftest import PROGRAMS

import autotune
from autotune.integrations.lightning import AutotuneCallback, ckpt_path
from autotune.trial import Trial, _set_current

sys.path.insert(0, str(PROGRAMS))
import lightning_trial  # noqa: E402

PROGRAM = PROGRAMS / "lightning_trial.py"
TARGET = f"{PROGRAM}:objective"
ASHA = dict(early_stop="asha", early_stop_options={"grace_period": 1, "reduction_factor": 2})


def space(budget=None, low=1e-4, high=0.05) -> dict:
    s = {"metric": "neg_loss", "mode": "max", "params": {"lr": {"type": "float", "low": low, "high": high, "log": True}}}
    if budget is not None:
        s["budget"] = budget
    return s


def seen(run_dir: Path, record) -> dict:
    """What the trial's training wrote (tests/programs/lightning_trial.py)."""
    return json.loads((run_dir / record.trial_dir / "lightning.json").read_text())


def in_trial(tmp_path: Path, name: str, config: dict, budget=None, parent: Trial | None = None,
             metric: str = "neg_loss", **kw) -> Trial:
    """Train ``config`` as a Python objective of a hand-made trial (a child of ``parent`` when given)."""
    trial = Trial(id=len(list(tmp_path.iterdir())), round=0 if parent is None else 1, budget=budget,
                  dir=tmp_path / name, config=config, metric=metric,
                  parent_checkpoint=parent.checkpoint if parent else None, parent_id=parent.id if parent else None,
                  start_step=parent.checkpoint_step if parent else 0)
    trial.dir.mkdir()
    _set_current(trial)
    try:
        lightning_trial.train(config, **kw)
    finally:
        _set_current(None)
    return trial


def test_asha_prunes_during_training_at_the_judged_validation(tmp_path):
    result = autotune.run(TARGET, space=space(), sampler="random", evaluator="full", rounds=1, popsize=4, seed=0,
                          output=tmp_path, name="asha", executor="local", **ASHA)
    run_dir = tmp_path / "asha"
    statuses = [r.status for r in result.records]
    assert "completed" in statuses and "pruned" in statuses, [r.reason for r in result.records]
    for r in result.records:
        steps = [x["step"] for x in r.reports]
        assert steps == list(range(1, len(steps) + 1))  # one report per validation, the sanity check skipped
        assert r.checkpoint == f"{r.trial_dir}/checkpoint/validation-{steps[-1]}.ckpt"
        assert [p.name for p in (run_dir / r.trial_dir / "checkpoint").iterdir()] == [Path(r.checkpoint).name]
        done = seen(run_dir, r)["global_step"]
        if r.status == "completed":
            assert steps[-1] == 4 and done == 4 * 3  # 4 epochs of 3 batches
        else:  # stopped live, right after the validation the rule judged: a rung (1, 2, 4, ...)
            assert steps[-1] in (1, 2) and done == steps[-1] * 3
            assert r.reason.endswith(f"at step {steps[-1]}")


def test_a_child_continues_its_parent_at_its_own_learning_rate(tmp_path):
    """ray#36660: the restored optimizer state holds the parent's lr; the child's must be put back."""
    parent = in_trial(tmp_path, "parent", {"lr": 1e-2}, budget=2, epochs=2)
    assert [r["step"] for r in parent.reports] == [1, 2] and parent.checkpoint_step == 2
    assert ckpt_path(parent) is None
    child = in_trial(tmp_path, "child", {"lr": 1e-5}, budget=2, parent=parent, epochs=2)
    assert ckpt_path(child) == parent.checkpoint
    got = json.loads((child.dir / "lightning.json").read_text())
    assert got["first_step"] == 6 and got["global_step"] == 12  # the parent's 2 epochs, then 2 more
    assert [r["step"] for r in child.reports] == [3, 4]  # validations counted on from the parent's
    assert got["used_lrs"][:3] == pytest.approx([1e-5] * 3, rel=1e-9)  # not the parent's 1e-2
    assert got["base_lrs"] == pytest.approx([1e-5])


def test_pbt_children_load_their_parents_in_a_run(tmp_path):
    result = autotune.run(TARGET, space=space(budget=1), sampler="random", evaluator="pbt", rounds=2, popsize=2,
                          seed=0, output=tmp_path, name="pbt", executor="local")
    run_dir = tmp_path / "pbt"
    by_id = {r.trial_id: r for r in result.records}
    children = [r for r in result.records if r.round == 1]
    assert len(children) == 2 and all(r.status == "completed" for r in result.records)
    for child in children:
        parent = by_id[child.parent_id]
        assert child.parent_checkpoint == parent.checkpoint and child.parent_step == 1
        assert [x["step"] for x in child.reports] == [2]
        got = seen(run_dir, child)
        assert got["first_step"] == 3 and got["global_step"] == 6
        assert got["used_lrs"] == pytest.approx([child.config["lr"]] * 3)


def test_the_missing_metric_is_warned_once_and_renames_apply(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trial = in_trial(tmp_path, "t", {"lr": 1e-2}, metric="accuracy", epochs=3)
    ours = [w for w in caught if "autotune:" in str(w.message)]
    assert len(ours) == 1 and "'accuracy'" in str(ours[0].message)
    assert len(trial.reports) == 3
    renamed = in_trial(tmp_path, "r", {"lr": 1e-2}, metric="score", epochs=1, metrics={"neg_loss": "score"})
    assert set(renamed.reports[0]["metrics"]) == {"score", "val_loss"}


def test_outside_a_trial_the_callback_does_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = pl.Trainer(max_epochs=2, callbacks=[AutotuneCallback()], accelerator="cpu", logger=False,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(lightning_trial.Regressor(1e-2), *lightning_trial.loaders(), ckpt_path=ckpt_path())
    assert trainer.global_step == 6 and not list(tmp_path.iterdir())


def test_script_trials_report_and_warm_start(tmp_path):
    result = autotune.run(str(PROGRAM), space=space(budget=1), sampler="random", evaluator="pbt", rounds=2,
                          popsize=1, seed=0, output=tmp_path, name="script", executor="local")
    run_dir = tmp_path / "script"
    assert [r.status for r in result.records] == ["completed"] * 2, [r.reason for r in result.records]
    first, child = result.records
    assert first.checkpoint.endswith("checkpoint") and child.parent_id == first.trial_id
    assert [x["step"] for x in child.reports] == [2]
    got = seen(run_dir, child)
    assert got["first_step"] == 3 and got["used_lrs"] == pytest.approx([child.config["lr"]] * 3)


def test_ddp_reports_from_rank_zero_and_every_rank_stops(tmp_path):
    """Two gloo processes per trial; the pruned trial ends on both ranks (else the run would hang)."""
    result = autotune.run(str(PROGRAM), space=space(), sampler="random", evaluator="full", rounds=1, popsize=2,
                          seed=0, output=tmp_path, name="ddp", executor="local", script_args=("--devices=2",), **ASHA)
    run_dir = tmp_path / "ddp"
    assert [r.status for r in result.records] == ["completed", "pruned"], [r.reason for r in result.records]
    for r in result.records:
        assert seen(run_dir, r)["world_size"] == 2
        steps = [x["step"] for x in r.reports]
        assert steps == list(range(1, len(steps) + 1))  # one report a validation: rank 0's alone
