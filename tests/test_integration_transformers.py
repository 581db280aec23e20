"""autotune.integrations.transformers with the real transformers.Trainer on a tiny random-weight BERT."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import transformers as tf
from transformers.trainer_utils import BestRun

import autotune
from autotune.integrations.transformers import AutotuneCallback, apply_rates, autotune_space, hyperparameter_search

PROGRAM = Path(__file__).parent / "programs" / "hf_trainer.py"
TARGET = f"{PROGRAM}:objective"
SPACE = {"metric": "eval_accuracy", "mode": "max",
         "params": {"learning_rate": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True, "init": 3e-3}}}


def rates(run_dir: Path, record) -> list[dict]:
    path = run_dir / record.trial_dir / "lrs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_evaluation_is_a_report_with_the_trainers_checkpoint(tmp_path):
    space = {**SPACE, "fixed": {"epochs": 3}}
    result = autotune.run(TARGET, space=space, sampler="random", evaluator="full", rounds=1, popsize=2, seed=0,
                          output=tmp_path, name="full", executor="local")
    for r in result.records:
        assert r.status == "completed", r
        assert [rep["step"] for rep in r.reports] == [1, 2, 3]
        assert all("eval_accuracy" in rep["metrics"] and "eval_loss" in rep["metrics"] for rep in r.reports)
        ckpt = Path(r.reports[-1]["checkpoint"])
        assert ckpt.name == "checkpoint-12" and (ckpt / "trainer_state.json").is_file()
        assert (tmp_path / "full" / r.trial_dir).resolve() in ckpt.resolve().parents  # its own folder


def test_asha_stops_a_trainer_at_the_judged_evaluation(tmp_path):
    space = {**SPACE, "fixed": {"epochs": 4}}
    result = autotune.run(TARGET, space=space, sampler="random", evaluator="full", rounds=2, popsize=3, seed=3,
                          output=tmp_path, name="asha", executor="local", early_stop="asha",
                          early_stop_options={"grace_period": 1, "reduction_factor": 2})
    pruned = [r for r in result.records if r.status == "pruned"]
    assert pruned and all(r.status in ("completed", "pruned") for r in result.records)
    for r in pruned:
        assert r.reports[-1]["step"] in (1, 2), [rep["step"] for rep in r.reports]  # a rung
        steps = [x["step"] for x in rates(tmp_path / "asha", r)]
        assert max(steps) < 4 * r.reports[-1]["step"]  # it trained no batch past the judged evaluation


def test_a_pbt_child_resumes_its_parent_and_trains_at_its_own_rate(tmp_path):
    """The Trainer restores the parent's rate with the optimizer state; the child's must win."""
    space = {**SPACE, "budget": 1}
    result = autotune.run(TARGET, space=space, sampler="random", evaluator="pbt", rounds=3, popsize=2, seed=0,
                          output=tmp_path, name="pbt", executor="local", pbt_explore="perturb")
    children = [r for r in result.records if r.parent_id is not None]
    assert children
    by_id = {r.trial_id: r for r in result.records}
    for child in children:
        parent = by_id[child.parent_id]
        first = rates(tmp_path / "pbt", child)[0]
        assert first["step"] == 4 * child.parent_step  # global step goes on from the parent's checkpoint
        assert child.reports[0]["step"] == child.parent_step + 1
        assert first["lr"] == pytest.approx(child.config["learning_rate"], rel=1e-9)
        if child.config["learning_rate"] != pytest.approx(parent.config["learning_rate"], rel=1e-6):
            assert first["lr"] != pytest.approx(parent.config["learning_rate"], rel=1e-6)
    # the explore step moved some child's rate away from its parent's: the case the re-application is for
    assert any(c.config["learning_rate"] != pytest.approx(by_id[c.parent_id].config["learning_rate"], rel=1e-6)
               for c in children)


def test_a_trainer_script_is_a_script_trial(tmp_path):
    space = {**SPACE, "fixed": {"epochs": 2}}
    result = autotune.run(str(PROGRAM), space=space, sampler="random", evaluator="full", rounds=1, popsize=1,
                          seed=0, output=tmp_path, name="script", executor="local")
    (r,) = result.records
    assert r.status == "completed", r
    assert [rep["step"] for rep in r.reports] == [1, 2] and r.checkpoint
    assert Path(r.checkpoint).name.startswith("checkpoint-")


def test_apply_rates_keeps_the_schedule_factor_and_group_ratios():
    w = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.AdamW([{"params": [w[0]], "lr": 1e-2, "weight_decay": 0.1},
                             {"params": [w[1]], "lr": 5e-3, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)
    apply_rates(opt, sched, 1e-4, 0.3)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5e-4, 0.25e-4])
    assert sched.base_lrs == pytest.approx([1e-4, 0.5e-4])
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5e-4)


def test_a_child_gets_weight_decay_where_its_parent_trained_without_any(tmp_path):
    """A parent at weight_decay 0 leaves 0 in every group: the Trainer's own rule (not biases, not norms)
    says which groups the child's decay goes to."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    args = tf.TrainingArguments(output_dir=str(tmp_path), weight_decay=0.0, learning_rate=1e-3, report_to=[])
    trainer = tf.Trainer(model=model, args=args)
    opt = trainer.create_optimizer()  # the parent's optimizer, as its checkpoint restores it
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)
    apply_rates(opt, None, 1e-4, 0.05, model)
    decayed = {id(p) for n, p in model.named_parameters() if n == "0.weight"}
    for g in opt.param_groups:
        assert g["weight_decay"] == (0.05 if any(id(p) in decayed for p in g["params"]) else 0.0)
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.05]


def test_searched_values_reach_the_arguments_without_truncating_a_ratio(tmp_path):
    from autotune.integrations.transformers import _set_args

    args = tf.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = tf.Trainer(model=torch.nn.Linear(2, 2), args=args)
    assert args.warmup_steps == 0 and isinstance(args.warmup_steps, int)
    with pytest.warns(UserWarning, match="'r' is not a TrainingArguments field"):
        _set_args(trainer, {"learning_rate": 3e-4, "warmup_steps": 0.1, "per_device_train_batch_size": 8.0, "r": 4})
    assert trainer.args.learning_rate == 3e-4
    assert trainer.args.warmup_steps == 0.1  # a ratio, where Hugging Face's own search casts it to 0
    assert trainer.args.per_device_train_batch_size == 8 and isinstance(trainer.args.per_device_train_batch_size, int)


def _program():
    spec = importlib.util.spec_from_file_location("hf_trainer_program", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hyperparameter_search_is_a_drop_in_returning_the_best_run(tmp_path):
    import transformers as tf

    prog = _program()
    inits = []

    def model_init(config):
        inits.append(config)
        torch.manual_seed(0)
        return tf.BertForSequenceClassification(tf.BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=16, num_labels=2))

    args = tf.TrainingArguments(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=16,
                                eval_strategy="epoch", save_strategy="no", logging_strategy="no", report_to=[],
                                use_cpu=True, disable_tqdm=True, lr_scheduler_type="constant")
    trainer = tf.Trainer(model_init=model_init, args=args, train_dataset=prog.Tokens(64, 1),
                         eval_dataset=prog.Tokens(64, 2), compute_metrics=prog.accuracy)

    def hp_space(trial):  # Optuna style, as for trainer.hyperparameter_search(backend="optuna")
        return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
                "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size", [16, 32])}

    best = hyperparameter_search(trainer, hp_space=hp_space, compute_objective=lambda m: m["eval_accuracy"],
                                 n_trials=3, direction="maximize", backend="optuna", sampler="random", seed=0,
                                 output=tmp_path, name="drop_in")
    assert isinstance(best, BestRun)
    records = best.run_summary.records
    assert len(records) == 3 and all(r.status == "completed" for r in records)
    assert best.objective == max(r.value for r in records)
    top = next(r for r in records if str(r.trial_id) == best.run_id)
    assert best.hyperparameters == {k: top.config[k] for k in ("learning_rate", "per_device_train_batch_size")}
    for r in records:  # every evaluation was a report, the objective beside HF's metric names
        assert [rep["step"] for rep in r.reports] == [1, 2]
        assert all(rep["metrics"]["objective"] == rep["metrics"]["eval_accuracy"] for rep in r.reports)
        assert r.reports[-1]["checkpoint"]  # saving follows evaluation even with save_strategy="no"
    assert inits[0] is None  # Trainer.__init__'s own call; then a fresh model for each trial, given its config
    assert [c["learning_rate"] for c in inits[1:]] == [r.config["learning_rate"] for r in records]
    assert trainer.args.output_dir == str(tmp_path / "out")  # the trainer is given back as it was
    assert not any(isinstance(c, AutotuneCallback) for c in trainer.callback_handler.callbacks)


def test_an_optuna_hp_space_becomes_an_autotune_space():
    space = autotune_space(None)  # HF's default Optuna space
    assert space["params"]["learning_rate"] == {"type": "float", "low": 1e-6, "high": 1e-4, "log": True}
    assert space["params"]["per_device_train_batch_size"] == {"type": "categorical", "choices": [4, 8, 16, 32, 64]}
    assert space["params"]["seed"] == {"type": "int", "low": 1, "high": 40, "step": 1, "log": False}
    given = {"params": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}}}
    assert autotune_space(given) == given
