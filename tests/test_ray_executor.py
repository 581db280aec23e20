"""The Ray executor on a real local Ray: parallel slots, worker reuse, and every way a trial can die."""

from __future__ import annotations

import pytest

import autotune
from autotune.evaluators import trial_dir_name
from autotune.executors.ray_executor import RayExecutor
from autotune.records import TrialSpec
from autotune.targets import parse_target
from conftest import objective

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)  # a logical GPU
    yield
    ray.shutdown()


def _specs(n, config=None, timeout=None):
    return [TrialSpec(trial_id=i, round=0, config=dict(config or {"x": 0.5}), budget=1,
                      trial_dir=trial_dir_name(i), timeout=timeout) for i in range(n)]


def _run(target_name, specs, tmp_path, metric="score", **kwargs):
    ex = RayExecutor(cpus_per_trial=1, **kwargs)
    ex.open(tmp_path, parse_target(objective(target_name)), metric)
    try:
        return {o.trial_id: o for o in ex.run(specs)}, ex
    finally:
        ex.close()


def test_trials_run_in_parallel_on_reused_workers(ray_local, tmp_path):
    outs, ex = _run("quadratic", _specs(6, {"x": 0.5, "sleep": 0.3}), tmp_path)
    assert ex.slots == 2
    assert sorted(outs) == list(range(6)) and all(o.status == "completed" for o in outs.values())
    pids = {o.reports[-1]["metrics"]["pid"] for o in outs.values()}
    assert len(pids) == 2  # two workers ran all six trials
    assert all(o.node for o in outs.values())
    # two slots: the six 0.3 s trials overlap in time
    spans = sorted((o.started, o.ended) for o in outs.values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize(
    "name, reason",
    [("exits", "worker process died"), ("killed", "worker process died"), ("raises", "RuntimeError: boom")],
)
def test_a_dying_trial_fails_alone(ray_local, tmp_path, name, reason):
    specs = _specs(1)
    outs, _ = _run(name, specs, tmp_path)
    assert outs[0].status == "failed" and reason in outs[0].reason
    assert outs[0].log_tail and "trial 0" in outs[0].log_tail
    # the pool replaced the dead worker: a healthy trial still runs afterwards
    good, _ = _run("quadratic", _specs(2), tmp_path / "after")
    assert all(o.status == "completed" for o in good.values())


def test_a_hanging_trial_times_out(ray_local, tmp_path):
    outs, _ = _run("hangs", _specs(1, timeout=2.0), tmp_path)
    assert outs[0].status == "failed" and outs[0].reason == "timed out after 2 s"
    assert "hanging" in outs[0].log_tail


def test_impossible_resources_are_refused_before_any_trial(ray_local, tmp_path):
    from autotune.errors import ConfigError

    ex = RayExecutor(cpus_per_trial=1, gpus_per_trial=2)  # the local Ray has 1 (logical) GPU
    with pytest.raises(ConfigError, match="no Ray node can hold one trial"):
        ex.open(tmp_path, parse_target(objective("quadratic")), "score")


def test_search_on_ray_end_to_end(ray_local, tmp_path, lr_space):
    result = autotune.run(objective("weights"), space=lr_space, sampler="pshe2", evaluator="pbt", rounds=2,
                          popsize=3, seed=1, output=tmp_path, name="ray")
    assert len(result.records) == 6 and all(r.status == "completed" for r in result.records)
    assert all(r.parent_id is not None for r in result.records if r.round == 1)
    assert all(r.node for r in result.records)


def test_gpu_out_of_memory_while_sharing_is_retried_once_with_a_whole_gpu(ray_local, tmp_path):
    needs = {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0, 4: 2.0}  # 4 runs out of memory even on a whole GPU
    specs = [TrialSpec(trial_id=i, round=0, config={"x": 0.1 * i, "needs_gpu": n}, budget=1,
                       trial_dir=trial_dir_name(i)) for i, n in needs.items()]
    outs, ex = _run("gpu_hungry", specs, tmp_path, gpus_per_trial=0.5)
    assert ex.slots == 2  # two half-GPU trials share the one GPU
    assert sorted(outs) == list(needs)
    for i in (0, 2):  # fit in half a GPU: one attempt, on a shared GPU
        assert outs[i].status == "completed" and outs[i].attempts == 1 and outs[i].retry_note is None
        assert outs[i].reports[-1]["metrics"]["gpu_share"] == 0.5
    for i in (1, 3):  # out of memory on half a GPU: run again, alone on the whole GPU
        assert outs[i].status == "completed", outs[i].reason
        assert outs[i].attempts == 2
        assert outs[i].reports[-1]["metrics"]["gpu_share"] == 1.0
        assert "attempt 1 ran out of GPU memory sharing a GPU (0.5 GPU per trial)" in outs[i].retry_note
        assert "CUDA out of memory" in outs[i].retry_note and "retried with a whole GPU" in outs[i].retry_note
    # a whole GPU is not enough either: failed after the one retry, with the reason
    assert outs[4].status == "failed" and outs[4].attempts == 2
    assert "OutOfMemoryError: CUDA out of memory" in outs[4].reason and "ran out of GPU memory" in outs[4].retry_note


def test_gpu_out_of_memory_without_sharing_is_not_retried(ray_local, tmp_path):
    specs = [TrialSpec(trial_id=0, round=0, config={"needs_gpu": 2.0}, budget=1, trial_dir=trial_dir_name(0))]
    outs, _ = _run("gpu_hungry", specs, tmp_path, gpus_per_trial=1)
    assert outs[0].status == "failed" and outs[0].attempts == 1 and outs[0].retry_note is None
    assert "CUDA out of memory" in outs[0].reason


def test_stop_trial_kills_a_running_trial_and_drops_a_queued_one(ray_local, tmp_path):
    from autotune.events import TrialFinished, TrialStarted

    sleeps = {0: 60.0, 1: 0.0, 2: 0.0}
    specs = [TrialSpec(trial_id=i, round=0, config={"x": 0.5, "sleep": s}, budget=1, trial_dir=trial_dir_name(i))
             for i, s in sleeps.items()]
    ex = RayExecutor(cpus_per_trial=1, max_workers=1)
    ex.open(tmp_path, parse_target(objective("quadratic")), "score")
    try:
        for s in specs:
            ex.submit(s)
        events = []
        while not any(isinstance(e, TrialStarted) for e in events):
            events += ex.poll(1.0)
        assert [e.trial_id for e in events if isinstance(e, TrialStarted)] == [0]
        assert ex.stop_trial(2) and ex.stop_trial(0) and not ex.stop_trial(7)
        while ex.active:
            events += ex.poll(5.0)
    finally:
        ex.close()
    outs = {e.trial_id: e.outcome for e in events if isinstance(e, TrialFinished)}
    assert len([e for e in events if isinstance(e, TrialFinished)]) == 3 and sorted(outs) == [0, 1, 2]
    for i in (0, 2):
        assert outs[i].status == "stopped" and outs[i].reason == "stopped by the search"
    assert outs[1].status == "completed"  # on the worker that replaced the killed one
    assert [e.trial_id for e in events if isinstance(e, TrialStarted)] == [0, 1]
    assert outs[0].ended - outs[0].started < 30
