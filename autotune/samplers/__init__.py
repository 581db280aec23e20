"""Samplers and their registry: names and aliases to factories.

================  ===========  ====================================================================
name              alias        what it is
================  ===========  ====================================================================
``hazero``        cmaes        CMA-ES (pycma) from the ``init`` point, with local restarts
``pshe2``         hamiltonian  PaddleHub's Hamiltonian particle swarm, made sound (see ``pshe2.py``)
``bayes``         tpe          Optuna's TPE
``bayes-gp``      gp           Optuna's Gaussian-process sampler
``random``                     uniform in the unit cube: the baseline
``pshe3``         hmc          HMC particles on a GP lower confidence bound (see ``pshe3.py``)
================  ===========  ====================================================================
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from ..errors import ConfigError, SamplerError
from ..schema import BY_NAME
from ..space import SearchSpace
from .base import Candidate, Observation, Sampler
from .bayes import BayesGPSampler, BayesSampler
from .hazero import HazeroSampler
from .pshe2 import PSHE2Sampler
from .pshe3 import PSHE3Sampler
from .random_search import RandomSampler

#: canonical name -> sampler class (each class is its own factory: ``cls(space, popsize, seed, **options)``)
SAMPLERS: dict[str, type[Sampler]] = {
    "hazero": HazeroSampler,
    "pshe2": PSHE2Sampler,
    "bayes": BayesSampler,
    "bayes-gp": BayesGPSampler,
    "random": RandomSampler,
    "pshe3": PSHE3Sampler,
}
#: alias -> canonical name; the names and aliases are declared with the `sampler` setting (autotune.schema)
ALIASES: dict[str, str] = dict(BY_NAME["sampler"].aliases)


def sampler_names() -> list[str]:
    """The canonical sampler names, in registry order."""
    return list(SAMPLERS)


def _valid_names() -> str:
    return ", ".join(list(SAMPLERS) + [f"{a} (= {c})" for a, c in ALIASES.items()])


def resolve_sampler_name(name: str) -> str:
    """The canonical name for a name or alias (case-insensitive); SamplerError listing valid ones otherwise."""
    if not isinstance(name, str):
        raise SamplerError(f"a sampler name must be a string, but got {name!r}; valid names: {_valid_names()}")
    try:
        return BY_NAME["sampler"].check(name)
    except ConfigError as e:
        raise SamplerError(str(e)) from None


def sampler_options(name: str) -> dict[str, Any]:
    """The options a sampler accepts, with their defaults."""
    cls = SAMPLERS[resolve_sampler_name(name)]
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def make_sampler(name: str, space: SearchSpace, popsize: int, seed: int | None = None, **options: Any) -> Sampler:
    """Build a fresh sampler by name or alias; options are the sampler's keyword options."""
    canonical = resolve_sampler_name(name)
    try:
        BY_NAME["popsize"].check(popsize)
    except ConfigError as e:
        raise SamplerError(str(e)) from None
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise SamplerError(f"seed must be an integer >= 0 or None, but got {seed!r}")
    check_sampler_options(canonical, options)
    try:
        return SAMPLERS[canonical](space, popsize, seed, **options)
    except (TypeError, ValueError) as e:  # an option value of the wrong kind ('big' for a number)
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise SamplerError(f"sampler {canonical!r}: bad option value ({given}): {e}") from None


def check_sampler_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse option names the sampler does not take (``seed`` and ``popsize`` are settings, not options)."""
    canonical = resolve_sampler_name(name)
    accepted = sampler_options(canonical)
    for key in options:
        if key not in accepted:
            valid = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
            setting = f" ({key} is a run setting: --{key})" if key in ("seed", "popsize", "rounds") else ""
            raise SamplerError(f"sampler {canonical!r} has no option {key!r}{setting}; its options are: {valid}")


__all__ = [
    "ALIASES", "SAMPLERS", "Candidate", "Observation", "Sampler", "check_sampler_options", "make_sampler",
    "resolve_sampler_name",
    "sampler_names", "sampler_options",
]
