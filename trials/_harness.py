"""What every bundled trial shares: device and threads, checkpoint files, and the two ways to run.

A trial module defines ``train(config, budget, parent_checkpoint, checkpoint_dir, seed, report,
start_step)``.  :func:`run_objective` runs it as an autotune objective, :func:`run_script` as an
AutoDL Finetuner style script (``--name=value`` flags, ``--saved_params_dir``, ``--model_path``),
reporting to autotune when ``autotune run`` started it and printing its results when run by hand.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

HERE = Path(__file__).resolve().parent

Report = Callable[[dict[str, float], int, Path], None]


class TrainFn(Protocol):
    def __call__(self, config: dict[str, Any], budget: float | None, parent_checkpoint: str | None,
                 checkpoint_dir: Path, seed: int, report: Report, start_step: int | None = None) -> Any: ...


# ----------------------------------------------------------------------------------------------
# Device, threads, budget
# ----------------------------------------------------------------------------------------------
def budget_epochs(budget: float | None, default: int) -> int:
    """Epochs this trial adds: the trial's budget rounded (at least 1), else the config's ``epochs``."""
    if budget is None:
        return max(1, int(default))
    return max(1, int(round(float(budget))))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_threads() -> None:
    """torch uses the threads Ray granted the trial (``OMP_NUM_THREADS``), not every core."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit() and int(n) > 0:
        torch.set_num_threads(int(n))


def autocast(device: torch.device, amp: bool) -> Any:
    """bf16 autocast on a GPU that has it (fp16 otherwise) when ``amp``; full precision elsewhere."""
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)


# ----------------------------------------------------------------------------------------------
# Checkpoint files
# ----------------------------------------------------------------------------------------------
def checkpoint_file(path: str | os.PathLike[str], filename: str) -> Path:
    """A checkpoint is a folder holding ``filename``, or that file itself."""
    p = Path(path)
    return p / filename if p.is_dir() else p


def load_checkpoint(path: str | os.PathLike[str], filename: str, fmt: str, kind: str) -> dict[str, Any]:
    """A checkpoint dict of format ``fmt``; plain containers and tensors only (``weights_only``)."""
    f = checkpoint_file(path, filename)
    if not f.exists():
        raise FileNotFoundError(f"no checkpoint at {f}")
    ckpt = torch.load(f, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ValueError(f"{f} is not a {kind} checkpoint")
    return ckpt


# ----------------------------------------------------------------------------------------------
# Reporting from a script trial
# ----------------------------------------------------------------------------------------------
def _import_autotune() -> Any:
    try:
        import autotune.trial  # noqa: F401
    except ImportError:  # run from a checkout that is not installed: the repository root is our parent
        sys.path.append(str(HERE.parent))
        import autotune.trial  # noqa: F401
    import autotune

    return autotune


def script_trial() -> Any | None:
    """The autotune trial of a script run by ``autotune run``, or None when run by hand."""
    try:
        autotune = _import_autotune()
    except ImportError:
        return None
    from autotune.errors import TrialError

    try:
        return autotune.trial.current_trial()
    except TrialError:
        return None


def script_report(metrics: dict[str, float], step: int, checkpoint: str | None = None) -> None:
    """``autotune.report`` when run by autotune; a printed line when run by hand."""
    if script_trial() is None:
        print(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
        return
    autotune = _import_autotune()
    report = getattr(autotune, "report", None) or autotune.trial.report
    report(metrics, checkpoint=checkpoint, step=step)


# ----------------------------------------------------------------------------------------------
# The two ways to run a trial
# ----------------------------------------------------------------------------------------------
def trial_seed(trial_id: int | str | None) -> int:
    """Each trial's own seed: 1000 + its id (0 for a script run by hand)."""
    return 1000 + (int(trial_id) if trial_id is not None else 0)


def run_objective(train: TrainFn, config: dict[str, Any], trial: Any) -> None:
    """Run ``train`` as an autotune objective: ``trial.budget`` epochs on from the parent, if any."""

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        trial.report(metrics, checkpoint=ckpt, step=step)

    train(config, trial.budget, trial.parent_checkpoint, Path(trial.dir) / "checkpoint",
          seed=trial_seed(trial.id), report=report, start_step=trial.start_step)


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_flags(argv: list[str], doc: str | None = None) -> tuple[dict[str, Any], str | None, str | None]:
    """``--name=value`` / ``--name value`` flags -> (config, saved_params_dir, model_path)."""
    config: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(doc or "")
            raise SystemExit(0)
        if not arg.startswith("--"):
            raise SystemExit(f"unexpected argument {arg!r}: flags are --name=value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise SystemExit(f"flag --{name} needs a value")
            value = argv[i + 1]
            i += 1
        config[name.replace("-", "_")] = _parse_value(value)
        i += 1
    saved = config.pop("saved_params_dir", None)
    parent = config.pop("model_path", None)
    return config, (str(saved) if saved else None), (str(parent) if parent else None)


def run_script(train: TrainFn, argv: list[str], doc: str | None = None) -> None:
    """Run ``train`` as a script: flags override the trial's config; results go to autotune or stdout."""
    config, saved, parent = parse_flags(argv, doc)
    trial = script_trial()
    if trial is not None:
        config = {**{k: v for k, v in trial.config.items() if k not in config}, **config}
    budget = trial.budget if trial is not None else None
    parent = parent or (trial.parent_checkpoint if trial is not None else None)
    if saved is None:
        saved = str(Path(trial.dir) / "checkpoint") if trial is not None else "saved_params"
    start_step = trial.start_step if trial is not None and parent else None

    def report(metrics: dict[str, float], step: int, ckpt: Path) -> None:
        if trial is not None and trial.metric not in metrics:
            # A PaddleHub hparam file names no metric, so the run's is 'score': like AutoDL's
            # report_final_result(acc), give the run's metric the validation accuracy.
            metrics = {**metrics, trial.metric: metrics["val_accuracy"]}
        script_report(metrics, step, checkpoint=str(ckpt) if trial is not None else None)

    train(config, budget, parent, Path(saved), seed=trial_seed(trial.id if trial is not None else None),
          report=report, start_step=start_step)
