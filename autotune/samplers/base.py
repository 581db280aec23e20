"""The sampler protocol: batch ``ask(n)`` / ``tell(observations)`` on the unit cube.

Samplers minimise a loss; the driver flips the sign once for ``mode: max``.  A sampler never learns
from configs it did not propose, and it is told about every candidate it proposed, exactly once, with a
finite loss or a failure (``loss=None``).  ``adopt(config)`` gives a config made elsewhere (a
Population-Based child explored from its parent) a candidate id: it is told like any other, and the
base class keeps it from the sampler's model.  ``state_dict`` is JSON-serialisable so a run can resume
with the exact sampler state rather than an approximate replay.

Two schedules.  In rounds mode (the default) the driver asks a population, runs it and tells it.
After ``set_asynchronous(True)`` the driver asks one candidate whenever a slot frees and tells each
outcome as it ends, so any number of candidates (fewer or more than ``popsize``) may be pending and
they end in any order; every sampler then accepts ``ask(n)`` at any moment.  A sampler can go from
rounds to asynchronous mid-run (a rounds run resumed asynchronously), never back.
"""

from __future__ import annotations

import base64
import math
import pickle
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import SamplerError, SamplerProtocolError
from ..space import SearchSpace


@dataclass(frozen=True)
class Candidate:
    """One proposal: a sampler-unique id, its point in the unit cube and the decoded config."""

    id: int
    point: tuple[float, ...]
    config: dict[str, Any]


@dataclass(frozen=True)
class Observation:
    """The outcome of one candidate: a loss to minimise, ``None`` when the trial failed, or a pruned trial.

    A pruned trial (stopped early by the run's rule) has ``pruned_step``, the steps it ran before it was
    stopped, and ``curve``, its reported losses by step (sign already flipped like ``loss``); ``loss`` is
    its last reported loss.  It has no final score, so ``failed`` is True for it too: a sampler that knows
    nothing of pruning treats it as a failure; the ones that do check ``pruned`` first (see
    :func:`autotune.samplers._population.ranked_losses` for the rule of autotune's own samplers).
    """

    id: int
    loss: float | None = None
    pruned_step: int | None = None
    curve: tuple[tuple[int, float], ...] = ()

    @property
    def pruned(self) -> bool:
        return self.pruned_step is not None

    @property
    def failed(self) -> bool:
        """No final score: a failure, or a pruned trial (see ``pruned``)."""
        return self.pruned or self.loss is None or not math.isfinite(self.loss)

    @property
    def outcome(self) -> "Outcome":
        """The JSON-safe form samplers keep: a loss, ``None`` (failed) or ``[steps, last loss]`` (pruned)."""
        if self.pruned:
            last = float(self.loss) if self.loss is not None and math.isfinite(self.loss) else None
            return [int(self.pruned_step), last]  # type: ignore[list-item]
        return None if self.failed else float(self.loss)  # type: ignore[arg-type]


#: what autotune's own samplers keep per told candidate: a finite loss (completed), None (failed) or
#: [steps run, last reported loss or None] (pruned); plain JSON, so sampler states stay JSON
Outcome = float | None | list[float | None]


class Sampler(ABC):
    """Base class of every sampler.

    Subclasses implement ``_propose(n)`` and ``_observe(pairs)``; the base class owns id assignment
    and protocol checks (unknown ids, telling twice) so every sampler enforces them the same way.
    """

    #: registry name, set by subclasses
    name: ClassVar[str] = ""
    #: True when the sampler only learns from whole populations (CMA-ES): in rounds mode the driver must
    #: tell a full batch (asynchronous mode lifts this: see ``set_asynchronous``)
    needs_full_population: ClassVar[bool] = False
    #: True when categoricals are handled natively rather than through the unit-cube encoding
    native_categoricals: ClassVar[bool] = False

    def __init__(self, space: SearchSpace, popsize: int, seed: int | None = None) -> None:
        self.space = space
        self.popsize = int(popsize)
        self.seed = seed
        self._next_id = 0
        self._pending: dict[int, tuple[float, ...]] = {}
        self._told: set[int] = set()
        self._adopted: set[int] = set()  # ids given to configs this sampler did not propose
        self._asynchronous = False

    # -- public protocol ---------------------------------------------------------------------
    def ask(self, n: int) -> list[Candidate]:
        """Propose ``n`` candidates."""
        if n < 1:
            raise SamplerProtocolError(f"ask(n) needs n >= 1, but got n={n}")
        points = self._propose(n)
        out = []
        for p in points:
            p = tuple(float(x) for x in np.clip(np.asarray(p, dtype=float), 0.0, 1.0))
            cid = self._next_id
            self._next_id += 1
            self._pending[cid] = p
            out.append(Candidate(id=cid, point=p, config=self.space.decode(np.asarray(p))))
        return out

    def adopt(self, config: dict[str, Any]) -> Candidate:
        """An id for a config this sampler did not propose (it must be a valid config of the space).

        The candidate is pending and told like any other; the sampler never learns from it."""
        point = tuple(float(x) for x in self.space.encode(config))
        cid = self._next_id
        self._next_id += 1
        self._pending[cid] = point
        self._adopted.add(cid)
        return Candidate(id=cid, point=point, config=self.space.validate_config(config))

    def tell(self, observations: Sequence[Observation]) -> None:
        """Report outcomes for earlier proposals; each id exactly once."""
        seen: set[int] = set()
        pairs: list[tuple[tuple[float, ...], Observation]] = []
        for ob in observations:
            if ob.id in self._told or ob.id in seen:
                raise SamplerProtocolError(f"candidate {ob.id} was already told; each candidate is told once")
            if ob.id not in self._pending:
                raise SamplerProtocolError(f"candidate {ob.id} was never proposed by this {self.name} sampler")
            seen.add(ob.id)
            pairs.append((self._pending[ob.id], ob))
        for cid in seen:
            del self._pending[cid]
            self._told.add(cid)
        own = [(p, ob) for p, ob in pairs if ob.id not in self._adopted]
        self._adopted -= seen
        if own or not pairs:  # a tell of adopted candidates only tells the model nothing
            self._observe(own)

    @property
    def pending_ids(self) -> list[int]:
        return sorted(self._pending)

    @property
    def asynchronous(self) -> bool:
        """True once :meth:`set_asynchronous` switched the sampler to one-at-a-time scheduling."""
        return self._asynchronous

    def set_asynchronous(self, flag: bool = True) -> None:
        """Switch to asynchronous scheduling (see the module docstring); call it before the first ask.

        Switching on later converts the open rounds book-keeping (a rounds run resumed asynchronously).
        Switching back is refused once anything was asked: asynchronous state has no rounds equivalent.
        """
        flag = bool(flag)
        if flag == self._asynchronous:
            return
        if not flag:
            if self._next_id:
                raise SamplerError(f"{self.name}: this sampler already proposed candidates under asynchronous "
                                   f"scheduling and cannot go back to rounds; resume the run asynchronously")
            self._asynchronous = False
            return
        self._asynchronous = True
        self._become_asynchronous()

    def state_dict(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot from which ``load_state_dict`` resumes exactly."""
        return {
            "name": self.name,
            "next_id": self._next_id,
            "pending": {str(k): list(v) for k, v in self._pending.items()},
            "told": id_ranges(self._told),  # [[first, last], ...]: a few pairs, however long the run
            "asynchronous": self._asynchronous,
            "adopted": sorted(self._adopted),  # pending only: told ones are dropped
            "impl": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``.  A state saved in rounds mode (or before the flag existed) loaded
        into a sampler already set asynchronous is converted, as by ``set_asynchronous(True)``."""
        wanted = self._asynchronous
        self._next_id = int(state["next_id"])
        self._pending = {int(k): tuple(float(x) for x in v) for k, v in state["pending"].items()}
        self._told = ids_of(state["told"])
        self._asynchronous = bool(state.get("asynchronous", False))
        self._adopted = {int(i) for i in state.get("adopted", [])}
        self._load_state(state["impl"])
        if wanted:
            self.set_asynchronous(True)

    # -- subclass hooks ----------------------------------------------------------------------
    @abstractmethod
    def _propose(self, n: int) -> list[Sequence[float]]:
        """Return ``n`` points in the unit cube."""

    @abstractmethod
    def _observe(self, pairs: list[tuple[tuple[float, ...], Observation]]) -> None:
        """Learn from (point, observation) pairs; failed observations have ``ob.failed``."""

    def _become_asynchronous(self) -> None:
        """Convert rounds book-keeping to asynchronous book-keeping; nothing to do for most samplers."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """JSON-serialisable implementation state."""

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``_state`` returned."""


def id_ranges(ids: set[int]) -> list[list[int]]:
    """Sorted ids as inclusive ranges: {0, 1, 2, 5} -> [[0, 2], [5, 5]]."""
    out: list[list[int]] = []
    for i in sorted(ids):
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def ids_of(told: list[Any]) -> set[int]:
    """Inverse of :func:`id_ranges`; also reads the plain id lists that states saved before ranges hold."""
    ids: set[int] = set()
    for item in told:
        if isinstance(item, list):
            ids.update(range(int(item[0]), int(item[1]) + 1))
        else:
            ids.add(int(item))
    return ids


def pack_object(obj: Any) -> str:
    """Serialise a library object (a pycma strategy, an Optuna study) into a JSON-safe string."""
    return base64.b64encode(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


def unpack_object(blob: str) -> Any:
    """Inverse of :func:`pack_object`.  Only ever applied to state autotune itself wrote."""
    return pickle.loads(base64.b64decode(blob.encode("ascii")))
