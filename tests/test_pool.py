"""The Ray executor's worker pool without Ray: every decision, driven by hand on a fake clock."""

from __future__ import annotations

import dataclasses
import random
import sys

import pytest

from autotune.errors import ExecutorError
from autotune.events import TrialFinished, TrialStarted
from autotune.executors.pool import Kill, Prune, Release, Run, Spawn, WorkerPool
from autotune.records import ParentRef, TrialOutcome, TrialSpec

OOM = "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spec(i: int, timeout: float | None = None) -> TrialSpec:
    return TrialSpec(trial_id=i, round=0, config={"x": i}, budget=1, trial_dir=f"trials/{i:04d}", timeout=timeout)


def ok(i: int) -> TrialOutcome:
    return TrialOutcome(trial_id=i, status="completed", value=1.0)


def make(slots: int = 2, **kwargs) -> tuple[WorkerPool, Clock]:
    clock = Clock()
    return WorkerPool(slots, clock=clock, log_tail=lambda s: f"log of {s.trial_id}", **kwargs), clock


def spawned(cmds) -> list[int]:
    return [c.worker for c in cmds if isinstance(c, Spawn)]


def runs(cmds) -> dict[int, int]:
    """worker -> trial id of each Run command."""
    return {c.worker: c.spec.trial_id for c in cmds if isinstance(c, Run)}


def killed(cmds) -> list[int]:
    return [c.worker for c in cmds if isinstance(c, Kill)]


def finished(events) -> dict[int, TrialOutcome]:
    return {e.trial_id: e.outcome for e in events if isinstance(e, TrialFinished)}


def start_all(pool: WorkerPool, cmds) -> dict[int, int]:
    """Report every spawned worker as started, take a turn; returns worker -> trial dispatched."""
    for w in spawned(cmds):
        pool.worker_started(w, node="10.0.0.1")
    pool.step()
    return runs(pool.take_commands())


def test_trials_go_to_started_workers_in_submission_order_and_workers_are_reused():
    pool, _ = make(slots=2)
    for i in range(3):
        pool.submit(spec(i))
    pool.step()
    cmds = pool.take_commands()
    assert spawned(cmds) == [0, 1] and not runs(cmds)  # nothing runs before a worker has started
    assert pool.active == 3
    pool.worker_started(0, node="10.0.0.1")
    pool.step()
    assert runs(pool.take_commands()) == {0: 0}
    pool.worker_started(1)
    pool.step()
    assert runs(pool.take_commands()) == {1: 1}
    started = [e for e in pool.take_events() if isinstance(e, TrialStarted)]
    assert [(e.trial_id, e.node) for e in started] == [(0, "10.0.0.1"), (1, None)]
    pool.trial_returned(0, ok(0))
    pool.step()
    cmds = pool.take_commands()
    assert runs(cmds) == {0: 2} and not spawned(cmds) and not killed(cmds)  # worker 0 reused
    events = pool.take_events()
    assert finished(events)[0].status == "completed" and finished(events)[0].attempts == 1
    assert [e.trial_id for e in events if isinstance(e, TrialStarted)] == [2]
    assert pool.active == 2


def test_the_pool_grows_to_what_is_queued_but_never_beyond_slots():
    pool, _ = make(slots=4)
    pool.submit(spec(0))
    pool.step()
    assert len(spawned(pool.take_commands())) == 1
    for i in range(1, 11):
        pool.submit(spec(i))
    pool.step()
    assert len(spawned(pool.take_commands())) == 3
    pool.step()
    assert pool.take_commands() == []
    assert len(pool.pool_workers()) == 4


def test_three_failed_starts_raise_but_two_do_not():
    pool, _ = make(slots=1)
    pool.submit(spec(0))
    for n in range(3):
        pool.step()
        (w,) = spawned(pool.take_commands())
        if n < 2:
            pool.worker_failed_to_start(w, "boom")
            assert pool.take_commands() == [Kill(w)]
        else:
            with pytest.raises(ExecutorError, match="Ray workers fail to start: boom"):
                pool.worker_failed_to_start(w, "boom")


def test_a_started_worker_resets_the_count_of_failed_starts():
    pool, _ = make(slots=1)
    pool.submit(spec(0))
    for _ in range(2):
        pool.step()
        (w,) = spawned(pool.take_commands())
        pool.worker_failed_to_start(w, "boom")
    pool.step()
    (w,) = spawned(pool.take_commands())
    pool.worker_started(w)
    pool.step()
    pool.trial_error(w, "Ray error: lost", worker_ok=False)  # replaced
    for _ in range(2):
        (w,) = spawned(pool.take_commands())
        pool.worker_failed_to_start(w, "boom")  # two more failures: still no error
        pool.submit(spec(1))
        pool.step()


def test_a_stall_fails_queued_trials_after_start_timeout():
    pool, clock = make(slots=2, start_timeout=30)
    pool.submit(spec(0))
    pool.submit(spec(1))
    pool.step()
    assert len(spawned(pool.take_commands())) == 2  # Ray never places them
    clock.now += 30
    pool.step()
    assert not finished(pool.take_events())  # not yet: exactly the limit
    clock.now += 1
    pool.step()
    outs = finished(pool.take_events())
    assert sorted(outs) == [0, 1]
    for o in outs.values():
        assert o.status == "failed" and o.reason == "no Ray node could start a worker within 30 s"
        assert o.log_tail == f"log of {o.trial_id}" and o.ended == clock.now
    assert pool.active == 0


def test_a_stalled_pool_with_no_worker_starting_starts_one():
    pool, clock = make(slots=1, start_timeout=30)
    pool.submit(spec(0))
    pool.step()
    (w,) = spawned(pool.take_commands())
    pool.worker_failed_to_start(w, "gone")
    pool.take_commands()
    pool.step()
    assert len(spawned(pool.take_commands())) == 1


def test_a_running_trial_is_not_a_stall():
    pool, clock = make(slots=1, start_timeout=30)
    pool.submit(spec(0))
    pool.submit(spec(1))
    pool.step()
    start_all(pool, pool.take_commands())
    clock.now += 100  # trial 0 runs long; trial 1 waits for its worker
    pool.step()
    assert not finished(pool.take_events()) and pool.active == 2


def test_a_trial_over_its_time_limit_fails_and_its_worker_is_replaced():
    pool, clock = make(slots=1)
    pool.submit(spec(0, timeout=8))
    pool.submit(spec(1, timeout=8))
    pool.step()
    assert start_all(pool, pool.take_commands()) == {0: 0}
    started_at = clock.now
    clock.now += 8
    pool.step()
    assert not finished(pool.take_events())
    clock.now += 0.5
    pool.step()
    outs = finished(pool.take_events())
    assert outs[0].status == "failed" and outs[0].reason == "timed out after 8 s"
    assert outs[0].started == started_at and outs[0].log_tail == "log of 0"
    cmds = pool.take_commands()
    assert killed(cmds) == [0] and spawned(cmds) == [1]  # replaced
    pool.trial_returned(0, ok(0))  # the killed worker's late answer is ignored
    assert not pool.take_events()
    assert start_all(pool, cmds) == {1: 1}


def test_a_trial_whose_node_was_lost_is_retried_up_to_max_retries_then_fails():
    pool, _ = make(slots=1, max_retries=1)
    pool.submit(spec(0))
    pool.step()
    assert start_all(pool, pool.take_commands()) == {0: 0}
    pool.worker_died(0, node_lost=True, reason="worker process died: node gone")
    cmds = pool.take_commands()
    assert killed(cmds) == [0] and spawned(cmds) == [1]
    assert not finished(pool.take_events()) and list(pool.queue) == [(spec(0), 2)]
    assert start_all(pool, cmds) == {1: 0}
    pool.worker_died(1, node_lost=True, reason="worker process died: node gone")
    out = finished(pool.take_events())[0]
    assert out.status == "failed" and out.reason == "its node was lost (2 attempts)"
    assert out.attempts == 2 and out.retry_note == "attempt 1 lost its node; retried"
    assert pool.active == 0


def test_a_retried_trial_that_completes_carries_its_retry_note():
    pool, _ = make(slots=1, max_retries=2)
    pool.submit(spec(0))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.worker_died(0, node_lost=True, reason="x")
    start_all(pool, pool.take_commands())
    pool.trial_returned(1, ok(0))
    out = finished(pool.take_events())[0]
    assert out.status == "completed" and out.attempts == 2 and out.retry_note == "attempt 1 lost its node; retried"


def test_a_worker_dying_with_its_node_alive_fails_the_trial_with_the_reason():
    pool, _ = make(slots=1, max_retries=3)
    pool.submit(spec(0))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.worker_died(0, node_lost=False, reason="worker process died: exit code 3")
    out = finished(pool.take_events())[0]
    assert out.reason == "worker process died: exit code 3" and out.attempts == 1 and out.retry_note is None


def test_trial_errors_keep_a_healthy_worker_and_replace_a_broken_one():
    pool, _ = make(slots=2)
    pool.submit(spec(0))
    pool.submit(spec(1))
    pool.step()
    on = {t: w for w, t in start_all(pool, pool.take_commands()).items()}
    pool.trial_error(on[0], "worker error: bug", worker_ok=True)
    pool.trial_error(on[1], "Ray error: X: y", worker_ok=False)
    outs = finished(pool.take_events())
    assert outs[0].reason == "worker error: bug" and outs[1].reason == "Ray error: X: y"
    cmds = pool.take_commands()
    assert killed(cmds) == [on[1]] and spawned(cmds) == [2]
    assert [w.id for w in pool.pool_workers() if w.state == "idle"] == [on[0]]


def _two_sharing_trials(pool: WorkerPool) -> None:
    for i in range(3):
        pool.submit(spec(i))
    pool.step()
    assert start_all(pool, pool.take_commands()) == {0: 0, 1: 1}
    pool.take_events()


def test_out_of_memory_while_sharing_a_gpu_is_retried_once_on_a_whole_gpu():
    pool, _ = make(slots=2, gpus_per_trial=0.5)
    _two_sharing_trials(pool)
    pool.trial_returned(0, TrialOutcome(trial_id=0, status="failed", reason=OOM + "\nmore"))
    assert not finished(pool.take_events())  # not finished: retried
    cmds = pool.take_commands()
    assert cmds == [Spawn(2, 1.0)]
    pool.step()  # the idle half-GPU worker is let go, and gets no queued trial meanwhile
    cmds = pool.take_commands()
    assert killed(cmds) == [0] and not runs(cmds) and not spawned(cmds)
    assert pool.active == 3
    pool.worker_started(2)
    cmds = pool.take_commands()
    assert runs(cmds) == {2: 0}
    assert [e.trial_id for e in pool.take_events() if isinstance(e, TrialStarted)] == [0]
    pool.step()  # the whole-GPU worker runs: the pool grows back for the queued trial
    assert len(spawned(pool.take_commands())) == 1
    pool.trial_returned(2, ok(0))
    out = finished(pool.take_events())[0]
    assert out.status == "completed" and out.attempts == 2
    assert out.retry_note == ("attempt 1 ran out of GPU memory sharing a GPU (0.5 GPU per trial): "
                              f"{OOM}; retried with a whole GPU")
    assert killed(pool.take_commands()) == [2]  # a whole-GPU worker runs one trial
    assert 2 not in pool.workers


def test_out_of_memory_on_the_whole_gpu_fails_without_another_retry():
    pool, _ = make(slots=2, gpus_per_trial=0.5)
    _two_sharing_trials(pool)
    pool.trial_returned(1, TrialOutcome(trial_id=1, status="failed", reason="boom", log_tail="...OutOfMemoryError"))
    (w,) = spawned(pool.take_commands())
    pool.worker_started(w)
    pool.take_commands()
    pool.trial_returned(w, TrialOutcome(trial_id=1, status="failed", reason=OOM))
    out = finished(pool.take_events())[1]
    assert out.status == "failed" and out.attempts == 2 and OOM in out.reason
    assert "ran out of GPU memory" in out.retry_note


def test_out_of_memory_without_sharing_is_not_retried():
    pool, _ = make(slots=1, gpus_per_trial=1.0)
    pool.submit(spec(0))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.trial_returned(0, TrialOutcome(trial_id=0, status="failed", reason=OOM))
    out = finished(pool.take_events())[0]
    assert out.attempts == 1 and out.retry_note is None and not spawned(pool.take_commands())


def test_a_whole_gpu_that_never_frees_fails_the_retry_after_start_timeout():
    pool, clock = make(slots=2, gpus_per_trial=0.5, start_timeout=60)
    _two_sharing_trials(pool)
    pool.trial_returned(0, TrialOutcome(trial_id=0, status="failed", reason=OOM))
    (w,) = spawned(pool.take_commands())
    pool.step()
    assert killed(pool.take_commands()) == [0]  # the idle half-GPU worker is let go
    clock.now += 60
    pool.step()
    assert not finished(pool.take_events()) and not pool.take_commands()
    clock.now += 1
    pool.step()
    out = finished(pool.take_events())[0]
    assert out.reason == "could not retry with a whole GPU: no Ray node freed a whole GPU within 60 s"
    assert out.attempts == 2 and out.status == "failed"
    cmds = pool.take_commands()
    assert w in killed(cmds)
    assert len(spawned(cmds)) == 1  # the pool is back to normal: the queued trial gets a worker
    assert start_all(pool, cmds) == {spawned(cmds)[0]: 2}


def test_a_whole_gpu_worker_that_fails_to_start_fails_the_retry():
    pool, _ = make(slots=2, gpus_per_trial=0.5)
    _two_sharing_trials(pool)
    pool.trial_returned(0, TrialOutcome(trial_id=0, status="failed", reason=OOM))
    (w,) = spawned(pool.take_commands())
    pool.worker_failed_to_start(w, "placement failed")
    out = finished(pool.take_events())[0]
    assert out.reason == "could not retry with a whole GPU: placement failed"


def test_stop_kills_workers_with_trials_and_drops_the_queue():
    pool, _ = make(slots=2)
    for i in range(4):
        pool.submit(spec(i))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.take_events()
    assert sorted(pool.stop()) == [0, 1]
    assert sorted(killed(pool.take_commands())) == [0, 1]
    assert pool.active == 0 and not pool.queue
    assert not finished(pool.take_events())  # the driver records them itself


def test_stop_trial_kills_and_replaces_its_worker_and_finishes_it_as_stopped():
    pool, clock = make(slots=2)
    for i in range(3):
        pool.submit(spec(i))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.take_events()
    started = clock.now
    clock.now += 5
    assert pool.stop_trial(1) is True
    cmds = pool.take_commands()
    assert killed(cmds) == [1] and spawned(cmds) == [2]
    out = finished(pool.take_events())[1]
    assert out.status == "stopped" and out.reason == "stopped by the search"
    assert out.started == started and out.ended == clock.now
    pool.trial_returned(1, ok(1))  # the killed worker's late answer is ignored
    assert not pool.take_events()
    assert start_all(pool, cmds) == {2: 2}
    assert pool.stop_trial(1) is False and pool.stop_trial(99) is False


def two_running(**kwargs) -> tuple[WorkerPool, Clock]:
    """A pool of two started workers running trials 0 and 1, its commands and events taken."""
    pool, clock = make(slots=2, **kwargs)
    for i in range(2):
        pool.submit(spec(i))
    pool.step()
    start_all(pool, pool.take_commands())
    pool.take_events()
    return pool, clock


def test_a_trial_told_to_stop_is_ended_after_its_grace_unless_it_finishes_first():
    pool, clock = two_running(prune_grace=60.0)
    pool.prune(0)
    pool.prune(1)
    assert [c for c in pool.take_commands() if isinstance(c, Prune)] == [Prune(0), Prune(1)]
    clock.now += 30
    pool.prune(1)  # told again: the first deadline stands, and the trial is not told twice
    assert not pool.take_commands()
    pool.trial_returned(1, ok(1))  # trial 1 reached its report and stopped in time
    assert set(finished(pool.take_events())) == {1}
    clock.now += 29.9
    pool.step()
    assert not finished(pool.take_events()) and not killed(pool.take_commands())
    clock.now += 0.1  # 60 s after it was told: trial 0 never reached a report
    pool.step()
    cmds = pool.take_commands()
    out = finished(pool.take_events())
    assert set(out) == {0} and out[0].status == "stopped" and killed(cmds) == [0]
    clock.now += 120
    pool.step()  # nothing is ended twice, and trial 1's deadline went with it
    assert not finished(pool.take_events())


def test_stop_trial_of_a_queued_trial_removes_it_from_the_queue():
    pool, _ = make(slots=1)
    for i in range(3):
        pool.submit(spec(i))
    assert pool.stop_trial(1) is True
    out = finished(pool.take_events())[1]
    assert out.status == "stopped" and out.started is None
    assert [s.trial_id for s, _ in pool.queue] == [0, 2] and pool.active == 2
    pool.step()
    assert start_all(pool, pool.take_commands()) == {0: 0}
    pool.trial_returned(0, ok(0))
    pool.step()
    assert runs(pool.take_commands()) == {0: 2}  # trial 1 never runs


def test_stop_trial_of_a_trial_waiting_for_a_whole_gpu():
    pool, _ = make(slots=2, gpus_per_trial=0.5)
    _two_sharing_trials(pool)
    pool.trial_returned(0, TrialOutcome(trial_id=0, status="failed", reason=OOM))
    (w,) = spawned(pool.take_commands())
    assert pool.stop_trial(0) is True
    assert killed(pool.take_commands()) == [w]
    out = finished(pool.take_events())[0]
    assert out.status == "stopped" and out.attempts == 2


# -- affinity: a child runs where its parent's live state is kept (continue in place) -------------------
def child(i: int, parent: int) -> TrialSpec:
    ref = ParentRef(trial_id=parent, checkpoint=f"trials/{parent:04d}/checkpoint", step=1, hash=f"h{parent}")
    return TrialSpec(trial_id=i, round=1, config={"x": i}, budget=1, trial_dir=f"trials/{i:04d}", parents=(ref,))


def kept(i: int, parent: int | None = None) -> TrialOutcome:
    """A completed trial whose worker process keeps its live state (and which loaded ``parent``)."""
    return TrialOutcome(trial_id=i, status="completed", value=1.0, kept_state=True, parent_id=parent)


def two_workers_that_ran(pool: WorkerPool, outcomes: list[TrialOutcome]) -> dict[int, int]:
    """Trials 0 and 1 on workers 0 and 1, returned in the order of ``outcomes``; returns trial -> worker."""
    for i in range(2):
        pool.submit(spec(i))
    pool.step()
    ran = {t: w for w, t in start_all(pool, pool.take_commands()).items()}
    for out in outcomes:
        pool.trial_returned(ran[out.trial_id], out)
    return ran


def test_a_child_runs_on_the_idle_worker_that_keeps_its_parents_state():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [kept(0), kept(1)])  # worker of 0 idle longest
    pool.submit(child(2, parent=1))
    pool.step()
    assert runs(pool.take_commands()) == {ran[1]: 2}  # not the longest-idle worker: the one keeping trial 1
    pool.submit(child(3, parent=0))
    pool.step()
    assert runs(pool.take_commands()) == {ran[0]: 3}


def test_a_child_whose_parents_worker_is_busy_does_not_wait_for_it():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [kept(0)])  # trial 1 still running
    pool.submit(child(2, parent=1))
    pool.step()
    assert runs(pool.take_commands()) == {ran[0]: 2}  # runs now, and loads its parent from disk


def test_other_trials_leave_alone_an_idle_worker_a_queued_child_wants():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [kept(0), kept(1)])
    pool.submit(spec(5))  # no parent: would take the longest-idle worker, the one keeping trial 0
    pool.submit(child(6, parent=0))
    pool.step()
    cmds = pool.take_commands()
    assert runs(cmds) == {ran[1]: 5, ran[0]: 6}
    assert [c.spec.trial_id for c in cmds if isinstance(c, Run)] == [5, 6]  # still in submission order


def test_without_a_kept_state_a_child_takes_the_longest_idle_worker():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [ok(0), ok(1)])  # trials that do not keep their state
    pool.submit(child(2, parent=1))
    pool.step()
    assert runs(pool.take_commands()) == {ran[0]: 2}


def test_a_state_goes_to_one_child_and_a_worker_keeps_only_its_newest():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [kept(1), kept(0)])  # the worker of 1 idle longest
    w0 = ran[0]
    pool.submit(child(2, parent=0))
    pool.step()
    assert runs(pool.take_commands()) == {w0: 2}
    pool.trial_returned(w0, kept(2, parent=0))  # the child continued from trial 0's state: gone from w0
    assert list(pool.workers[w0].kept) == [2]
    pool.submit(child(3, parent=0))  # a second child of trial 0: no worker keeps it, the longest idle runs it
    pool.step()
    assert runs(pool.take_commands()) == {ran[1]: 3}
    for i in (4, 5, 6):  # three more trials on w0: it keeps the newest two (as its process does)
        pool.submit(spec(i))
        pool.step()
        assert runs(pool.take_commands()) == {w0: i}
        pool.trial_returned(w0, kept(i))
    assert list(pool.workers[w0].kept) == [5, 6]


def test_a_killed_worker_takes_its_states_with_it():
    pool, _ = make(slots=2)
    ran = two_workers_that_ran(pool, [kept(0)])
    pool.submit(child(2, parent=0))
    pool.step()
    assert runs(pool.take_commands()) == {ran[0]: 2}
    pool.worker_died(ran[0], node_lost=False, reason="died")
    assert ran[0] not in pool.workers  # replaced by a fresh worker, which keeps nothing
    assert all(not w.kept for w in pool.workers.values())


@pytest.mark.parametrize("affinity", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_random_histories_finish_every_trial_exactly_once(seed, affinity):
    """Whatever Ray reports, in any order: one TrialFinished per trial, a TrialStarted per Run (with
    ``affinity``: children of earlier trials, and outcomes whose worker keeps their state)."""
    rng = random.Random(seed)
    pool, clock = make(slots=3, gpus_per_trial=0.5, max_retries=1, start_timeout=50)
    n = 15
    for i in range(n):
        s = spec(i, timeout=rng.choice([None, 20]))
        if affinity and i >= 3:
            s = dataclasses.replace(s, parents=child(i, rng.randrange(i)).parents)
        pool.submit(s)
    starting: set[int] = set()
    running: dict[int, int] = {}
    runs_seen, started_seen, done = 0, 0, []
    stopped = False
    fails_in_row = 0  # pool workers failing to start in a row (whole-GPU workers do not count)
    whole: dict[int, bool] = {}  # worker -> spawned for a whole GPU
    for _ in range(2000):
        if not pool.active:
            break
        pool.step()
        for c in pool.take_commands():
            if isinstance(c, Spawn):
                starting.add(c.worker)
                whole[c.worker] = c.gpus == 1.0
            elif isinstance(c, Run):
                running[c.worker] = c.spec.trial_id
                runs_seen += 1
            else:
                starting.discard(c.worker)
                running.pop(c.worker, None)
        for e in pool.take_events():
            if isinstance(e, TrialStarted):
                started_seen += 1
            else:
                done.append(e.trial_id)
        clock.now += rng.choice([0.5, 1, 5])
        roll = rng.random()
        if starting and roll < 0.4:
            w = rng.choice(sorted(starting))
            starting.discard(w)
            if rng.random() < 0.2 and (whole[w] or fails_in_row < 2):  # three in a row end the run
                fails_in_row += not whole[w]
                pool.worker_failed_to_start(w, "nope")
            else:
                fails_in_row = fails_in_row if whole[w] else 0
                pool.worker_started(w)
        elif running and roll < 0.9:
            w = rng.choice(sorted(running))
            tid = running.pop(w)
            kind = rng.random()
            if kind < 0.6:
                pool.trial_returned(w, kept(tid) if affinity and rng.random() < 0.7 else ok(tid))
            elif kind < 0.75:
                pool.trial_returned(w, TrialOutcome(trial_id=tid, status="failed", reason=OOM))
            elif kind < 0.9:
                pool.worker_died(w, node_lost=rng.random() < 0.5, reason="died")
            else:
                pool.trial_error(w, "worker error", worker_ok=rng.random() < 0.5)
        elif not stopped and roll > 0.97:
            stopped = pool.stop_trial(rng.randrange(n))
    assert pool.active == 0, "the history did not end"
    done += [e.trial_id for e in pool.take_events() if isinstance(e, TrialFinished)]
    assert sorted(done) == list(range(n))
    assert runs_seen == started_seen


def test_the_pool_does_not_import_ray():
    import subprocess

    code = "import sys, autotune.executors.pool; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def released(cmds) -> list[tuple[int, int]]:
    return [(c.trial_id, c.step) for c in cmds if isinstance(c, Release)]


def test_a_report_waits_for_its_verdict_and_goes_on_at_the_deadline_without_one():
    pool, clock = two_running(verdict_wait=2.0)
    pool.reported(0, 1)
    pool.reported(1, 1)
    pool.verdict(1, 1, stop=False)  # judged at once: released at once
    assert released(pool.take_commands()) == [(1, 1)]
    clock.now += 1.9
    pool.step()
    assert not released(pool.take_commands())  # trial 0's report still waits
    clock.now += 0.1
    pool.step()
    assert released(pool.take_commands()) == [(0, 1)]  # 2 s and no verdict: it goes on
    pool.verdict(0, 1, stop=False)  # a late verdict answers nothing twice
    clock.now += 10
    pool.step()
    assert not pool.take_commands()
    pool.reported(0, 2)
    pool.verdict(0, 2, stop=True)  # stop: the trial is pruned, its report answered so, no release
    cmds = pool.take_commands()
    assert cmds == [Prune(0)]
    pool.reported(0, 3)  # a pruned trial's later report does not wait (the bus answers it: stop)
    clock.now += 5
    pool.step()
    assert not released(pool.take_commands())
    pool.reported(1, 2)
    pool.trial_returned(1, ok(1))  # it ended before its verdict: nothing is left waiting for it
    clock.now += 5
    pool.step()
    assert not released(pool.take_commands())
    pool.reported(7, 1)  # a trial that is not running here waits for nothing
    clock.now += 5
    pool.step()
    assert not released(pool.take_commands())
