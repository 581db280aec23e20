"""Evaluator registry: names and aliases to classes."""

from __future__ import annotations

from typing import Any

from ..schema import BY_NAME
from .base import Evaluator, trial_dir_name
from .full import FullTrialEvaluator
from .pbt import PopulationBasedEvaluator

EVALUATORS: dict[str, type[Evaluator]] = {"full": FullTrialEvaluator, "pbt": PopulationBasedEvaluator}
#: alias -> canonical name; the names and aliases are declared with the `evaluator` setting (autotune.schema)
ALIASES = dict(BY_NAME["evaluator"].aliases)


def resolve_evaluator_name(name: str) -> str:
    return BY_NAME["evaluator"].check(str(name))


def make_evaluator(name: str, **kwargs: Any) -> Evaluator:
    return EVALUATORS[resolve_evaluator_name(name)](**kwargs)


__all__ = ["Evaluator", "EVALUATORS", "make_evaluator", "resolve_evaluator_name", "trial_dir_name"]
