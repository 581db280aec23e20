"""The search loop, with its executor injected: asynchronous (the default) or in synchronous rounds.

``async``: whenever a slot frees, the sampler proposes one candidate, the evaluator plans it from the
trials finished at that moment, and the executor starts it; as each trial ends it is written to the
store in one transaction and told to the sampler.  The state (sampler state and the specs in flight)
is saved after every ask and every tell, so a driver killed at any moment resumes exactly, trial by
trial: finished trials are never run again, trials in flight run again with their original specs,
and the sampler continues from its saved state.

``rounds`` (AutoDL Finetuner's generations): each round the sampler proposes ``popsize`` candidates,
they all run, and the round's observations go back to the sampler together.  Two state writes per
round (the plan before any trial starts, the sampler state after ``tell``) make it resumable exactly.

The driver's own work per finished trial does not grow with the trials so far: the best trial, the
checkpoints to keep and the Population-Based parent pool are kept in sorted leaderboards.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import interrupts
from .checkpoints import CheckpointFiles
from .errors import ConfigError, DiskFullError, RunInterrupted, StoreError, StoreWriteError, TrialError
from .events import (
    ProgressEvent,
    RoundEnd,
    RoundStart,
    RunStart,
    TrialEnd,
    TrialFinished,
    TrialReported,
    TrialStart,
    TrialStarted,
)
from .evaluators import Evaluator
from .evaluators.base import Plan, PopulationView
from .evaluators.pbt import PopulationBasedEvaluator
from .executors.base import Executor
from .liveness import DRIVER_ATTR, HEARTBEAT_ATTR, Heartbeat, driving
from .ranking import Leaderboard, best_record, loss_of
from .records import LOG_FILE_NAME, TrialOutcome, TrialRecord, TrialSpec, finished_outcome
from .samplers import Observation, Sampler
from .samplers.base import Candidate
from .settings import ASYNC, ROUNDS, RunSettings
from .stopping import make_rule
from .space import SearchSpace
from .statuses import (
    FAILED,
    FINAL,
    INTERRUPTED,
    PLANNED,
    PRUNED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUNNING,
    STOPPED,
    TOLD,
    FailureKind,
)
from .store import DRIVER_STATE, TIME_BUDGET_ATTR, Store
from .targets import TrialTarget

STATE_KEY = DRIVER_STATE
#: how long the asynchronous loop waits for an outcome before it looks around (heartbeat, Ctrl-C)
POLL_S = 1.0

ProgressFn = Callable[[ProgressEvent], None]

__all__ = ["Driver", "RunContext", "best_record", "loss_of", "STATE_KEY"]


@dataclass
class RunContext:
    """One run's identity and persistent parts."""

    store: Store
    run_id: int
    run_dir: Path
    settings: RunSettings
    space: SearchSpace
    target: TrialTarget


class Driver:
    def __init__(
        self,
        ctx: RunContext,
        sampler: Sampler,
        evaluator: Evaluator,
        executor: Executor,
        progress: ProgressFn | None = None,
    ) -> None:
        self.ctx = ctx
        self.sampler = sampler
        self.evaluator = evaluator
        self.executor = executor
        self.progress = progress or (lambda event: None)
        self._distributions = ctx.space.to_optuna_distributions()
        self._records: dict[int, TrialRecord] | None = None  # this driver's view of the store, see records()
        mode = ctx.settings.mode
        self._board = Leaderboard(mode)  # every scored trial: the best
        self._parents = Leaderboard(mode, PopulationBasedEvaluator.can_parent)  # checkpoints that can be parents
        self._by_generation: dict[int, list[TrialRecord]] = {}  # finished trials by generation (pbt's peers)
        s = ctx.settings
        self._files = CheckpointFiles(ctx.run_dir, mode, s.keep_checkpoints, s.artifacts,
                                      lambda ids: ctx.store.mark_checkpoints_removed(ctx.run_id, ids))
        self._inflight: dict[int, TrialSpec] = {}
        self._inflight_dicts: dict[int, dict[str, Any]] = {}  # the same specs as saved: made once per trial
        self._rule = make_rule(ctx.settings.early_stop, ctx.settings.early_stop_options)
        self._pruning: set[int] = set()  # trials the rule stopped, until they end
        self._judged: dict[int, int] = {}  # trial -> last report step the rule has seen
        self._live_reports: dict[int, list[dict[str, Any]]] = {}  # reports of trials in flight, as they came
        executor.report_judge = self._judge
        executor.judging = self._rule.name != "none"
        self._deadline: float | None = None  # executor clock time after which no trial starts (time_budget)
        self._budget_spent = False
        self.asynchronous = ctx.settings.schedule == ASYNC
        if self.asynchronous:
            sampler.set_asynchronous(True)

    # -- state -----------------------------------------------------------------------------------
    def _save_state(self, state: dict[str, Any]) -> None:
        self.ctx.store.save_driver_state(self.ctx.run_id, state)

    def _load_state(self) -> dict[str, Any] | None:
        return self.ctx.store.driver_state(self.ctx.run_id)

    def records(self) -> list[TrialRecord]:
        """Every finished trial of the run, in id order.

        Read from the store once, then kept up to date as this driver writes: the driver is the run's
        only writer (``resume`` refuses a run whose driver lives), and reading every trial back from
        the database each round made a round cost O(trials so far).
        """
        return [self._all()[k] for k in sorted(self._all())]

    def _all(self) -> dict[int, TrialRecord]:
        if self._records is None:
            self._records = {}
            for r in self.ctx.store.trials(self.ctx.run_id):
                self._records[r.trial_id] = r
                self._rank(r)
                self._replay(r)
                self._files.kept.add(r)
        return self._records

    def _replay(self, record: TrialRecord) -> None:
        """A finished trial's reports into the early-stopping rule (a resumed driver starts afresh)."""
        if self._rule.name == "none":
            return
        start = record.parent_step or 0
        for rep in record.reports:
            self._rule_says(record.trial_id, start, rep)

    def _rule_says(self, trial_id: int, start_step: int, entry: dict[str, Any]) -> bool:
        """The rule's verdict on one report (each report is judged once)."""
        step = int(entry.get("step", 0))
        if self._judged.get(trial_id, -1) >= step:
            return trial_id in self._pruning
        self._judged[trial_id] = step
        value = self._reported(entry)
        if value is None:
            return False
        return self._rule.report(trial_id, step - start_step, -value if self.ctx.settings.mode == "min" else value)

    def _reported(self, entry: dict[str, Any]) -> float | None:
        """The run metric in one report, as reported; None when it is missing or not a number."""
        try:
            return float((entry.get("metrics") or {})[self.ctx.settings.metric])
        except (KeyError, TypeError, ValueError):
            return None

    def _judge(self, trial_id: int, entry: dict[str, Any]) -> bool:
        """Asked at each report of a trial in flight (in-process executors ask synchronously)."""
        spec = self._inflight.get(trial_id)
        if spec is None or self._rule.name == "none":
            return False
        if self._rule_says(trial_id, (spec.parent.step or 0) if spec.parent else 0, entry):
            self._pruning.add(trial_id)
        return trial_id in self._pruning

    def _observation(self, record: TrialRecord) -> Observation:
        """What the sampler is told of a finished trial: its loss, a failure, or a pruned trial with its
        reported losses by step, counted from the trial's own start (a pbt child's first step is 1)."""
        s = self.ctx.settings
        if record.status != PRUNED:
            return Observation(id=record.trial_id, loss=loss_of(record, s.mode))
        start = record.parent_step or 0
        curve = [(int(rep.get("step", 0)) - start, -value if s.mode == "max" else value)
                 for rep in record.reports if (value := self._reported(rep)) is not None]
        steps, last = (curve[-1] if curve else (0, None))
        return Observation(id=record.trial_id, loss=last, pruned_step=max(0, steps), curve=tuple(curve))

    def _rank(self, record: TrialRecord) -> None:
        for board in (self._board, self._parents):
            board.add(record)
        self._by_generation.setdefault(record.round, []).append(record)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        """Run (or continue) the search to its end; returns every trial record.

        A database that fails (after the store's retries, see :mod:`autotune.store`) stops the run as
        interrupted with one :class:`~autotune.errors.StoreError`: a :class:`DiskFullError` or a
        :class:`StoreWriteError`, each naming the ``autotune resume`` that continues it."""
        with driving() as me, interrupts.handling():  # Ctrl-C at safe points: never inside a database write
            return self._drive(me)

    def _drive(self, me: dict[str, Any]) -> list[TrialRecord]:
        s = self.ctx.settings
        store, run_id = self.ctx.store, self.ctx.run_id
        heartbeat: Heartbeat | None = None
        try:
            store.set_attr(run_id, "status", RUNNING)
            store.set_attr(run_id, DRIVER_ATTR, me)
            heartbeat = Heartbeat(lambda now: store.set_attr(run_id, HEARTBEAT_ATTR, now)).__enter__()
            self.executor.open(self.ctx.run_dir, self.ctx.target, s.metric, s.artifacts)
        except BaseException as e:  # no Ray, impossible resources, no database: nothing ran, it can be resumed
            if heartbeat is not None:
                heartbeat.__exit__()
            self._mark_interrupted()
            if isinstance(e, StoreError):
                raise self._store_stopped(e) from None
            raise
        if s.time_budget is not None:
            self._deadline = self.executor.now() + s.time_budget
        try:
            state = self._load_state()
            store.close_stale_running(run_id)  # rows a killed driver left RUNNING: none stays so
            self._all()
            if self.asynchronous:
                self._run_async(state)
            else:
                self._run_rounds(state)
            store.set_attr(run_id, "status", RUN_COMPLETED)
            store.set_attr(run_id, "finished", time.time())
        except StoreError as e:  # the database failed (or its disk is full): interrupted, say which run to resume
            self._mark_interrupted()
            raise self._store_stopped(e) from None
        except KeyboardInterrupt:
            self._mark_interrupted()
            raise RunInterrupted(
                f"run stopped; continue it with: autotune resume {self.ctx.run_dir}"
            ) from None
        except BaseException:
            try:  # best effort: the database itself may be what failed
                store.set_attr(run_id, "status", RUN_FAILED)
            except Exception:  # noqa: BLE001
                pass
            raise
        finally:
            heartbeat.__exit__()
            self.executor.close()
        return self.records()

    def _mark_interrupted(self) -> None:
        """Best effort: the database itself may be what failed (the run then reads as interrupted once
        this driver has ended, see :mod:`autotune.liveness`)."""
        with contextlib.suppress(Exception):
            self.ctx.store.set_attr(self.ctx.run_id, "status", INTERRUPTED)

    def _store_stopped(self, e: StoreError) -> StoreError:
        """The one-line error of a run stopped by its database, naming the run to resume."""
        if isinstance(e, DiskFullError):  # from the database: say which run to resume
            return DiskFullError(str(e).replace("RUN_DIR", str(self.ctx.run_dir)))
        if isinstance(e, StoreWriteError):
            return e
        return StoreWriteError(f"{e}; the run is interrupted: once the database works again, run: "
                               f"autotune resume {self.ctx.run_dir}")

    # -- asynchronous ----------------------------------------------------------------------------
    def _run_async(self, state: dict[str, Any] | None) -> None:
        """Keep every slot busy: plan and start a trial whenever one frees, until ``rounds x popsize``."""
        s = self.ctx.settings
        total = s.rounds * s.popsize
        planned = 0
        if state is not None:
            if state.get("schedule") != ASYNC:
                raise ConfigError("this run was started in rounds; it resumes in rounds (schedule: rounds)")
            self.sampler.load_state_dict(state["sampler"])
            planned = int(state["planned"])
            self._inflight = {d["trial_id"]: TrialSpec.from_dict(d) for d in state["specs"]}
            self._inflight_dicts = {d["trial_id"]: d for d in state["specs"]}
        self.progress(RunStart(run_dir=str(self.ctx.run_dir), schedule=ASYNC, rounds=s.rounds, total=total,
                               done=planned - len(self._inflight)))
        self._adopt_inflight(planned)
        for spec in self._inflight.values():  # in flight when the last driver stopped: run them again
            self.executor.submit(spec)
        slots = max(1, self.executor.slots)
        try:
            while True:
                while planned < total and self.executor.active < slots and not self._out_of_time():
                    spec = self._plan_next(planned)
                    if spec is None:  # every population member has a trial in flight: wait for one
                        break
                    planned += 1
                    self.executor.submit(spec)
                    self.progress(TrialStart(spec=spec, running=self.executor.active, slots=slots, mode=s.mode,
                                             done=planned - len(self._inflight), total=total))
                if not self.executor.active:
                    break
                for event in self._events():
                    if isinstance(event, TrialFinished):
                        self._finish(event.outcome, planned, total)
                    else:
                        self._live(event)
        except KeyboardInterrupt:
            self._record_stopped()
            raise

    def _out_of_time(self) -> bool:
        """The time budget is spent: no trial starts any more (once, the run records that it ended so)."""
        if self._deadline is None or self.executor.now() < self._deadline:
            return False
        if not self._budget_spent:
            self._budget_spent = True
            self.ctx.store.set_attr(self.ctx.run_id, TIME_BUDGET_ATTR, time.time())
        return True

    def _live(self, event: TrialStarted | TrialReported) -> None:
        """A trial in flight started or reported: the database shows it RUNNING with its reports."""
        spec = self._inflight.get(event.trial_id)
        if spec is None:
            return  # a late copy of a report from a trial already finished
        store, run_id = self.ctx.store, self.ctx.run_id
        if isinstance(event, TrialStarted):
            store.start_trial(run_id, spec.trial_id, spec.round, self._distributions,
                              self.ctx.space.to_optuna_params(spec.config))
            return
        entry = {"step": event.step, "metrics": event.metrics, "time": event.at}
        self._live_reports.setdefault(spec.trial_id, []).append(entry)
        if self.executor.judging and spec.trial_id not in self._pruning:
            # answered at once: a trial waiting for it stops at this report; ended after a grace period
            self.executor.verdict(spec.trial_id, event.step, self._judge(spec.trial_id, entry))
        store.report_trial(run_id, spec.trial_id, event.step, event.metrics)  # written before the next wait

    def _events(self) -> list[Any]:
        """The executor's next events, after the live rows of the last ones (trials started, reports)
        go to the database in one transaction, so a poll's reports cost one write, made while no
        trial waits on the driver."""
        self.ctx.store.flush_live()
        return self.executor.poll(POLL_S)

    def _plan_next(self, ordinal: int) -> TrialSpec | None:
        s = self.ctx.settings
        view = PopulationView(records=self._all(), inflight=self._inflight, pool=self._parents,
                              by_generation=self._by_generation, warm=self.executor.warm())
        plan = self.evaluator.choose_next(ordinal, s.popsize, view)
        if plan is None:
            return None
        spec = self.evaluator.spec_for(self._candidates([plan])[0], plan)
        self._inflight[spec.trial_id] = spec
        self._inflight_dicts[spec.trial_id] = spec.to_dict()
        self._save_async_state(ordinal + 1)
        return spec

    def _save_async_state(self, planned: int) -> None:
        generation = max((x.round for x in self._inflight.values()), default=None)
        self._save_state({"schedule": ASYNC, "phase": PLANNED, "planned": planned,
                          "round": generation, "sampler": self.sampler.state_dict(),
                          "specs": list(self._inflight_dicts.values())})

    def _adopt_inflight(self, planned: int) -> None:
        """Trials in flight when the last driver stopped that finished anyway: recorded (if they were
        not yet) and told, never run again."""
        finished = self._all()
        pending = set(self.sampler.pending_ids)
        for tid, spec in list(self._inflight.items()):
            record = finished.get(tid)
            if record is None or record.status not in FINAL:
                left = finished_outcome(self.ctx.run_dir, spec, self.ctx.settings.artifacts)
                if left is None:
                    continue
                record = self._record(spec, left)
            del self._inflight[tid]
            self._inflight_dicts.pop(tid, None)
            if tid in pending:
                self.sampler.tell([self._observation(record)])
        if planned:
            self._save_async_state(planned)

    def _finish(self, outcome: TrialOutcome, planned: int, total: int) -> None:
        """One trial ended: record it, tell the sampler, save the state, keep the best and checkpoints."""
        s = self.ctx.settings
        self._check_disk(outcome)
        spec = self._inflight.pop(outcome.trial_id)
        self._inflight_dicts.pop(outcome.trial_id, None)
        record = self._record(spec, outcome)
        self.sampler.tell([self._observation(record)])
        if planned >= total:  # otherwise the next plan saves at once; a kill in between is the same state
            self._save_async_state(planned)  # on resume: the record is found and told again (see _adopt_inflight)
        done = planned - len(self._inflight)
        if done == min(s.popsize, total):  # the first popsize trials to end: settings errors surface here
            first = [r for r in self._all().values() if r.status in FINAL]
            self._check_metric_exists(first)
            self._check_some_trial_completed(first)
        best = self._board.best()
        self._write_best(best)
        self._prune_checkpoints()
        self.progress(TrialEnd(record=record, best=best, done=done, total=total, running=self.executor.active))

    def _record_stopped(self) -> None:
        """Ctrl-C: trials the executor stopped are recorded as stopped; resume runs them again."""
        for tid in self.executor.stop():
            spec = self._inflight.get(tid)
            if spec is not None:
                self._record(spec, TrialOutcome(trial_id=tid, status=STOPPED, kind=FailureKind.STOPPED,
                                                reason="stopped with the run (Ctrl-C, autotune stop)",
                                                ended=time.time()))

    def _check_disk(self, outcome: TrialOutcome) -> None:
        if outcome.kind == FailureKind.DISK_FULL:
            self.executor.stop()
            raise DiskFullError(
                f"no space left on device while trial {outcome.trial_id} saved its results "
                f"({outcome.reason}); finished trials are safe in the database: free some space, "
                f"then run: autotune resume {self.ctx.run_dir}"
            )

    # -- synchronous rounds ----------------------------------------------------------------------
    def _run_rounds(self, state: dict[str, Any] | None) -> None:
        s = self.ctx.settings
        start_round = 0
        specs: list[TrialSpec] | None = None
        if state is not None:
            if state.get("schedule") == ASYNC:
                raise ConfigError("this run was started asynchronously; it resumes so (schedule: async)")
            self.sampler.load_state_dict(state["sampler"])
            if state["phase"] == TOLD:
                start_round = state["round"] + 1
            else:
                start_round = state["round"]
                specs = [TrialSpec.from_dict(d) for d in state["specs"]]
        self.progress(RunStart(run_dir=str(self.ctx.run_dir), schedule=ROUNDS, rounds=s.rounds,
                               total=s.rounds * s.popsize, done=start_round * s.popsize, round=start_round))
        for rnd in range(start_round, s.rounds):
            if specs is None:
                if self._out_of_time():
                    break
                specs = self._plan(rnd)
            self._run_round(rnd, specs)
            specs = None

    def _candidates(self, plans: list[Plan]) -> list[Candidate]:
        """A candidate per plan: the sampler's proposal where the plan leaves the config to it (asked
        together, as a population), else the plan's config adopted under a new id."""
        need = sum(p.config is None for p in plans)
        asked = iter(self.sampler.ask(need) if need else [])
        return [next(asked) if p.config is None else self.sampler.adopt(p.config) for p in plans]

    def _plan(self, rnd: int) -> list[TrialSpec]:
        plans = self.evaluator.choose_round(rnd, self.ctx.settings.popsize, self.records())
        specs = [self.evaluator.spec_for(c, p, round=rnd) for c, p in zip(self._candidates(plans), plans)]
        self._save_state(
            {"phase": PLANNED, "round": rnd, "sampler": self.sampler.state_dict(), "specs": [x.to_dict() for x in specs]}
        )
        return specs

    def _run_round(self, rnd: int, specs: list[TrialSpec]) -> None:
        s = self.ctx.settings
        finished = {r.trial_id: r for r in self.records() if r.status in FINAL}
        by_id = {x.trial_id: x for x in specs}
        for spec in specs:  # trials that ended after the last driver stopped listening
            if spec.trial_id not in finished:
                left = finished_outcome(self.ctx.run_dir, spec, s.artifacts)
                if left is not None:
                    finished[spec.trial_id] = self._record(spec, left)
        todo = [x for x in specs if x.trial_id not in finished]
        self._inflight = {x.trial_id: x for x in todo}
        self.progress(RoundStart(round=rnd, rounds=s.rounds, trials=len(specs), todo=len(todo),
                                 slots=self.executor.slots, mode=s.mode))
        try:
            for spec in todo:
                self.executor.submit(spec)
            while self.executor.active:
                for event in self._events():  # not None: reports are shown as they come
                    if not isinstance(event, TrialFinished):
                        self._live(event)
                        continue
                    outcome = event.outcome
                    self._check_disk(outcome)
                    record = self._record(by_id[outcome.trial_id], outcome)
                    self._inflight.pop(record.trial_id, None)
                    finished[record.trial_id] = record
                    self.progress(TrialEnd(record=record, round=rnd, done=len(finished),
                                           total=s.rounds * s.popsize))
        except KeyboardInterrupt:
            self._record_stopped()
            raise
        if rnd == 0:
            self._check_metric_exists([finished[x.trial_id] for x in specs])
            self._check_some_trial_completed([finished[x.trial_id] for x in specs])
        observations = [self._observation(finished[x.trial_id]) for x in specs]
        self.sampler.tell(observations)
        self._save_state({"phase": TOLD, "round": rnd, "sampler": self.sampler.state_dict()})
        best = self._board.best()
        self._write_best(best)
        self._prune_checkpoints()
        self.progress(RoundEnd(round=rnd, rounds=s.rounds, best=best,
                               records=[finished[x.trial_id] for x in specs]))

    def _check_metric_exists(self, records: list[TrialRecord]) -> None:
        """A metric no trial of the first round reported is a setting error: stop rather than burn
        every round on trials that cannot be scored."""
        metric = self.ctx.settings.metric
        missing = [r for r in records if r.kind == FailureKind.METRIC_MISSING]
        if records and len(missing) == len(records):
            reported = sorted({k for r in records for rep in r.reports for k in rep.get("metrics", {})})
            raise ConfigError(
                f"no trial of the first round reported the metric {metric!r}; they reported: "
                f"{', '.join(reported) or 'nothing'} (choose one with --metric or `metric:` in the space file)"
            )

    def _check_some_trial_completed(self, records: list[TrialRecord]) -> None:
        """Every trial of the first round failing is almost always the trial itself (an import error, a
        typo, a missing file): stop with the first reason rather than burn every round on it."""
        if not records or any(r.status != FAILED for r in records):  # pruned trials ran fine
            return
        first = min(records, key=lambda r: r.trial_id)
        log = self.ctx.run_dir / first.trial_dir / LOG_FILE_NAME
        raise TrialError(
            f"all {len(records)} trials of the first round failed, so the search stopped; trial {first.trial_id}: "
            f"{first.reason or 'no reason recorded'} (its log: {log}; autotune show {self.ctx.run_dir})"
        )

    def _record(self, spec: TrialSpec, outcome: TrialOutcome) -> TrialRecord:
        live = self._live_reports.pop(spec.trial_id, [])
        if spec.trial_id in self._pruning:
            self._pruning.discard(spec.trial_id)
            if outcome.kind == FailureKind.STOPPED:  # ended by the executor after the grace period (or at once)
                outcome.end(PRUNED, FailureKind.PRUNED_BY_RULE,
                            f"stopped early by the run's early-stopping rule ({self._rule.name})")
                outcome.reports = outcome.reports or live
        record = TrialRecord.from_parts(spec, outcome)
        self.ctx.store.record_trial(self.ctx.run_id, record, self._distributions,
                                    self.ctx.space.to_optuna_params(record.config))
        self._all()[record.trial_id] = record
        self._rank(record)
        self._doom(record)
        return record

    def _doom(self, record: TrialRecord) -> None:
        for tid in self._files.add(record):
            self._parents.discard(tid)  # a parent pool holds only checkpoints that stay

    def _prune_checkpoints(self) -> None:
        self._files.prune(self._inflight.values())

    def _write_best(self, best: TrialRecord | None) -> None:
        self._files.write_best(best, self.ctx.settings.metric, self.ctx.settings.mode)
