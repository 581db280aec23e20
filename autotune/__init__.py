"""autotune: hyperparameter search for fine-tuning deep-learning models.

Samplers HAZero (CMA-ES), PSHE2 (Hamiltonian particles), Bayesian (Optuna) and random; Full-Trial and
Population-Based evaluators; trials on Ray; results in an Optuna RDB database.
"""

from __future__ import annotations

from typing import Any

from .errors import AutotuneError
from .trial import Trial, current_trial, report, report_final_result

__version__ = "0.1.0"


def run(*args: Any, **kwargs: Any):  # noqa: ANN201 - lazy import keeps `import autotune` light in trials
    """Run a search; see :func:`autotune.api.run`."""
    from .api import run as _run

    return _run(*args, **kwargs)


def resume(*args: Any, **kwargs: Any):  # noqa: ANN201
    """Continue an interrupted run; see :func:`autotune.api.resume`."""
    from .api import resume as _resume

    return _resume(*args, **kwargs)


def load(*args: Any, **kwargs: Any):  # noqa: ANN201
    """Open a run folder; see :func:`autotune.api.load`."""
    from .api import load as _load

    return _load(*args, **kwargs)


__all__ = ["AutotuneError", "Trial", "current_trial", "load", "report", "report_final_result", "resume", "run",
           "__version__"]
