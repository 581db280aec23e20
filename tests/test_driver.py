"""The driver loop and both evaluators, on the in-process executor (no Ray)."""

from __future__ import annotations

import json

import pytest
import yaml

import autotune
from autotune.api import resume
from autotune.errors import RunInterrupted
from autotune.events import TrialFinished
from autotune.executors.local import LocalExecutor
from conftest import InterruptingExecutor, objective


def test_full_search_records_every_trial(tmp_path, xy_space):
    result = autotune.run(objective("quadratic"), space=xy_space, sampler="random", evaluator="full", rounds=3,
                          popsize=4, seed=1, output=tmp_path, name="full", executor="local")
    assert len(result.records) == 12
    assert [r.trial_id for r in result.records] == list(range(12))
    assert [r.round for r in result.records] == [i // 4 for i in range(12)]
    assert all(r.status == "completed" and r.parent_id is None for r in result.records)
    assert all(r.started <= r.ended for r in result.records)
    best = max(result.records, key=lambda r: r.value)
    assert result.best_value == best.value and result.best_config == best.config
    doc = yaml.safe_load((tmp_path / "full" / "best" / "config.yaml").read_text())
    assert doc["trial_id"] == best.trial_id and doc["config"] == best.config
    frame = result.trials
    assert len(frame) == 12 and set(frame["status"]) == {"completed"}
    assert "config.x" in frame.columns


def test_min_mode_picks_lowest(tmp_path, lr_space):
    lr_space["metric"], lr_space["mode"] = "loss", "min"
    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator="full", rounds=2,
                          popsize=3, seed=3, output=tmp_path, name="min", executor="local")
    assert result.best_value == min(r.value for r in result.records)


def test_returning_a_number_records_the_metric(tmp_path, xy_space):
    result = autotune.run(objective("returns_number"), space=xy_space, sampler="random", evaluator="full",
                          rounds=1, popsize=2, seed=0, output=tmp_path, name="ret", executor="local")
    for r in result.records:
        assert r.status == "completed"
        assert r.value == pytest.approx(-((r.config["x"] - 0.3) ** 2))


def test_pbt_children_start_from_their_parents_weights(tmp_path, lr_space):
    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator="pbt", rounds=3,
                          popsize=4, seed=2, output=tmp_path, name="pbt", executor="local", schedule="rounds",
                          pbt_exploit="round-robin", pbt_explore="sampler")  # AutoDL Finetuner's rules
    run_dir = tmp_path / "pbt"
    by_id = {r.trial_id: r for r in result.records}
    assert all(r.parent_id is None for r in result.records if r.round == 0)
    later = [r for r in result.records if r.round > 0]
    assert later and all(r.parent_id is not None for r in later)
    for child in later:
        parent = by_id[child.parent_id]
        assert parent.round < child.round
        # the parent is from the top half of earlier rounds
        earlier = sorted((r for r in result.records if r.round < child.round), key=lambda r: -r.value)
        assert parent.trial_id in [r.trial_id for r in earlier[: max(1, -(-len(earlier) // 2))]]
        # what the child loaded is exactly the parent's checkpoint: weights and optimizer state
        loaded = json.loads((run_dir / child.trial_dir / "loaded.json").read_text())
        saved = json.loads((run_dir / parent.checkpoint / "state.json").read_text())
        assert loaded == saved
        assert child.parent_step == parent.checkpoint_step == saved["step"]
        assert child.parent_hash == parent.checkpoint_hash
        # training continues from the parent's step
        assert child.checkpoint_step == parent.checkpoint_step + 2
    # round-robin, best first: in round 1 the two best of round 0 parent trials 4,5 and 6,7 in turn
    r0 = sorted((r for r in result.records if r.round == 0), key=lambda r: (-r.value, r.trial_id))
    r1 = [r for r in result.records if r.round == 1]
    assert [c.parent_id for c in r1] == [r0[0].trial_id, r0[1].trial_id, r0[0].trial_id, r0[1].trial_id]


def test_pbt_missing_parent_falls_back_and_says_so(tmp_path, lr_space):
    import shutil

    from autotune.evaluators import make_evaluator
    from autotune.records import TrialRecord
    from autotune.samplers import Candidate

    ev = make_evaluator("pbt", budget=1, mode="max")
    history = [
        TrialRecord(trial_id=i, round=0, config={"lr": 0.1}, budget=1, status="completed", reason=None,
                    value=float(i), reports=[], planned_parent_id=None, parent_id=None, parent_checkpoint=None,
                    parent_step=None, parent_hash=None, parent_note=None, checkpoint=f"trials/{i:06d}/checkpoint",
                    checkpoint_step=1, checkpoint_hash=None, started=0, ended=1, node=None, gpu_ids=[],
                    log_tail=None, trial_dir=f"trials/{i:06d}")
        for i in range(4)
    ]
    specs = ev.plan(1, [Candidate(id=10 + i, point=(0.5,), config={"lr": 0.1}) for i in range(3)], history)
    assert [s.parent.trial_id for s in specs] == [3, 2, 3]
    assert [p.trial_id for p in specs[0].parents] == [3, 2]

    # Now really run: corrupt the best parent's checkpoint, remove the second's; children fall back.
    from autotune.targets import parse_target
    from autotune.trial_runner import run_trial

    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator="pbt", rounds=1,
                          popsize=3, seed=5, output=tmp_path, name="r0", executor="local")
    run_dir = tmp_path / "r0"
    ev = make_evaluator("pbt", budget=1, mode="max", top_fraction=1.0)
    spec = ev.plan(1, [Candidate(id=99, point=(0.5,), config={"lr": 0.1})], result.records)[0]
    first, second, third = spec.parents
    (run_dir / first.checkpoint / "state.json").write_text('{"corrupt": true}')
    shutil.rmtree(run_dir / second.checkpoint)
    out = run_trial(parse_target(objective("weights")), spec, run_dir, "neg_loss")
    assert out.status == "completed"
    assert out.parent_id == third.trial_id and out.parent_hash == third.hash
    assert f"parent trial {first.trial_id}: checkpoint corrupt" in out.parent_note
    assert f"parent trial {second.trial_id}: checkpoint missing" in out.parent_note
    # with every parent unusable the child starts from scratch, and says so
    shutil.rmtree(run_dir / third.checkpoint)
    out = run_trial(parse_target(objective("weights")), spec, run_dir, "neg_loss")
    assert out.status == "completed" and out.parent_id is None
    assert out.parent_note.endswith("started from scratch")
    assert not (run_dir / spec.trial_dir / "loaded.json").exists()


def test_failures_are_recorded_and_the_search_goes_on(tmp_path, xy_space):
    result = autotune.run(objective("mixed"), space=xy_space, sampler="random", evaluator="full", rounds=3,
                          popsize=5, seed=4, output=tmp_path, name="mixed", executor="local")
    assert len(result.records) == 15
    raised = [r for r in result.records if r.config["x"] < 0.2]
    nan = [r for r in result.records if 0.2 <= r.config["x"] < 0.3]
    good = [r for r in result.records if r.config["x"] >= 0.3]
    assert raised and good
    for r in raised:
        assert r.status == "failed" and "ValueError" in r.reason and "too small" in r.log_tail
    for r in nan:
        assert r.status == "failed" and "nan" in r.reason and r.value is None
    assert all(r.status == "completed" for r in good)
    assert result.best_value == max(r.value for r in good)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("raises", "RuntimeError: boom in trial"),
        ("reports_then_raises", "RuntimeError: crash after a good report"),
        ("reports_text", "metric 'score' must be a number, got '0.5'"),
        ("reports_nan", "was nan"),
        ("reports_inf", "was inf"),
        ("reports_nothing", "reported no metrics"),
        ("bad_checkpoint", "does not exist"),
    ],
)
def test_each_trial_fault_is_a_failed_trial(tmp_path, xy_space, name, reason):
    """Each fault is recorded as a failed trial with its reason and log; when every trial of the first
    round fails, the search stops there (rather than burning every round) and says why."""
    from autotune.errors import TrialError

    with pytest.raises(TrialError, match=rf"all 2 trials of the first round failed.*trial 0: .*{reason}"):
        autotune.run(objective(name), space=xy_space, sampler="random", evaluator="full", rounds=3,
                     popsize=2, seed=0, output=tmp_path, name=name, executor="local")
    result = autotune.load(tmp_path / name)
    assert len(result.records) == 2 and result.status == "failed"  # rounds 2 and 3 never started
    for r in result.records:
        assert r.status == "failed" and reason in r.reason and r.value is None
        assert r.log_tail and f"trial {r.trial_id}" in r.log_tail
    assert result.best is None and result.trials["value"].isna().all()  # no failed trial has a score


def test_a_metric_no_trial_reports_stops_the_run_after_round_0(tmp_path, xy_space):
    from autotune.errors import ConfigError

    with pytest.raises(ConfigError, match="no trial of the first round reported the metric 'score'; they reported: accuracy"):
        autotune.run(objective("wrong_metric"), space=xy_space, sampler="random", evaluator="full", rounds=5,
                     popsize=2, seed=0, output=tmp_path, name="wm", executor="local")
    result = autotune.load(tmp_path / "wm")
    assert len(result.records) == 2 and result.status == "failed"  # round 1 never started
    assert all("metric 'score' was never reported (reported: accuracy)" in r.reason for r in result.records)


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_interrupt_then_resume_loses_nothing_and_repeats_nothing(tmp_path, xy_space, executions, schedule):
    with pytest.raises(RunInterrupted):
        autotune.run(objective("quadratic"), space=xy_space, sampler="hazero", evaluator="full", rounds=3,
                     popsize=4, seed=7, output=tmp_path, name="int", executor=InterruptingExecutor(6),
                     schedule=schedule)
    partial = autotune.load(tmp_path / "int")
    assert partial.status == "interrupted"
    assert len([r for r in partial.records if r.status == "completed"]) == 6
    result = resume(tmp_path / "int", executor="local")
    assert result.status == "completed"
    assert [r.trial_id for r in result.records] == list(range(12))
    assert all(r.status == "completed" for r in result.records)
    done = [line.split()[1] for line in executions.read_text().splitlines() if line.startswith("done")]
    assert sorted(done, key=int) == [str(i) for i in range(12)]  # every trial completed exactly once

    # An uninterrupted run with the same seed proposes exactly the same configs.
    straight = autotune.run(objective("quadratic"), space=xy_space, sampler="hazero", evaluator="full", rounds=3,
                            popsize=4, seed=7, output=tmp_path, name="straight", executor="local", schedule=schedule)
    assert [r.config for r in straight.records] == [r.config for r in result.records]


class _DiesAfterTrialExecutor(LocalExecutor):
    """A trial finishes, then the driver is interrupted before it could record it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def poll(self, timeout=None):
        events = super().poll(timeout)
        self.count += sum(isinstance(e, TrialFinished) for e in events)
        if self.count == 3:
            raise KeyboardInterrupt
        return events


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_a_trial_finished_but_unrecorded_is_adopted_not_rerun(tmp_path, xy_space, executions, schedule):
    with pytest.raises(RunInterrupted):
        autotune.run(objective("quadratic"), space=xy_space, sampler="random", evaluator="full", rounds=2,
                     popsize=4, seed=1, output=tmp_path, name="adopt", executor=_DiesAfterTrialExecutor(),
                     schedule=schedule)
    assert len(autotune.load(tmp_path / "adopt").records) == 2
    result = resume(tmp_path / "adopt", executor="local")
    assert [r.trial_id for r in result.records] == list(range(8))
    lines = executions.read_text().splitlines()
    assert lines.count("start 2") == 1 and lines.count("done 2") == 1  # adopted from its outcome file


@pytest.mark.parametrize("schedule", ["async", "rounds"])
@pytest.mark.parametrize("evaluator", ["full", "pbt"])
def test_keep_checkpoints_deletes_all_but_the_best_and_keeps_lineage(tmp_path, lr_space, evaluator, schedule):
    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator=evaluator, rounds=3,
                          popsize=4, seed=2, output=tmp_path, name="keep", executor="local", keep_checkpoints=2,
                          schedule=schedule)
    run_dir = tmp_path / "keep"
    ranked = sorted(result.records, key=lambda r: (-r.value, r.trial_id))
    kept = {r.trial_id for r in ranked[:2]}
    for r in result.records:
        assert r.checkpoint and r.checkpoint_hash  # lineage stays data, deleted or not
        assert (run_dir / r.checkpoint).exists() == (r.trial_id in kept), r.trial_id
        assert r.checkpoint_removed == (r.trial_id not in kept)
    assert (run_dir / "best" / "checkpoint").is_dir()
    assert result.best_checkpoint is not None and result.best_checkpoint.exists()
    assert list(result.trials["checkpoint_removed"]) == [r.trial_id not in kept for r in result.records]
    if evaluator == "pbt":
        by_id = {r.trial_id: r for r in result.records}
        for child in (r for r in result.records if r.round > 0):
            # every child loaded its planned parent, so the parent's checkpoint was still there
            assert child.parent_id == child.planned_parent_id and child.parent_note is None
            assert child.parent_hash == by_id[child.parent_id].checkpoint_hash
            # and that parent was among the 2 best of the rounds before the child's (asynchronously: of the
            # trials finished when it started)
            before = (lambda r: r.ended <= child.started) if schedule == "async" else (lambda r: r.round < child.round)
            earlier = sorted((r for r in result.records if before(r)), key=lambda r: (-r.value, r.trial_id))
            assert child.parent_id in {r.trial_id for r in earlier[:2]}


def test_keep_checkpoints_comes_from_the_space_file_and_is_checked(tmp_path, lr_space):
    from autotune.errors import ConfigError

    lr_space["defaults"] = {"keep_checkpoints": 1}
    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator="full", rounds=2,
                          popsize=3, seed=0, output=tmp_path, name="one", executor="local")
    assert result.settings.keep_checkpoints == 1
    assert sum(not r.checkpoint_removed for r in result.records) == 1
    with pytest.raises(ConfigError, match="keep_checkpoints must be an integer >= 1"):
        autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path, name="bad",
                     executor="local", keep_checkpoints=0)


def test_trial_folders_in_an_object_store(tmp_path, lr_space, monkeypatch):
    """--artifacts: trials run in node scratch, their folders go to the store (pyarrow, file:// here:
    the same code path as s3://), children download their parents' checkpoints from it."""
    store, scratch = tmp_path / "store", tmp_path / "scratch"
    monkeypatch.setenv("AUTOTUNE_SCRATCH", str(scratch))
    result = autotune.run(objective("weights"), space=lr_space, sampler="random", evaluator="pbt", rounds=3,
                          popsize=3, seed=2, output=tmp_path / "runs", name="obj", executor="local",
                          artifacts=f"file://{store}", keep_checkpoints=2)
    run_dir = tmp_path / "runs" / "obj"
    assert result.settings.artifacts == f"file://{store}"
    assert not (run_dir / "trials").exists()  # the run folder keeps the database and best/ only
    assert not any(p.is_file() for p in scratch.rglob("*"))  # scratch is left empty
    by_id = {r.trial_id: r for r in result.records}
    for r in result.records:
        assert r.status == "completed"
        assert (store / r.trial_dir / "trial.log").is_file() and (store / r.trial_dir / "outcome.json").is_file()
        assert (store / r.checkpoint).exists() == (not r.checkpoint_removed)  # keep_checkpoints prunes the store
    later = [r for r in result.records if r.round > 0]
    assert later
    for child in later:
        assert child.parent_id == child.planned_parent_id and child.parent_note is None
        parent = by_id[child.parent_id]
        loaded = json.loads((store / child.trial_dir / "loaded.json").read_text())
        assert loaded["step"] == parent.checkpoint_step and child.parent_hash == parent.checkpoint_hash
        assert child.checkpoint_step == parent.checkpoint_step + 2
    best = result.best
    assert json.loads((run_dir / "best" / "checkpoint" / "state.json").read_text())["step"] == best.checkpoint_step
    assert result.best_checkpoint == run_dir / "best" / "checkpoint"
    # a resumed driver adopts an outcome left in the store
    from autotune.records import finished_outcome

    spec = autotune.records.TrialSpec(trial_id=0, round=0, config={}, budget=1, trial_dir=by_id[0].trial_dir)
    assert finished_outcome(run_dir, spec, f"file://{store}").value == by_id[0].value
    # the dashboard reads trial logs from the store
    from fastapi.testclient import TestClient

    from autotune.dashboard.app import create_app

    log = TestClient(create_app([tmp_path / "runs"])).get("/api/runs/obj/trials/4/log").json()
    assert log["source"] == "file" and "[autotune] trial 4 round 1" in log["text"]


def test_a_bad_artifacts_uri_is_refused_before_anything_runs(tmp_path, lr_space):
    from autotune.errors import ConfigError

    for uri, message in [("just/a/path", "must be a URI"), ("nope://bucket", "cannot open --artifacts nope://bucket")]:
        with pytest.raises(ConfigError, match=message):
            autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path, name="x",
                         executor="local", artifacts=uri)
    assert not (tmp_path / "x").exists()


def test_a_run_whose_objective_cannot_be_imported_again_resumes_with_the_function_given_back(tmp_path, xy_space):
    """A lambda (like a function of a script run directly) is stored by a name that cannot be imported:
    resume says how to continue, and continues when given the function."""
    from autotune.errors import TrialError

    def objective(config, trial):
        return -(config["x"] ** 2)

    with pytest.raises(RunInterrupted):
        autotune.run(objective, space=xy_space, sampler="random", evaluator="full", rounds=2, popsize=2, seed=0,
                     output=tmp_path, name="nested", executor=InterruptingExecutor(3))
    with pytest.raises(TrialError, match=r"cannot be imported again.*objective=your_function"):
        autotune.resume(tmp_path / "nested", executor="local")
    assert autotune.load(tmp_path / "nested").status == "interrupted"  # the refusal changed nothing
    again = autotune.resume(tmp_path / "nested", executor="local", objective=objective)
    assert again.status == "completed"
    assert [(r.trial_id, r.status) for r in again.records] == [(i, "completed") for i in range(4)]


def test_resume_checks_the_trial_is_still_there_and_a_completed_run_needs_nothing(tmp_path, xy_space):
    """A trial file moved since the run started is one clear error, not every remaining trial failed
    (which would have marked the run completed); resuming a completed run runs nothing and needs nothing."""
    import shutil

    from autotune.errors import TrialError

    moved = tmp_path / "my_objectives.py"
    shutil.copy(objective("x").rsplit(":", 1)[0], moved)
    with pytest.raises(RunInterrupted):
        autotune.run(f"{moved}:quadratic", space=xy_space, sampler="random", evaluator="full", rounds=2, popsize=2,
                     seed=0, output=tmp_path, name="mv", executor=InterruptingExecutor(1))
    moved.rename(tmp_path / "elsewhere.py")
    with pytest.raises(TrialError, match=r"trial can no longer be found: trial file .*my_objectives.py does not exist"):
        autotune.resume(tmp_path / "mv", executor="local")
    assert autotune.load(tmp_path / "mv").status == "interrupted"  # nothing recorded as failed

    (tmp_path / "elsewhere.py").rename(moved)
    done = autotune.resume(tmp_path / "mv", executor="local")
    assert done.status == "completed" and len(done.records) == 4
    moved.unlink()  # a completed run is not re-checked, nor re-run
    again = autotune.resume(tmp_path / "mv", executor="local")
    assert [(r.trial_id, r.status, r.value) for r in again.records] == [(r.trial_id, r.status, r.value)
                                                                        for r in done.records]


@pytest.mark.parametrize("sampler", ["bayes", "random"])
def test_choices_that_python_finds_equal_stay_apart_in_the_sampler_and_the_database(tmp_path, sampler):
    """`true` and `1` (and `false` and `0`) are different choices: the trial gets the one proposed, and the
    results database (read with plain Optuna) records that one, not its equal."""
    import optuna

    space = {"params": {"flag": {"type": "categorical", "choices": [1, True, 0, False, "1"]},
                        "x": {"type": "float", "low": 0.0, "high": 1.0}}}
    result = autotune.run(objective("returns_number"), space=space, sampler=sampler, evaluator="full", rounds=4,
                          popsize=4, seed=0, output=tmp_path, name="eq", executor="local",
                          sampler_options={"n_startup_trials": 4} if sampler == "bayes" else None)
    seen = {(type(r.config["flag"]), r.config["flag"]) for r in result.records}
    assert {bool, int} <= {t for t, _ in seen}  # both kinds were proposed and ran
    study = optuna.load_study(study_name="eq", storage=f"sqlite:///{tmp_path / 'eq' / 'autotune.db'}")
    stored = {t.user_attrs["trial_id"]: json.loads(t.params["flag"]) for t in study.trials}
    for r in result.records:
        assert type(stored[r.trial_id]) is type(r.config["flag"]) and stored[r.trial_id] == r.config["flag"]


def test_a_run_that_fails_to_start_leaves_nothing_in_a_shared_database(tmp_path, lr_space):
    """With --storage, as without: no folder, no run left in the database, the name free for a retry."""
    import optuna

    from autotune.errors import ConfigError, StoreError

    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    with pytest.raises(ConfigError, match="cannot open --artifacts"):
        autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path / "runs", name="x",
                     storage=shared, executor="local", artifacts="nope://bucket")
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path / "runs", name="x",
                     storage=shared, executor="dask")
    assert not (tmp_path / "runs" / "x").exists()
    assert optuna.get_all_study_names(storage=shared) == []
    done = autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path / "runs",
                        name="x", storage=shared, executor="local")
    assert done.status == "completed"
    with pytest.raises(StoreError, match="already exists"):  # the name is taken now: refused, and the
        autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path / "other",
                     name="x", storage=shared, executor="local")
    assert not (tmp_path / "other" / "x").exists()  # ...refusal leaves no folder
    assert autotune.load(tmp_path / "runs" / "x").status == "completed"  # and the first run is untouched


def test_a_relative_sqlite_url_is_kept_absolute_so_the_run_folder_works_from_anywhere(tmp_path, lr_space,
                                                                                      monkeypatch):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    autotune.run(objective("weights"), space=lr_space, rounds=1, popsize=1, output=tmp_path / "runs", name="rel",
                 storage="sqlite:///rel.db", executor="local")
    info = json.loads((tmp_path / "runs" / "rel" / "run.json").read_text())
    assert info["storage"] == f"sqlite:///{tmp_path / 'work' / 'rel.db'}"
    monkeypatch.chdir(tmp_path)
    assert autotune.load(tmp_path / "runs" / "rel").status == "completed"


def test_a_misspelt_keyword_or_an_empty_name_is_refused_before_anything_is_made(tmp_path, lr_space):
    from autotune.errors import ConfigError

    with pytest.raises(TypeError, match=r"autotune.run\(\) got an unexpected keyword argument 'roudns'; did you mean 'rounds'"):
        autotune.run(objective("weights"), space=lr_space, roudns=3, output=tmp_path, executor="local")
    with pytest.raises(ConfigError, match="a run needs a non-empty name"):
        autotune.run(objective("weights"), space=lr_space, name="", output=tmp_path, executor="local")
    assert list(tmp_path.iterdir()) == []


class _Killed(BaseException):
    """A driver killed without warning (SIGKILL): no handler runs, nothing more is written."""


#: every store method that writes while a run goes on: a trial record, a driver state, the live rows
#: (trials started, reports), checkpoints marked removed
_WRITES = ("record_trial", "put_blob", "flush_live", "mark_checkpoints_removed")


def _three_reports(config, budget, parent):
    from autotune.executors.simulated import SimTrial

    x = config["x"]
    return SimTrial(curve=(x / 3, x / 2, x), duration=1.0 + 2.0 * ((x * 7.3) % 1.0))


def _killed_run(tmp_path, monkeypatch, schedule, kill_at):
    """Run until the store's ``kill_at``-th write (None: to the end); returns the writes counted."""
    from autotune.executors.simulated import SimulatedExecutor
    from autotune.store import Store

    writes = []
    for name in _WRITES:
        real = getattr(Store, name)

        def counting(self, *a, _real=real, _name=name, **k):
            writes.append(_name)
            if len(writes) == kill_at:
                raise _Killed()
            return _real(self, *a, **k)

        monkeypatch.setattr(Store, name, counting)
    space = {"metric": "score", "mode": "max", "params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    try:
        autotune.run(objective("quadratic"), space=space, sampler="hazero", evaluator="pbt", rounds=4, popsize=3,
                     seed=2, output=tmp_path, name="k", executor=SimulatedExecutor(_three_reports, slots=2),
                     schedule=schedule, keep_checkpoints=2)
    except _Killed:
        pass
    finally:
        monkeypatch.undo()
    return writes


@pytest.mark.parametrize("schedule", ["async", "rounds"])
def test_a_driver_killed_at_any_database_write_resumes_exactly(tmp_path, monkeypatch, schedule):
    """Kill the driver at each of its database writes in turn, live rows and checkpoint removals
    included: the resumed run has every trial once, runs no recorded trial again, tells the sampler of
    each trial once, and leaves no trial RUNNING in the database."""
    import optuna

    from autotune.executors.simulated import SimulatedExecutor
    from autotune.results import locate_run

    kinds = _killed_run(tmp_path / "all", monkeypatch, schedule, None)
    assert set(kinds) == set(_WRITES)  # the run makes every kind of write
    total = 12
    points = set()  # each kind of write: its first, second, middle and last time (1-based)
    for name in _WRITES:
        at = [i + 1 for i, kind in enumerate(kinds) if kind == name]
        points |= {at[0], at[min(1, len(at) - 1)], at[len(at) // 2], at[-1]}
    for kill_at in sorted(points):
        where = tmp_path / str(kill_at)
        _killed_run(where, monkeypatch, schedule, kill_at)
        store, run_id, _ = locate_run(where / "k")
        recorded = {r.trial_id for r in store.trials(run_id)}
        store.set_attr(run_id, "status", "interrupted")  # what the dashboard shows for a dead driver
        again = SimulatedExecutor(_three_reports, slots=2)
        result = resume(where / "k", executor=again)
        context = f"killed at write {kill_at} ({kinds[kill_at - 1]})"
        assert result.status == "completed", context
        assert [r.trial_id for r in result.records] == list(range(total)), context
        assert all(r.status == "completed" for r in result.records), context
        assert not recorded & set(again.started), f"{context}: a recorded trial ran again"
        assert len(again.started) == len(set(again.started)), context
        state = store.get_blob(run_id, "driver_state")
        assert state["sampler"]["told"] == [[0, total - 1]] and state["sampler"]["pending"] == {}, context
        for r in result.records:  # lineage stays verified across the kill
            if r.parent_id is not None:
                assert r.parent_hash == result.records[r.parent_id].checkpoint_hash, context
        rows = optuna.load_study(study_name="k", storage=f"sqlite:///{where / 'k' / 'autotune.db'}").trials
        assert not [t for t in rows if t.state == optuna.trial.TrialState.RUNNING], context
        final = [t.user_attrs["trial_id"] for t in rows if t.user_attrs.get("status") != "superseded"]
        assert sorted(final) == list(range(total)), context  # one finished row per trial
