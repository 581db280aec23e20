"""The search loop: rounds x population, with its executor injected.

Each round: the sampler proposes ``popsize`` candidates, the evaluator turns them into trial specs,
the executor runs them, each finished trial is written to the store in one transaction, and the
round's observations go back to the sampler.  Two small state writes make every interruption
resumable exactly: the round's plan (specs + the sampler state just after ``ask``) before any trial
starts, and the sampler state just after ``tell``.  On resume, finished trials are never run again,
unfinished ones are run with their original specs, and the sampler continues from its saved state.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from .artifacts import Artifacts
from .errors import ConfigError, DiskFullError, RunInterrupted, TrialError
from .evaluators import Evaluator
from .executors.base import Executor
from .liveness import DRIVER_ATTR, HEARTBEAT_ATTR, Heartbeat, this_driver
from .records import COMPLETED, FAILED, STOPPED, TrialOutcome, TrialRecord, TrialSpec
from .samplers import Observation, Sampler
from .settings import RunSettings
from .space import SearchSpace
from .store import Store
from .targets import TrialTarget
from .trial_runner import DISK_FULL, LOG_FILE_NAME, finished_outcome

STATE_KEY = "driver_state"
PLANNED, TOLD = "planned", "told"

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class RunContext:
    """One run's identity and persistent parts."""

    store: Store
    run_id: int
    run_dir: Path
    settings: RunSettings
    space: SearchSpace
    target: TrialTarget


def best_record(records: Sequence[TrialRecord], mode: str) -> TrialRecord | None:
    """The best completed trial; ties go to the earlier trial."""
    done = [r for r in records if r.status == COMPLETED and r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    sign = -1.0 if mode == "max" else 1.0
    return min(done, key=lambda r: (sign * float(r.value), r.trial_id))  # type: ignore[arg-type]


def loss_of(record: TrialRecord, mode: str) -> float | None:
    """What the sampler minimises: the metric, sign-flipped for ``max``; None for a failed trial."""
    if record.status != COMPLETED or record.value is None or not math.isfinite(record.value):
        return None
    return -float(record.value) if mode == "max" else float(record.value)


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
        self._best_written: int | None = None
        self._records: dict[int, TrialRecord] | None = None  # this driver's view of the store, see records()

    # -- state -----------------------------------------------------------------------------------
    def _save_state(self, state: dict[str, Any]) -> None:
        self.ctx.store.put_blob(self.ctx.run_id, STATE_KEY, state)

    def _load_state(self) -> dict[str, Any] | None:
        return self.ctx.store.get_blob(self.ctx.run_id, STATE_KEY)

    def records(self) -> list[TrialRecord]:
        """Every finished trial of the run, in id order.

        Read from the store once, then kept up to date as this driver writes: the driver is the run's
        only writer (``resume`` refuses a run whose driver lives), and reading every trial back from
        the database each round made a round cost O(trials so far).
        """
        if self._records is None:
            self._records = {r.trial_id: r for r in self.ctx.store.trials(self.ctx.run_id)}
        return [self._records[k] for k in sorted(self._records)]

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        """Run (or continue) the search to its last round; returns every trial record."""
        s = self.ctx.settings
        store, run_id = self.ctx.store, self.ctx.run_id
        store.set_attr(run_id, "status", "running")
        store.set_attr(run_id, DRIVER_ATTR, this_driver())
        heartbeat = Heartbeat(lambda now: store.set_attr(run_id, HEARTBEAT_ATTR, now)).__enter__()
        try:
            self.executor.open(self.ctx.run_dir, self.ctx.target, s.metric, s.artifacts)
        except BaseException:  # no Ray, impossible resources: nothing ran, the run can be resumed
            heartbeat.__exit__()
            store.set_attr(run_id, "status", "interrupted")
            raise
        try:
            state = self._load_state()
            start_round = 0
            specs: list[TrialSpec] | None = None
            if state is not None:
                if state["phase"] == TOLD:
                    self.sampler.load_state_dict(state["sampler"])
                    start_round = state["round"] + 1
                else:
                    self.sampler.load_state_dict(state["sampler"])
                    start_round = state["round"]
                    specs = [TrialSpec.from_dict(d) for d in state["specs"]]
            self.progress({"event": "run_start", "run_dir": str(self.ctx.run_dir), "round": start_round,
                           "rounds": s.rounds})
            for rnd in range(start_round, s.rounds):
                if specs is None:
                    specs = self._plan(rnd)
                self._run_round(rnd, specs)
                specs = None
            store.set_attr(run_id, "status", "completed")
            store.set_attr(run_id, "finished", time.time())
        except KeyboardInterrupt:
            store.set_attr(run_id, "status", "interrupted")
            raise RunInterrupted(
                f"run stopped; continue it with: autotune resume {self.ctx.run_dir}"
            ) from None
        except BaseException:
            try:  # best effort: the database itself may be what failed
                store.set_attr(run_id, "status", "failed")
            except Exception:  # noqa: BLE001
                pass
            raise
        finally:
            heartbeat.__exit__()
            self.executor.close()
        return self.records()

    def _plan(self, rnd: int) -> list[TrialSpec]:
        candidates = self.sampler.ask(self.ctx.settings.popsize)
        history = self.records()
        specs = self.evaluator.plan(rnd, candidates, history)
        self._save_state(
            {"phase": PLANNED, "round": rnd, "sampler": self.sampler.state_dict(), "specs": [x.to_dict() for x in specs]}
        )
        return specs

    def _run_round(self, rnd: int, specs: list[TrialSpec]) -> None:
        s = self.ctx.settings
        finished = {r.trial_id: r for r in self.records() if r.status in (COMPLETED, FAILED)}
        by_id = {x.trial_id: x for x in specs}
        for spec in specs:  # trials that ended after the last driver stopped listening
            if spec.trial_id not in finished:
                left = finished_outcome(self.ctx.run_dir, spec, s.artifacts)
                if left is not None:
                    finished[spec.trial_id] = self._record(spec, left)
        todo = [x for x in specs if x.trial_id not in finished]
        self.progress({"event": "round_start", "round": rnd, "rounds": s.rounds, "trials": len(specs),
                       "todo": len(todo), "slots": self.executor.slots, "mode": s.mode})
        try:
            for outcome in self.executor.run(todo):
                if outcome.status == STOPPED and (outcome.reason or "").startswith(DISK_FULL):
                    self.executor.stop()
                    raise DiskFullError(
                        f"no space left on device while trial {outcome.trial_id} saved its results "
                        f"({outcome.reason}); finished trials are safe in the database: free some space, "
                        f"then run: autotune resume {self.ctx.run_dir}"
                    )
                record = self._record(by_id[outcome.trial_id], outcome)
                finished[record.trial_id] = record
                self.progress({"event": "trial_end", "round": rnd, "record": record})
        except KeyboardInterrupt:
            for tid in self.executor.stop():
                spec = by_id[tid]
                outcome = TrialOutcome(trial_id=tid, status=STOPPED, reason="stopped by the user (Ctrl-C)",
                                       ended=time.time())
                self._record(spec, outcome)
            raise
        if rnd == 0:
            self._check_metric_exists([finished[x.trial_id] for x in specs])
            self._check_some_trial_completed([finished[x.trial_id] for x in specs])
        observations = [Observation(id=x.trial_id, loss=loss_of(finished[x.trial_id], s.mode)) for x in specs]
        self.sampler.tell(observations)
        self._save_state({"phase": TOLD, "round": rnd, "sampler": self.sampler.state_dict()})
        records = self.records()
        best = best_record(records, s.mode)
        self._write_best(best)
        self._prune_checkpoints(records)
        self.progress({"event": "round_end", "round": rnd, "rounds": s.rounds, "best": best,
                       "records": [finished[x.trial_id] for x in specs]})

    def _check_metric_exists(self, records: list[TrialRecord]) -> None:
        """A metric no trial of the first round reported is a setting error: stop rather than burn
        every round on trials that cannot be scored."""
        metric = self.ctx.settings.metric
        missing = [r for r in records if (r.reason or "").startswith(f"metric {metric!r} was never reported")]
        if records and len(missing) == len(records):
            reported = sorted({k for r in records for rep in r.reports for k in rep.get("metrics", {})})
            raise ConfigError(
                f"no trial of the first round reported the metric {metric!r}; they reported: "
                f"{', '.join(reported) or 'nothing'} (choose one with --metric or `metric:` in the space file)"
            )

    def _check_some_trial_completed(self, records: list[TrialRecord]) -> None:
        """Every trial of the first round failing is almost always the trial itself (an import error, a
        typo, a missing file): stop with the first reason rather than burn every round on it."""
        if not records or any(r.status == COMPLETED for r in records):
            return
        first = min(records, key=lambda r: r.trial_id)
        log = self.ctx.run_dir / first.trial_dir / LOG_FILE_NAME
        raise TrialError(
            f"all {len(records)} trials of the first round failed, so the search stopped; trial {first.trial_id}: "
            f"{first.reason or 'no reason recorded'} (its log: {log}; autotune show {self.ctx.run_dir})"
        )

    def _record(self, spec: TrialSpec, outcome: TrialOutcome) -> TrialRecord:
        record = TrialRecord.from_parts(spec, outcome)
        self.ctx.store.record_trial(self.ctx.run_id, record, self._distributions,
                                    self.ctx.space.to_optuna_params(record.config))
        if self._records is not None:
            self._records[record.trial_id] = record
        return record

    def _prune_checkpoints(self, records: Sequence[TrialRecord]) -> None:
        """``keep_checkpoints = K``: delete the checkpoints of finished trials outside the K best.

        Runs after each round, so the next round's parents (always among the best) survive.  The
        deletion is recorded in the store first; the records keep their checkpoint paths and hashes
        as lineage, flagged ``checkpoint_removed``.
        """
        keep = self.ctx.settings.keep_checkpoints
        if keep is None:
            return
        sign = -1.0 if self.ctx.settings.mode == "max" else 1.0
        scored = sorted((r for r in records if loss_of(r, self.ctx.settings.mode) is not None and r.checkpoint),
                        key=lambda r: (sign * float(r.value), r.trial_id))  # type: ignore[arg-type]
        kept = {r.trial_id for r in scored[:keep]}
        doomed = [r for r in records if r.checkpoint and r.status in (COMPLETED, FAILED)
                  and r.trial_id not in kept and not r.checkpoint_removed]
        if not doomed:
            return
        self.ctx.store.mark_checkpoints_removed(self.ctx.run_id, [r.trial_id for r in doomed])
        for r in doomed:
            r.checkpoint_removed = True
        if self.ctx.settings.artifacts:
            store = Artifacts(self.ctx.settings.artifacts)
            for r in doomed:
                store.delete(r.checkpoint)  # type: ignore[arg-type]
            return
        root = self.ctx.run_dir.resolve()
        for r in doomed:
            path = (root / r.checkpoint).resolve()  # type: ignore[operator]
            if path == root or root not in path.parents:
                continue  # never delete outside the run folder
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink(missing_ok=True)

    def _write_best(self, best: TrialRecord | None) -> None:
        """``best/``: the best config as YAML and a copy of its checkpoint, replaced atomically."""
        if best is None or best.trial_id == self._best_written:
            return
        run_dir = self.ctx.run_dir
        tmp = run_dir / ".best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        doc = {
            "trial_id": best.trial_id,
            "round": best.round,
            "metric": self.ctx.settings.metric,
            "mode": self.ctx.settings.mode,
            "value": best.value,
            "config": best.config,
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        if best.checkpoint and self.ctx.settings.artifacts:
            store = Artifacts(self.ctx.settings.artifacts)
            dest = tmp / "checkpoint"
            store.download(best.checkpoint, dest / Path(best.checkpoint).name if store.is_file(best.checkpoint) else dest)
        elif best.checkpoint:
            src = run_dir / best.checkpoint
            if src.is_dir():
                shutil.copytree(src, tmp / "checkpoint")
            elif src.is_file():
                (tmp / "checkpoint").mkdir()
                shutil.copy2(src, tmp / "checkpoint" / src.name)
        old = run_dir / ".best.old"
        shutil.rmtree(old, ignore_errors=True)
        if (run_dir / "best").exists():
            os.replace(run_dir / "best", old)
        os.replace(tmp, run_dir / "best")
        shutil.rmtree(old, ignore_errors=True)
        self._best_written = best.trial_id
