"""Evaluator registry: names and aliases to classes."""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import Evaluator, trial_dir_name
from .full import FullTrialEvaluator
from .pbt import PopulationBasedEvaluator

EVALUATORS: dict[str, type[Evaluator]] = {"full": FullTrialEvaluator, "pbt": PopulationBasedEvaluator}
ALIASES = {"fulltrial": "full", "full-trial": "full", "populationbased": "pbt", "population-based": "pbt"}


def resolve_evaluator_name(name: str) -> str:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EVALUATORS:
        valid = ", ".join(sorted(EVALUATORS) + sorted(ALIASES))
        raise ConfigError(f"unknown evaluator {name!r}; valid evaluators: {valid}")
    return key


def make_evaluator(name: str, **kwargs: Any) -> Evaluator:
    return EVALUATORS[resolve_evaluator_name(name)](**kwargs)


__all__ = ["Evaluator", "EVALUATORS", "make_evaluator", "resolve_evaluator_name", "trial_dir_name"]
