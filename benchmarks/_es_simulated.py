"""Early stopping, part ``simulated``: 64 slots on a simulated clock, replaying real learning curves.

    python benchmarks/_es_simulated.py --jobs 2 --out benchmarks/results   # the committed results (5 seeds)
    python benchmarks/_es_simulated.py --quick    # CI: 1 seed, 16 slots, a few methods, small budget
    python benchmarks/_es_simulated.py --replay snap   # proposals snapped to the 80 grid points, as before

The table ``benchmarks/data/image_curves.csv`` (recorded by ``benchmarks/record_curves.py``) holds
the bundled image trial's learning curves: 10 learning rates x 4 batch sizes x 2 weight decays, 3
seeds each, 10 epochs, with every epoch's accuracy and CPU seconds.  Both tools search the same space
and are charged the same compute:

* **What is replayed** (``--replay interpolate``, the default): a config between grid points replays,
  seed by seed and epoch by epoch, the accuracy and the CPU seconds interpolated linearly in (log
  learning rate, log batch size) between the 4 recorded configs around it (bilinear weights); its
  weight decay is one of the two recorded values (a choice: nothing between them is replayed).  At a
  grid point that is exactly the recorded curve.  Nothing is extrapolated, so the searched space is the
  recorded range: ``learning_rate`` log-uniform in [1e-5, 0.1], ``batch_size`` log-integer in [16, 128].
  Why: snapped to 80 grid points, 7 of which (8.8%) reach the target below, the first wave of 64 random
  trials almost always held one, so every method needed about one wave whatever it did, and a
  Population-Based perturbation (x0.8 or x1.25) mostly snapped back to the same point (a grid step is
  x2.78 in learning rate and x2 in batch size).  Interpolated, 2.4% of the space reaches the target (a
  first wave of 64 random configs holds such a config about 4 times in 5, against 997 in 1000 on the
  grid) and every perturbation moves the curve.  What it cannot model: the true curve between grid points (the
  divergence between learning rates 0.013 and 0.036 becomes a ramp instead of a cliff; no point is
  better than the grid's best, so the ceiling and the target are the grid's), and the seed noise there
  is a weighted mix of the corners' (median seed s.d. at epoch 10: 0.0128 at grid points, 0.0110 at
  cell centres).  ``--replay snap`` replays the nearest grid point on a log scale instead, in a space
  reaching half a grid step beyond the recorded extremes (so under uniform sampling every grid point is
  equally likely): the committed results before the explore and exploit rules used it.
* **Noise**: each new trial draws one of the 3 recorded seeds (autotune: from a hash of the run
  seed and the trial id; Syne Tune: its own per-trial draw), so repeating a config repeats its noise
  only a third of the time.
* **A warm-started (Population-Based) child** continues on *its own* config's replayed curve from
  its parent's epoch count, with its parent's seed: a child of a parent at epoch 4 reports the
  table's epochs 5, 6, ... of its own config, and is charged those epochs' seconds.  The weights it
  inherits count only through the epoch count: a child that switches to a worse config drops to that
  config's curve at once.  Under autotune's ``quantile`` exploit with the ``perturb`` or ``trust-gp``
  explore rule a member that continues its lineage keeps its parent's config exactly, so it continues
  the very same curve (as a trial that Syne Tune's PBT lets run on); only a replaced member's child
  (a perturbed copy of a top-quantile trial) switches curves.  With the ``sampler`` explore rule every
  child, continuing or not, is a new sampler proposal, and so is every child under ``round-robin``:
  those switch curves at every step.  For Syne Tune's blackbox backend a paused-and-resumed trial
  does the same; for its PBT, whose children are new trials started from another trial's checkpoint,
  the backend as released copies checkpoint folders that a simulation never writes, so here its
  ``copy_checkpoint`` is replaced by one that does the same (the child resumes at its parent's latest
  epoch with its parent's seed).  The table ends at epoch 10: a child whose parent already reached it
  trains from scratch, on both sides (nothing beyond the table can be replayed).  Syne Tune's PBT stops
  its trials at ``max_t`` = 10 and starts new random configs; autotune's pbt has no such limit, so its
  lineages (64 members x 2 epochs a step: all of them near epoch 10 after about 64 full-trial units)
  start their own configs again from scratch.  Past about 64 units a pbt run mostly replays what it
  already found: the compute to the target counts, not the best at 128.
* **Cost**: the replayed CPU seconds of every epoch that a trial trained (a trial stopped at a
  report paid for the epochs up to it), summed over all trials in the order of simulated time: the
  compute a search used, whatever the number of slots.  It is given in *full-trial units* (the mean
  cost of one 10-epoch trial of a grid config, 5.6 s on the recording CPU) and in hours of that CPU.
  Idle slots cost nothing, so a synchronous schedule (``rounds``) is charged no more than ``async``.
* **Clocks**: autotune's simulated executor jumps from event to event, so a stop lands at the report
  that caused it.  Syne Tune's simulator wakes its tuner every ``tuner_sleep_time`` simulated seconds;
  its clock runs ``SYNE_TIME_SCALE`` times slower than the table (an epoch of about a minute) and the
  tuner wakes every simulated second, so its stops land within 1/50 epoch of their report.  Neither
  clock charges the tools' own computing time (Syne Tune's simulator would by default, which makes its
  runs differ from one machine, or one run, to the next).
* **Metric**: ``best`` is the best ``val_accuracy`` any report has shown so far (what the tool sees);
  ``incumbent`` is the seed-mean accuracy of the (config, epoch) behind that report, which removes
  the luck of a good seed (the winner's curse of taking a maximum over many noisy reports).  *To
  target*: the compute until the incumbent was within ``TARGET_GAP`` of the best seed-mean accuracy of
  the table.  ``switches``: warm-started children on another config than their parent's.

Methods.  autotune (the driver, asynchronous schedule unless said, on :class:`SimulatedExecutor` with
this table): ``full`` (every trial 10 epochs) with ``early_stop`` none, asha (grace 1, reduction 3:
rungs at 1, 3 and 9 epochs) and median, each with the ``random`` and ``bayes`` (Optuna TPE) samplers;
``pbt`` (each trial 2 epochs from its parent's checkpoint, population 64, ``quantile_fraction`` 0.25)
with each explore rule under the ``quantile`` exploit (``perturb``, ``trust-gp``, ``sampler``; a random
first generation, as Syne Tune's PBT), the default a new run gets (``pshe2`` + perturb/quantile), the
rules before them (``sampler`` + ``round-robin``, with ``random`` and ``pshe2``, with and without asha),
and perturb and trust-gp under quantile in synchronous ``rounds`` (every member of a generation judged
at once, against all of its generation).  Syne Tune (``UserBlackboxBackend`` on the same table, the
simulator's clock, ``n_workers`` = 64): RandomSearch, TPE, ASHA (grace 1, reduction 3, max_t 10),
Hyperband (ASHA with 3 brackets: Syne Tune's asynchronous Hyperband), BOHB, MedianStoppingRule over
random search, and PBT (perturbation interval 2 epochs, population 64, its defaults otherwise:
quantile fraction 0.25, resample probability 0.25, x0.8 or x1.2 perturbations, the weight decay
resampled).  MOBSTER is not run: Syne Tune 0.15 and later do not have it, and the last releases that
do (0.14.x, under ``legacy_baselines``) require numpy < 1.27, which this project's numpy 2 and torch
rule out; BOHB is the model-based multi-fidelity method that Syne Tune still ships.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import logging
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402

import autotune  # noqa: E402
from autotune.events import TrialReported, TrialStarted  # noqa: E402
from autotune.executors.simulated import SimTrial, SimulatedExecutor, _Running  # noqa: E402
from autotune.records import ParentRef  # noqa: E402

TABLE = Path(__file__).resolve().parent / "data" / "image_curves.csv"
METRIC = "val_accuracy"
AXES = ("learning_rate", "batch_size", "weight_decay")
SLOTS = 64
PBT_EPOCHS = 2  # epochs per pbt trial (autotune's budget; Syne Tune's perturbation interval)
CHECKPOINTS = (4, 8, 16, 32, 64, 128)  # budgets in full-trial units
QUICK_CHECKPOINTS = (2, 4, 8, 16)
SEEDS = (0, 1, 2, 3, 4)
TARGET_GAP = 0.01  # "found a good config": its seed-mean accuracy within this of the table's best
# Syne Tune's simulator wakes its tuner every ``tuner_sleep_time`` simulated seconds (default 5) and acts on
# the reports that arrived meanwhile; the recorded epochs last about half a second, so its clock runs this
# many times slower (an epoch of about a minute, like a GPU epoch of a real fine-tune) and the tuner
# wakes every simulated second: its decisions land within 1/50 epoch of the report they answer.
SYNE_TIME_SCALE = 100.0
SYNE_SLEEP_S = 1.0


# -- the table ------------------------------------------------------------------------------------------
INTERPOLATE, SNAP = "interpolate", "snap"
REPLAYS = (INTERPOLATE, SNAP)
CONTINUOUS = ("learning_rate", "batch_size")  # interpolated (log scale); weight_decay is a choice of two


@dataclass
class Table:
    """Learning curves on a full grid: ``acc[c, s, e]`` and ``sec[c, s, e]`` for config ``c``, seed index
    ``s`` and epoch ``e + 1``; ``replay`` says how a config off the grid is replayed (:meth:`weights`)."""

    grid: dict[str, tuple[float, ...]]  # axis -> sorted recorded values
    seeds: tuple[int, ...]
    acc: np.ndarray
    sec: np.ndarray
    header: list[str] = field(default_factory=list)
    replay: str = INTERPOLATE
    _cache: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def epochs(self) -> int:
        return int(self.acc.shape[2])

    @property
    def configs(self) -> list[dict[str, float]]:
        """Config ``c`` as a dict; index order = itertools.product of the axes."""
        out = [{}]
        for axis in AXES:
            out = [{**c, axis: v} for c in out for v in self.grid[axis]]
        return out

    def index(self, point: Sequence[int]) -> int:
        i = 0
        for axis, k in zip(AXES, point):
            i = i * len(self.grid[axis]) + k
        return i

    def _nearest(self, axis: str, value: float) -> int:
        x = math.log(max(float(value), 1e-300))
        logs = [math.log(v) for v in self.grid[axis]]
        return min(range(len(logs)), key=lambda k: (abs(logs[k] - x), k))

    def snap(self, config: dict[str, Any]) -> int:
        """The grid point nearest to ``config`` on a log scale (every axis is log-spaced)."""
        return self.index([self._nearest(axis, config[axis]) for axis in AXES])

    def _bracket(self, axis: str, value: float) -> tuple[tuple[int, float], ...]:
        """The grid values on either side of ``value`` with their weights, linear in the log (clamped to
        the recorded range: nothing is extrapolated)."""
        logs = [math.log(v) for v in self.grid[axis]]
        x = min(max(math.log(max(float(value), 1e-300)), logs[0]), logs[-1])
        k = next((i for i in range(len(logs) - 1) if x <= logs[i + 1]), len(logs) - 1)
        if k == len(logs) - 1 or x <= logs[k]:
            return ((k, 1.0),)
        t = (x - logs[k]) / (logs[k + 1] - logs[k])
        return ((k, 1.0 - t), (k + 1, t)) if t < 1.0 else ((k + 1, 1.0),)

    def weights(self, config: dict[str, Any]) -> tuple[tuple[int, float], ...]:
        """The grid configs ``config`` replays and their weights (they sum to 1).  ``snap``: the nearest
        grid point.  ``interpolate``: the up to 4 corners of its cell in (log learning rate, log batch
        size), bilinear weights, and the nearest recorded weight decay."""
        if self.replay == SNAP:
            return ((self.snap(config), 1.0),)
        out = [((), 1.0)]
        for axis in AXES:
            parts = (self._bracket(axis, config[axis]) if axis in CONTINUOUS
                     else ((self._nearest(axis, config[axis]), 1.0),))
            out = [((*pt, k), w * v) for pt, w in out for k, v in parts]
        return tuple((self.index(pt), w) for pt, w in out)

    def key(self, config: dict[str, Any]) -> tuple[float, ...]:
        """The point replayed for ``config``: its grid point (``snap``), or its values clamped to the recorded
        range with the nearest weight decay (``interpolate``)."""
        if self.replay == SNAP:
            return tuple(self.configs[self.snap(config)][a] for a in AXES)
        out = []
        for axis in AXES:
            v = self.grid[axis]
            x = float(config[axis])
            out.append(min(max(x, v[0]), v[-1]) if axis in CONTINUOUS else v[self._nearest(axis, x)])
        return tuple(out)

    def curves(self, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """``(acc[s, e], sec[s, e])`` of ``config`` for every recorded seed and epoch (cached)."""
        k = self.key(config)
        got = self._cache.get(k)
        if got is None:
            w = self.weights(dict(zip(AXES, k)))
            acc = sum(x * self.acc[c] for c, x in w)
            sec = sum(x * self.sec[c] for c, x in w)
            got = self._cache[k] = (np.asarray(acc, dtype=float), np.asarray(sec, dtype=float))
        return got

    def mean_curve(self, config: dict[str, Any]) -> np.ndarray:
        """Seed-mean accuracy of ``config``, ``[epoch]``."""
        return self.curves(config)[0].mean(axis=0)

    @property
    def mean_acc(self) -> np.ndarray:
        """Seed-mean accuracy of the grid, ``[config, epoch]``.  Interpolation is a weighted mean of grid
        points, so no point between them is better than the grid's best: the ceiling is the grid's."""
        return self.acc.mean(axis=1)

    @property
    def full_cost(self) -> float:
        """The mean cost (seconds) of one grid config's trial of all epochs from scratch: the budget unit."""
        return float(self.sec.sum(axis=2).mean())

    @classmethod
    def load(cls, path: Path | None = None, replay: str = INTERPOLATE) -> "Table":
        if replay not in REPLAYS:
            raise ValueError(f"replay must be one of {REPLAYS}, not {replay!r}")
        path = Path(path or TABLE)
        header, rows = [], []
        with path.open() as f:
            lines = []
            for line in f:
                (header if line.startswith("#") else lines).append(line.rstrip("\n"))
            rows = list(csv.DictReader(lines))
        grid = {a: tuple(sorted({float(r[a]) for r in rows})) for a in AXES}
        seeds = tuple(sorted({int(r["seed"]) for r in rows}))
        epochs = max(int(r["epoch"]) for r in rows)
        n = math.prod(len(v) for v in grid.values())
        acc = np.full((n, len(seeds), epochs), np.nan)
        sec = np.full((n, len(seeds), epochs), np.nan)
        pos = {a: {v: k for k, v in enumerate(grid[a])} for a in AXES}
        table = cls(grid, seeds, acc, sec, header, replay)
        for r in rows:
            c = table.index([pos[a][float(r[a])] for a in AXES])
            s, e = seeds.index(int(r["seed"])), int(r["epoch"]) - 1
            acc[c, s, e] = float(r["val_accuracy"])
            sec[c, s, e] = float(r["seconds"])
        if np.isnan(acc).any() or np.isnan(sec).any():
            raise ValueError(f"{path}: the grid x seeds x epochs is not complete")
        return table

    def half_step(self, axis: str) -> float:
        """Half a grid step on a log scale, as a factor."""
        v = self.grid[axis]
        return math.sqrt(v[1] / v[0]) if len(v) > 1 else 1.0


def autotune_space(table: Table) -> dict[str, Any]:
    """The searched space.  ``interpolate``: the recorded ranges exactly.  ``snap``: half a grid step beyond
    the recorded extremes, so that under uniform sampling every grid point is equally likely."""
    lr, bs = table.grid["learning_rate"], table.grid["batch_size"]
    if table.replay == SNAP:
        lr_lo, lr_hi = lr[0] / table.half_step("learning_rate"), lr[-1] * table.half_step("learning_rate")
        bs_lo, bs_hi = (math.floor(bs[0] / table.half_step("batch_size")),
                        math.ceil(bs[-1] * table.half_step("batch_size")))
    else:
        lr_lo, lr_hi, bs_lo, bs_hi = lr[0], lr[-1], int(bs[0]), int(bs[-1])
    return {"metric": METRIC, "mode": "max", "params": {
        "learning_rate": {"type": "float", "low": lr_lo, "high": lr_hi, "log": True},
        "batch_size": {"type": "int", "low": bs_lo, "high": bs_hi, "log": True},
        "weight_decay": {"type": "categorical", "choices": list(table.grid["weight_decay"])},
    }}


def table_seed(run_seed: int, trial_id: int, n: int) -> int:
    """The recorded seed (an index) a new autotune trial replays: fixed by the run seed and trial id."""
    return int(hashlib.sha256(f"{run_seed}:{trial_id}".encode()).hexdigest()[:8], 16) % n


# -- autotune: a trial model and an executor on the table -----------------------------------------------
@dataclass(frozen=True)
class Segment:
    """What one trial trains: the point it replays (:meth:`Table.key`), its seed index, the table epochs it
    reports, their accuracies, seed-mean accuracies and seconds."""

    config: tuple[float, ...]
    seed: int
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    means: tuple[float, ...]
    seconds: tuple[float, ...]


class TableModel:
    """A trial model backed by the table.  ``segment`` is the whole story; ``__call__`` is the
    :data:`~autotune.executors.simulated.TrialModel` protocol (seed index 0, the parent's step taken as
    its table epoch) for use on a plain :class:`SimulatedExecutor`."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def segment(self, config: dict[str, Any], budget: float | None, start_epoch: int, seed: int) -> Segment:
        """Train ``budget`` epochs (all when None) of ``config``'s replayed curve after ``start_epoch``:
        a warm-started child continues its own config's curve from its parent's epoch.  The table ends at
        its last epoch: a trial is cut there, and one that would start at or after it starts from scratch."""
        t = self.table
        acc, sec = t.curves(config)
        mean = acc.mean(axis=0)
        n = t.epochs if budget is None else max(1, int(round(float(budget))))
        start = start_epoch if 0 <= start_epoch < t.epochs else 0
        epochs = tuple(range(start + 1, min(start + n, t.epochs) + 1))
        return Segment(t.key(config), seed, epochs, tuple(float(acc[seed, e - 1]) for e in epochs),
                       tuple(float(mean[e - 1]) for e in epochs), tuple(float(sec[seed, e - 1]) for e in epochs))

    def __call__(self, config: dict[str, Any], budget: float | None, parent: ParentRef | None) -> SimTrial:
        seg = self.segment(config, budget, (parent.step or 0) if parent else 0, 0)
        return SimTrial(curve=seg.values, duration=sum(seg.seconds))


class Log(list):
    """The reports of one run, in the order they arrived; ``children``: the trials that warm-started from
    another trial's checkpoint, ``changed``: those of them whose config differs from their parent's."""

    children: int = 0
    changed: int = 0


class BudgetSpent(Exception):
    """Raised from ``poll`` once the search has used its compute budget: the run ends there."""


@dataclass
class Report:
    """One report, as either tool saw it: when (simulated seconds), which trial, the point it replays
    (:meth:`Table.key`), the seed index and epoch, the value reported, the seed-mean accuracy of that
    point and epoch, and what the epoch cost."""

    at: float
    trial: int
    config: tuple[float, ...]
    seed: int
    epoch: int
    value: float
    mean: float
    seconds: float


class TableExecutor(SimulatedExecutor):
    """The simulated executor on the table: each trial replays a recorded curve (its seed index drawn
    per trial, a child inheriting its parent's), reports land at the recorded epoch boundaries, every
    report is logged with its cost, and ``poll`` raises :class:`BudgetSpent` once ``budget_s`` is used."""

    def __init__(self, table: Table, slots: int, run_seed: int, budget_s: float | None = None) -> None:
        self.table_model = TableModel(table)
        super().__init__(self.table_model, slots=slots)
        self.run_seed, self.budget_s = run_seed, budget_s
        self.seed_of: dict[int, int] = {}  # trial -> seed index
        self.epoch_at: dict[tuple[int, int], int] = {}  # (trial, report step) -> table epoch
        self.segments: dict[int, tuple[int, Segment]] = {}  # trial -> (first report step - 1, segment)
        self.specs: dict[int, Any] = {}  # trial -> its TrialSpec (config, parent, member)
        self.log: Log = Log()
        self.cost = 0.0

    def _segment_for(self, spec: Any) -> tuple[Segment, int]:
        """What the trial replays, and the report step it starts after (its parent's)."""
        parent = spec.parent
        n = len(self.table_model.table.seeds)
        if parent is not None and parent.trial_id in self.seed_of:
            seed = self.seed_of[parent.trial_id]
            start = self.epoch_at.get((parent.trial_id, parent.step or 0), 0)
        else:
            seed, start = table_seed(self.run_seed, spec.trial_id, n), 0
        self.seed_of[spec.trial_id] = seed
        self.specs[spec.trial_id] = spec
        start_step = (parent.step or 0) if parent else 0
        return self.table_model.segment(dict(spec.config), spec.budget, start, seed), start_step

    def _start_queued(self) -> None:
        while self._queue and self._free:
            spec = self._queue.popleft()
            worker = self._free.pop(0)  # nothing continues in place here (keep_states 0)
            seg, start_step = self._segment_for(spec)
            sim = SimTrial(curve=seg.values, duration=sum(seg.seconds))
            now = self.clock.now
            self.first_start = now if self.first_start is None else self.first_start
            self._running[spec.trial_id] = _Running(spec, now, sim, worker=worker)
            self.segments[spec.trial_id] = (start_step, seg)
            self.started.append(spec.trial_id)
            self.workers[spec.trial_id] = worker
            self._pending.append(TrialStarted(spec.trial_id, now, node="simulated"))
            at = now
            for i, (value, secs) in enumerate(zip(seg.values, seg.seconds)):
                at += secs
                self._push(at, "report", spec.trial_id, start_step + i + 1, value)
            self._push(at, "end", spec.trial_id)  # the last report's moment exactly: it is popped first

    def poll(self, timeout: float | None = None) -> list[Any]:
        events = super().poll(timeout)
        for ev in events:
            if isinstance(ev, TrialReported):
                start_step, seg = self.segments[ev.trial_id]
                i = ev.step - start_step - 1
                epoch = seg.epochs[i]
                self.epoch_at[(ev.trial_id, ev.step)] = epoch
                self.cost += seg.seconds[i]
                self.log.append(Report(ev.at, ev.trial_id, seg.config, seg.seed, epoch, seg.values[i], seg.means[i],
                                       seg.seconds[i]))
        if self.budget_s is not None and self.cost >= self.budget_s:
            raise BudgetSpent()
        return events


@dataclass(frozen=True)
class Method:
    tool: str
    name: str  # evaluator+rule (autotune) or scheduler (Syne Tune)
    sampler: str = ""
    rules: str = ""  # autotune's pbt: "EXPLORE/EXPLOIT" (pbt_explore, pbt_exploit)
    schedule: str = "async"  # autotune: async (every result judged when it lands) or rounds (synchronous)

    @property
    def label(self) -> str:
        inner = "; ".join(x for x in (self.sampler, self.rules, "" if self.schedule == "async" else self.schedule)
                          if x)
        return f"{self.name} ({inner})" if inner else self.name


OLD_RULES = "sampler/round-robin"  # autotune's pbt before its explore and exploit rules (recorded runs keep them)
AUTOTUNE = [Method("autotune", f"{ev}+{rule}", s) for ev in ("full",) for rule in ("none", "asha", "median")
            for s in ("random", "bayes")]
# pbt, population 64, 2 epochs a trial: each explore rule under the quantile exploit (a random first
# generation, as Syne Tune's PBT), the default run's (pshe2 + perturb/quantile), the old rules, and two rules in
# synchronous rounds (every member of a generation judged at once; idle slots cost no compute here)
AUTOTUNE += [Method("autotune", "pbt+none", "random", f"{explore}/quantile")
             for explore in ("perturb", "trust-gp", "sampler")]
AUTOTUNE += [Method("autotune", "pbt+none", "pshe2", f"{explore}/quantile") for explore in ("perturb", "sampler")]
AUTOTUNE += [Method("autotune", f"pbt+{rule}", s, OLD_RULES) for s in ("random", "pshe2") for rule in ("none", "asha")]
AUTOTUNE += [Method("autotune", "pbt+none", "random", f"{explore}/quantile", "rounds")
             for explore in ("perturb", "trust-gp")]
SYNE = [Method("syne-tune", m) for m in ("RandomSearch", "TPE", "ASHA", "Hyperband", "BOHB", "MedianStoppingRule",
                                         "PBT")]
QUICK = [Method("autotune", "full+none", "random"), Method("autotune", "full+asha", "random"),
         Method("autotune", "pbt+none", "random", "perturb/quantile"),
         Method("syne-tune", "RandomSearch"), Method("syne-tune", "ASHA"), Method("syne-tune", "PBT")]


def run_autotune(method: Method, table: Table, seed: int, slots: int, budget_s: float, work: Path,
                 executor: TableExecutor | None = None) -> list[Report]:
    evaluator, rule = method.name.split("+")
    ex = executor or TableExecutor(table, slots, seed, budget_s)
    budget = PBT_EPOCHS if evaluator == "pbt" else table.epochs
    explore, exploit = method.rules.split("/") if method.rules else (None, None)
    try:
        autotune.run(lambda config, trial: None, space=autotune_space(table), sampler=method.sampler,
                     evaluator=evaluator, rounds=10_000, popsize=slots, seed=seed, output=work,
                     name=f"{method.name}-{method.sampler}-{explore}-{exploit}-{method.schedule}-{seed}",
                     executor=ex, schedule=method.schedule, early_stop=rule, budget=budget, pbt_explore=explore,
                     pbt_exploit=exploit)
    except BudgetSpent:
        pass
    kids = [s for s in ex.specs.values() if s.parent is not None and s.parent.trial_id in ex.specs]
    ex.log.children = len(kids)
    ex.log.changed = sum(table.key(s.config) != table.key(ex.specs[s.parent.trial_id].config) for s in kids)
    return ex.log


# -- Syne Tune: the same table as a blackbox on its simulator backend ----------------------------------
def syne_tune_version() -> str | None:
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return version("syne-tune")
    except Exception:  # noqa: BLE001
        return None


def _syne_blackbox(table: Table) -> Any:
    import pandas as pd  # noqa: PLC0415
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular  # noqa: PLC0415
    from syne_tune.config_space import choice, randint  # noqa: PLC0415

    class GridBlackbox(BlackboxTabular):
        """The table as a tabular blackbox whose lookups replay a config as autotune's executor does
        (:meth:`Table.curves`: interpolated, or snapped to the nearest grid point)."""

        def _objective_function(self, configuration: Any, fidelity: Any = None, seed: Any = None) -> Any:
            if seed is None:
                seed = np.random.randint(0, self.num_seeds)
            if isinstance(configuration, (int, np.integer)):
                values = self.objectives_evaluations[configuration, seed]
            else:
                acc, sec = table.curves(configuration)
                values = np.stack([acc[seed], np.cumsum(sec[seed]) * SYNE_TIME_SCALE], axis=-1)
            if fidelity is None:
                return values
            return dict(zip(self.objectives_names, values[self.fidelity_map[list(fidelity.values())[0]]]))

    configs = table.configs
    elapsed = np.cumsum(table.sec, axis=2) * SYNE_TIME_SCALE  # cumulative, on the simulator's slower clock
    evaluations = np.stack([table.acc, elapsed], axis=-1)
    return GridBlackbox(
        hyperparameters=pd.DataFrame(configs),
        configuration_space={a: choice(list(table.grid[a])) for a in AXES},
        fidelity_space={"epoch": randint(1, table.epochs)},
        objectives_evaluations=evaluations,
        fidelity_values=np.arange(1, table.epochs + 1),
        objectives_names=[METRIC, "elapsed_time"],
    )


def syne_space(table: Table) -> dict[str, Any]:
    from syne_tune.config_space import choice, loguniform, lograndint  # noqa: PLC0415

    space = autotune_space(table)["params"]
    lr, bs = space["learning_rate"], space["batch_size"]
    return {"learning_rate": loguniform(lr["low"], lr["high"]), "batch_size": lograndint(bs["low"], bs["high"]),
            "weight_decay": choice(list(table.grid["weight_decay"]))}


def syne_scheduler(name: str, table: Table, seed: int, slots: int) -> Any:
    from syne_tune.optimizer import baselines as b  # noqa: PLC0415
    from syne_tune.optimizer.schedulers.median_stopping_rule import MedianStoppingRule  # noqa: PLC0415
    from syne_tune.optimizer.schedulers.pbt import PopulationBasedTraining  # noqa: PLC0415

    cs = syne_space(table)
    mf = dict(config_space=cs, metric=METRIC, time_attr="epoch", max_t=table.epochs, do_minimize=False,
              random_seed=seed)
    if name == "RandomSearch":
        return b.RandomSearch(cs, metrics=[METRIC], do_minimize=False, random_seed=seed)
    if name == "TPE":
        return b.TPE(cs, metric=METRIC, do_minimize=False, random_seed=seed)
    if name == "ASHA":
        return b.ASHA(**mf, grace_period=1, reduction_factor=3)
    if name == "Hyperband":
        return b.ASHA(**mf, grace_period=1, reduction_factor=3, brackets=3)
    if name == "BOHB":
        return b.BOHB(**mf, grace_period=1, reduction_factor=3)
    if name == "MedianStoppingRule":
        return MedianStoppingRule(b.RandomSearch(cs, metrics=[METRIC], do_minimize=False, random_seed=seed),
                                  time_attr="epoch", metric=METRIC, grace_time=1, grace_population=3,
                                  random_seed=seed, do_minimize=False)
    if name == "PBT":
        return PopulationBasedTraining(**mf, population_size=slots, perturbation_interval=PBT_EPOCHS)
    raise ValueError(f"unknown Syne Tune method {name!r}")


def run_syne(method: Method, table: Table, seed: int, slots: int, budget_s: float, work: Path) -> list[Report]:
    from syne_tune import Tuner  # noqa: PLC0415
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback  # noqa: PLC0415
    from syne_tune.backend.trial_status import TrialResult  # noqa: PLC0415
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend  # noqa: PLC0415
    from syne_tune.constants import ST_TUNER_TIME  # noqa: PLC0415
    from syne_tune.tuner_callback import TunerCallback  # noqa: PLC0415

    class Backend(UserBlackboxBackend):
        def copy_checkpoint(self, src_trial_id: int, tgt_trial_id: int) -> None:
            """A PBT child resumes where its parent is now (its latest reported epoch), with its seed."""
            parent = self._trial_dict.get(src_trial_id)
            parent_of[tgt_trial_id] = src_trial_id
            metrics = parent.metrics if isinstance(parent, TrialResult) else []
            if metrics and int(metrics[-1]["epoch"]) < table.epochs:  # at the table's end: from scratch, as autotune
                self._resource_paused_for_trial[tgt_trial_id] = int(metrics[-1]["epoch"])
            if src_trial_id in self._seed_for_trial:
                self._seed_for_trial[tgt_trial_id] = self._seed_for_trial[src_trial_id]

        def delete_checkpoint(self, trial_id: int) -> None:
            pass

        def _advance_by_outside_time(self) -> None:
            """The simulator also charges the tuner's own real compute time to its clock; here, as on
            autotune's simulated executor, only trials take time, so that a run repeats exactly."""

    log = Log()
    spent = [0.0]
    parent_of: dict[int, int] = {}  # a PBT clone -> the trial it copied
    config_of: dict[int, tuple[float, ...]] = {}

    class Tally(TunerCallback):
        def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
            seed = backend._seed_for_trial.get(trial.trial_id, 0)
            config = {a: trial.config[a] for a in AXES}
            acc, sec = table.curves(config)
            epoch = int(result["epoch"])
            secs = float(sec[seed, epoch - 1])
            spent[0] += secs
            config_of[trial.trial_id] = table.key(config)
            log.append(Report(float(result[ST_TUNER_TIME]) / SYNE_TIME_SCALE, trial.trial_id, table.key(config),
                              seed, epoch, float(result[METRIC]), float(acc[:, epoch - 1].mean()), secs))

    logging.getLogger("syne_tune").setLevel(logging.ERROR)  # e.g. that our stop criterion is a plain function
    np.random.seed(seed)  # the backend's per-trial seeds and ASHA's bracket draws use numpy's global state
    with warnings.catch_warnings():  # pandas 3 deprecations inside Syne Tune's tabular blackbox
        warnings.simplefilter("ignore")
        blackbox = _syne_blackbox(table)
    backend = Backend(blackbox=blackbox, elapsed_time_attr="elapsed_time", tuner_sleep_time=SYNE_SLEEP_S)
    scheduler = syne_scheduler(method.name, table, seed, slots)
    tuner = Tuner(trial_backend=backend, scheduler=scheduler, stop_criterion=lambda status: spent[0] >= budget_s,
                  n_workers=slots, sleep_time=0, results_update_interval=1e9, print_update_interval=1e9,
                  callbacks=[SimulatorCallback(), Tally()], tuner_name=f"st-{method.name}-{seed}".lower(),
                  save_tuner=False, suffix_tuner_name=False, trial_backend_path=str(work / "backend"))
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        tuner.run()
    kids = [t for t in parent_of if t in config_of and parent_of[t] in config_of]  # PBT's clones
    log.children = len(kids)
    log.changed = sum(config_of[t] != config_of[parent_of[t]] for t in kids)
    return log


# -- the trajectory and the report ----------------------------------------------------------------------
def trajectory(log: list[Report], table: Table, checkpoints: Sequence[float]) -> list[dict[str, Any]]:
    """Best value so far and its incumbent's seed-mean accuracy at each budget (in full-trial units)."""
    unit = table.full_cost
    rows, cost, best, inc = [], 0.0, -math.inf, math.nan
    trials: set[int] = set()
    epochs = 0
    k = 0
    ordered = sorted(log, key=lambda r: r.at)
    for r in ordered:
        while k < len(checkpoints) and cost + r.seconds > checkpoints[k] * unit + 1e-9:
            rows.append(_point(checkpoints[k], unit, best, inc, len(trials), epochs))
            k += 1
        cost += r.seconds
        trials.add(r.trial)
        epochs += 1
        if r.value > best:
            best, inc = r.value, r.mean
    while k < len(checkpoints):  # the log ended first (cannot happen with a budget at the last checkpoint)
        rows.append(_point(checkpoints[k], unit, best, inc, len(trials), epochs))
        k += 1
    return rows


def target(table: Table) -> float:
    """Within ``TARGET_GAP`` of the best seed-mean accuracy any config reaches at any epoch."""
    return float(table.mean_acc.max()) - TARGET_GAP


def time_to_target(log: list[Report], table: Table) -> float:
    """The compute (full-trial units) spent when the incumbent first reached :func:`target`; inf if never."""
    goal = target(table)
    cost, best = 0.0, -math.inf
    for r in sorted(log, key=lambda r: r.at):
        cost += r.seconds
        if r.value > best:
            best = r.value
            if r.mean >= goal:
                return cost / table.full_cost
    return math.inf


def _point(budget: float, unit: float, best: float, inc: float, trials: int, epochs: int) -> dict[str, Any]:
    return {"budget_full_trials": budget, "cost_s": budget * unit, "cost_h": budget * unit / 3600,
            "best": best if math.isfinite(best) else None, "incumbent": inc if math.isfinite(inc) else None,
            "trials": trials, "epochs": epochs}


def one_run(method: Method, seed: int, slots: int, checkpoints: Sequence[float], table_path: str,
            tmp: str, replay: str = INTERPOLATE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One method and seed: its trajectory rows and a summary row (also run in a worker process)."""
    table = Table.load(Path(table_path), replay)
    work = Path(tmp) / f"{method.tool}-{method.name}-{method.sampler}-{method.rules.replace('/', '-')}-{seed}"
    t0 = time.perf_counter()
    go = run_autotune if method.tool == "autotune" else run_syne
    log = go(method, table, seed, slots, checkpoints[-1] * table.full_cost, work)
    wall = time.perf_counter() - t0
    traj = trajectory(log, table, checkpoints)
    key = {"tool": method.tool, "method": method.name, "sampler": method.sampler, "rules": method.rules,
           "schedule": method.schedule if method.tool == "autotune" else "", "seed": seed, "slots": slots,
           "replay": replay}
    rows = [{**key, **p} for p in traj]
    to_target = time_to_target(log, table)
    costs = np.cumsum([r.seconds for r in sorted(log, key=lambda r: r.at)])
    upto = [r for r, c in zip(sorted(log, key=lambda r: r.at), costs) if c <= checkpoints[-1] * table.full_cost + 1e-9]
    summary = {**key, "trials": traj[-1]["trials"], "epochs": traj[-1]["epochs"],
               "points": len({r.config for r in upto}), "children": log.children, "changed": log.changed,
               "best": traj[-1]["best"],
               "incumbent": traj[-1]["incumbent"],
               "to_target": to_target if to_target <= checkpoints[-1] else None, "wall_s": wall}
    return rows, summary


def run(quick: bool, out: Path, seeds: list[int] | None = None, methods: Sequence[Method] | None = None,
        jobs: int = 1, replay: str = INTERPOLATE) -> str:
    """Replay the table with every method and seed (``jobs`` at a time, in worker processes when more than
    one); write CSVs into ``out``; return the summary table."""
    table = Table.load(None, replay)
    slots = 16 if quick else SLOTS
    checkpoints = QUICK_CHECKPOINTS if quick else CHECKPOINTS
    seeds = list(seeds if seeds is not None else ((0,) if quick else SEEDS))
    methods = list(methods if methods is not None else (QUICK if quick else AUTOTUNE + SYNE))
    st_version = syne_tune_version()
    notes: list[str] = []
    if st_version is None and any(m.tool == "syne-tune" for m in methods):
        notes.append("Syne Tune is not installed (pip install 'syne-tune>=0.16,<1'): its methods were skipped")
        methods = [m for m in methods if m.tool != "syne-tune"]
    tasks = [(m, seed) for m in methods for seed in seeds]
    done: dict[tuple[Method, int], tuple[list[dict[str, Any]], dict[str, Any]]] = {}

    def record(task: tuple[Method, int], result: tuple[list[dict[str, Any]], dict[str, Any]]) -> None:
        done[task] = result
        r = result[1]
        print(f"  {r['tool']} {task[0].label} seed {r['seed']}: best {r['best']:.4f}, {r['trials']} trials, "
              f"{r['wall_s']:.1f} s", file=sys.stderr, flush=True)
        _bench.write_csv(out / "early_stopping_simulated.csv",  # as it goes
                         [row for t in tasks if t in done for row in done[t][0]])

    # the run folders' SQLite databases commit at every report: in memory (tmpfs) where there is one
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="autotune-es-sim-", dir=shm if shm.is_dir() else None) as tmp:
        args = (slots, checkpoints, str(TABLE), tmp, replay)
        if jobs <= 1:
            for task in tasks:
                record(task, one_run(*task, *args))
        else:
            import concurrent.futures as cf  # noqa: PLC0415
            import multiprocessing as mp  # noqa: PLC0415

            with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = {pool.submit(one_run, *task, *args): task for task in tasks}
                for f in cf.as_completed(futures):
                    record(futures[f], f.result())
    rows = [row for t in tasks for row in done[t][0]]
    runs = [done[t][1] for t in tasks]
    _bench.write_csv(out / "early_stopping_simulated.csv", rows)
    _bench.write_csv(out / "early_stopping_sim_runs.csv", runs)
    summary = summarise(rows, runs, checkpoints)
    _bench.write_csv(out / "early_stopping_sim_summary.csv", summary)
    _bench.write_machine(out / "early_stopping_sim_machine.csv", {
        "part": "simulated", "replay": replay, "syne_tune": st_version or "not installed", "slots": slots,
        "seeds": " ".join(map(str, seeds)),
        "jobs": jobs, "full_trial_s": f"{table.full_cost:.3f}",
        "table": "; ".join(h.lstrip("# ") for h in table.header)})
    return report(summary, table, checkpoints, slots, len(seeds), notes)


def summarise(rows: list[dict[str, Any]], runs: list[dict[str, Any]],
              checkpoints: Sequence[float]) -> list[dict[str, Any]]:
    out = []
    names = ("tool", "method", "sampler", "rules", "schedule")
    ident = lambda r: tuple(r.get(k, "") for k in names)  # noqa: E731
    for key in dict.fromkeys(ident(r) for r in runs):
        sel = [r for r in rows if ident(r) == key]
        rs = [r for r in runs if ident(r) == key]
        row: dict[str, Any] = dict(zip(names, key))
        row["seeds"] = len(rs)
        for b in checkpoints:
            at = [r for r in sel if r["budget_full_trials"] == b]
            row[f"best@{b}"] = _median([r["best"] for r in at])
            row[f"incumbent@{b}"] = _median([r["incumbent"] for r in at])
        reached = [r["to_target"] for r in rs if r["to_target"] is not None]
        row["reached_target"] = len(reached)
        # a run that never reached it counts as beyond the budget: the median is known only if half did
        row["to_target"] = (sorted(reached + [math.inf] * (len(rs) - len(reached)))[(len(rs) - 1) // 2]
                            if rs else None)
        if row["to_target"] == math.inf:
            row["to_target"] = None
        each = sorted(r["to_target"] if r["to_target"] is not None else math.inf for r in rs)
        row["to_target_each"] = " ".join("-" if math.isinf(x) else f"{x:.1f}" for x in each)  # the spread
        row["trials"] = _median([r["trials"] for r in rs])
        row["points"] = _median([r.get("points") for r in rs])
        row["children"] = _median([r.get("children") for r in rs])
        row["switches"] = _median([r.get("changed") for r in rs])
        row["epochs_per_trial"] = _median([r["epochs"] / max(1, r["trials"]) for r in rs])
        row["wall_s"] = _median([r["wall_s"] for r in rs])
        out.append(row)
    return out


def _median(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else None


def report(summary: list[dict[str, Any]], table: Table, checkpoints: Sequence[float], slots: int, seeds: int,
           notes: list[str]) -> str:
    mean = table.mean_acc
    c_end = int(np.argmax(mean[:, -1]))
    c_any, e_any = np.unravel_index(int(np.argmax(mean)), mean.shape)
    fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
    rows = []
    for r in summary:
        reach = "-" if r["to_target"] is None else f"{r['to_target']:.1f}"
        label = Method(r["tool"], r["method"], r["sampler"], r.get("rules", ""), r.get("schedule") or "async").label
        rows.append([r["tool"], label]
                    + [fmt(r[f"best@{b}"]) for b in checkpoints] + [fmt(r[f"incumbent@{checkpoints[-1]}"]),
                    f"{reach} ({r['reached_target']}/{r['seeds']})", r["to_target_each"], f"{r['trials']:.0f}",
                    f"{r['points']:.0f}", f"{r['switches']:.0f}", f"{r['epochs_per_trial']:.2f}",
                    f"{r['wall_s']:.1f}"])
    header = (["tool", "method"] + [f"best @{b}" for b in checkpoints]
              + [f"incumbent @{checkpoints[-1]}", "to target", "each seed", "trials", "points", "switches",
                 "epochs/trial", "run s"])
    how = ("interpolated between them (log learning rate, log batch size)" if table.replay == INTERPOLATE
           else "snapped to them")
    lines = [
        f"Simulated, {slots} slots, on {len(table.configs)} recorded configs x {len(table.seeds)} seeds x "
        f"{table.epochs} epochs, {how}; median over {seeds} seed(s).  Budgets in full-trial units "
        f"(1 = {table.full_cost:.2f} s of the recording CPU; {checkpoints[-1]} = "
        f"{checkpoints[-1] * table.full_cost / 3600:.3f} h).",
        f"Ceiling: best seed-mean accuracy after {table.epochs} epochs {mean[c_end, -1]:.4f} "
        f"({_cfg(table, c_end)}); at any epoch {mean[c_any, e_any]:.4f} (epoch {e_any + 1}, {_cfg(table, c_any)}).",
        f"best @B: the best val_accuracy reported within B full trials of compute; incumbent: the seed-mean "
        f"accuracy of the config and epoch behind that report; to target: the compute until the incumbent "
        f"was within {TARGET_GAP} of the ceiling ({target(table):.4f}), with how many seeds got there; "
        f"each seed: every seed's, sorted (- never); trials, points (distinct configs replayed) and epochs/trial: "
        f"up to the last budget; switches: warm-started children on another config than their parent's (a PBT "
        f"lineage changing its hyperparameters); run s: wall seconds to simulate one run.",
        "",
        _bench.table(rows, header),
    ]
    lines += [f"Note: {n}" for n in notes]
    return "\n".join(lines)


def _cfg(table: Table, c: int) -> str:
    cfg = table.configs[c]
    return ", ".join(f"{k} {v:g}" for k, v in cfg.items())


def main() -> int:
    p = _bench.base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0 1 2 3 4; --quick 0)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time, in worker processes (default 1)")
    p.add_argument("--methods", default=None,
                   help="comma-separated labels to run, e.g. 'full+asha (random),pbt+none (random; "
                        "perturb/quantile),ASHA' (default: all)")
    p.add_argument("--replay", choices=REPLAYS, default=INTERPOLATE,
                   help="a config between grid points: interpolated (default) or snapped to the nearest")
    args = p.parse_args()
    out = _bench.out_dir(args)
    methods = None
    if args.methods:
        want = {m.strip() for m in args.methods.split(",")}
        methods = [m for m in AUTOTUNE + SYNE if m.label in want]
    print(run(args.quick, out, args.seeds, methods, args.jobs, args.replay))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
