"""Bayesian samplers through Optuna's ask/tell interface: ``bayes`` (TPE) and ``bayes-gp`` (GP).

Each sampler keeps a private in-memory study whose trials are asked with the fixed distributions of
``space.to_optuna_distributions()``.  Trial params become unit-cube points only through
``space.encode`` (the space module owns the one encoding).  Failed observations (``None``, NaN, inf)
are told as ``TrialState.FAIL``, so Optuna treats them as failed rather than as a score.  Pruned
observations (stopped early by ``--early-stop``) get their reported losses as intermediate values and
are told as ``TrialState.PRUNED``, as Optuna's own pruners leave them: TPE ranks them below every
completed trial, by last step then by last value; the GP sampler reads only completed trials.

Pending candidates are Optuna trials left ``RUNNING`` until told, so rounds (several asks before a
tell) and asynchronous scheduling (``ask(1)`` whenever a slot frees, tells in any order) are the same
thing to Optuna and need no separate code; ``set_asynchronous`` only records the flag.

* TPE runs with ``constant_liar=True``: every RUNNING trial is put in the "bad" group as if it had
  the worst value, so a new proposal stays away from points still being evaluated.
* GPSampler (Optuna 5) accounts for RUNNING trials itself: it reads trials in states COMPLETE and
  RUNNING, and with any running trial it switches from logEI to qLogEI, whose expected improvement is
  taken jointly over the GP's posterior at the running points (QMC samples), i.e. they are treated
  as pending, not ignored.  Our trials are asked with fixed distributions, so a running trial's
  params are known at once and all of them count.  No constant liar is needed (GPSampler has none).
* In both, ``n_startup_trials`` counts finished trials only: while many trials are running at the
  start, proposals stay random until that many have ended.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import BaseSampler, GPSampler, TPESampler
from optuna.storages import InMemoryStorage
from optuna.trial import TrialState

from ..errors import SamplerError
from ..space import SearchSpace
from .base import Observation, Sampler, pack_object, unpack_object

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _OptunaSampler(Sampler):
    """Shared ask/tell plumbing; subclasses build the Optuna sampler."""

    def __init__(self, space: SearchSpace, popsize: int, seed: int | None = None, *, n_startup_trials: int = 10) -> None:
        super().__init__(space, popsize, seed)
        if isinstance(n_startup_trials, bool) or not isinstance(n_startup_trials, int) or n_startup_trials < 0:
            raise SamplerError(f"{self.name} option n_startup_trials must be an integer >= 0, but got {n_startup_trials!r}")
        self._distributions = space.to_optuna_distributions()
        # Optuna creates an unseeded generator lazily, on first use, so a state_dict taken before that
        # would resume with fresh entropy; an explicit seed makes every generator concrete at once.
        optuna_seed = int(seed) % 2**32 if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            sampler = self._make_optuna_sampler(optuna_seed, n_startup_trials)
            self._study = optuna.create_study(storage=InMemoryStorage(), sampler=sampler, direction="minimize")
        self._trial_of: dict[int, int] = {}  # candidate id -> Optuna trial number

    def _make_optuna_sampler(self, seed: int | None, n_startup_trials: int) -> BaseSampler:
        raise NotImplementedError

    def _propose(self, n: int) -> list[Sequence[float]]:
        points = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            for k in range(n):
                trial = self._study.ask(fixed_distributions=self._distributions)
                self._trial_of[self._next_id + k] = trial.number
                points.append(self.space.encode(self.space.from_optuna_params(trial.params)).tolist())
        return points

    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            for _, ob in pairs:
                number = self._trial_of.pop(ob.id)
                if ob.pruned:
                    self._tell_pruned(number, ob)
                elif ob.failed:
                    self._study.tell(number, state=TrialState.FAIL)
                else:
                    self._study.tell(number, float(ob.loss))  # type: ignore[arg-type]

    def _tell_pruned(self, number: int, ob: Observation) -> None:
        """Intermediate values first (what a pruner's trial.report leaves), then the PRUNED state."""
        frozen = self._study.get_trials(deepcopy=False)[number]
        trial = optuna.Trial(self._study, frozen._trial_id)  # the id, not the number, names it in storage
        for step, loss in ob.curve:
            if np.isfinite(loss):
                trial.report(float(loss), int(step))
        self._study.tell(number, state=TrialState.PRUNED)

    @property
    def study(self) -> optuna.Study:
        """The private study, for inspection (read-only use)."""
        return self._study

    def _state(self) -> dict[str, Any]:
        return {"study": pack_object(self._study), "trial_of": {str(k): v for k, v in self._trial_of.items()}}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._study = unpack_object(state["study"])
        self._trial_of = {int(k): int(v) for k, v in state["trial_of"].items()}


class BayesSampler(_OptunaSampler):
    """Optuna's TPE (multivariate, constant liar for batches)."""

    name = "bayes"
    native_categoricals = True

    def _make_optuna_sampler(self, seed: int | None, n_startup_trials: int) -> BaseSampler:
        return TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True, constant_liar=True)


class BayesGPSampler(_OptunaSampler):
    """Optuna's Gaussian-process sampler (slower per proposal; for small budgets)."""

    name = "bayes-gp"
    native_categoricals = True

    def _make_optuna_sampler(self, seed: int | None, n_startup_trials: int) -> BaseSampler:
        return GPSampler(seed=seed, n_startup_trials=n_startup_trials)
