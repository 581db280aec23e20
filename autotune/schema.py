"""The declared schema of every run setting: each setting's type, range, default and help, in one place.

A space file's ``defaults:``, the ``autotune run`` flags and their ``--help``, ``autotune.run``'s
keywords, the dashboard's start request (and its OpenAPI model) and the settings table in
``docs/settings.md`` are all built from :data:`SETTINGS`.  A setting is added, and its rule changed,
here only; :meth:`Setting.check` gives the one-line message every way in shows for a bad value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import ConfigError

#: a run name is a folder name (file systems allow 255 bytes) and a database key
MAX_NAME_BYTES = 200
NAME_FORBIDDEN = '/\\:*?"<>|\0'


class Kind(str, Enum):
    """What a setting's value is."""

    INT = "integer"
    NUMBER = "number"
    CHOICE = "choice"
    TEXT = "text"
    OPTIONS = "options"  # a mapping of option: value, given on the command line as repeated KEY=VALUE


@dataclass(frozen=True)
class Setting:
    """One run setting: its name everywhere, its rule, its default for a new run, and one sentence of help."""

    name: str
    kind: Kind
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the value must be > low rather than >= low
    high_open: bool = False
    choices: tuple[str, ...] = ()
    #: other names a choice takes, as (alias, canonical name) pairs: ``cmaes`` for ``hazero``
    aliases: tuple[tuple[str, str], ...] = ()
    #: None (unset) is allowed, and is the default where ``default`` is None
    nullable: bool = False
    #: above this value only whole numbers are allowed (GPUs: 0.25 of one, or whole ones)
    whole_above: float | None = None
    unit: str = ""  # "seconds": said in the rule, and the command line reads 90s, 30m, 2h
    autodl: str | None = None  # AutoDL Finetuner's name for it, where it has one
    #: where a space file may set it: "defaults" (under ``defaults:``), "top" (a top-level key) or ""
    file: str = "defaults"
    in_dashboard: bool = False  # may be set in the dashboard's start form
    flag_name: str | None = None  # the command line's name, where it is not the setting's
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + (self.flag_name or self.name.replace("_", "-"))

    @property
    def value_name(self) -> str:
        """What the command line's help calls the value: ``--schedule {async,rounds}``, ``--rounds N``."""
        if self.metavar:
            return self.metavar
        if self.kind is Kind.CHOICE:
            return "NAME" if self.aliases else "{" + ",".join(self.choices) + "}"
        if self.kind is Kind.INT:
            return "N"
        return "SECONDS" if self.unit == "seconds" else "NUMBER" if self.kind is Kind.NUMBER else "TEXT"

    def rule(self) -> str:
        """What a value must be, as the error messages and the docs say it."""
        if self.kind is Kind.CHOICE:
            names = self.names()
            quoted = [repr(n) for n in names]
            return f"{quoted[0]} or {quoted[1]}" if len(quoted) == 2 else "one of " + ", ".join(quoted)
        if self.kind is Kind.TEXT:
            return "a non-empty string"
        if self.kind is Kind.OPTIONS:
            return "a mapping of option: value"
        what = "an integer" if self.kind is Kind.INT else "a number"
        if self.unit:
            what += f" of {self.unit}"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{what} in {left}{_num(self.low)}, {_num(self.high)}{right}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {_num(self.low)}"
        return what

    def names(self) -> tuple[str, ...]:
        """A choice setting's canonical values."""
        return self.choices

    def error(self, value: Any) -> ConfigError:
        if self.kind is Kind.NUMBER and isinstance(value, float) and value.is_integer():
            shown = _num(value)  # 0 and 0.0 are the same number here, typed or read from a file
        else:
            shown = repr(value)
        return ConfigError(f"{self.name} must be {self.rule()}, but got {shown}")

    def check(self, value: Any) -> Any:
        """The value, normalised (a name in lower case, an integral float of a number kept), or ConfigError."""
        if value is None and self.nullable:
            return None
        if self.kind is Kind.CHOICE:
            return self._check_choice(value)
        if self.kind is Kind.TEXT:
            if not isinstance(value, str) or not value.strip():
                raise self.error(value)
            return value
        if self.kind is Kind.OPTIONS:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise self.error(value)
            return dict(value)
        return self._check_number(value)

    def _check_choice(self, value: Any) -> str:
        key = value.strip().lower() if isinstance(value, str) else value
        key = dict(self.aliases).get(key, key)
        if key in self.choices:
            return key
        if self.aliases:  # a registry's name: say every name it takes
            valid = ", ".join([*self.choices, *(f"{a} (= {c})" for a, c in self.aliases)])
            raise ConfigError(f"unknown {self.name} {value!r}; valid names: {valid}")
        raise self.error(value)

    def _check_number(self, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(value)
        if self.kind is Kind.INT and not isinstance(value, int):
            raise self.error(value)
        if not math.isfinite(value):
            raise self.error(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise self.error(value)
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise self.error(value)
        if self.whole_above is not None and value > self.whole_above and value != int(value):
            raise ConfigError(f"{self.name} above {_num(self.whole_above)} must be a whole number, but got {value!r}")
        return value

    def parse(self, text: str) -> Any:
        """A value typed on the command line, checked: ``--rounds 3``, ``--time-budget 30m``."""
        if self.kind is Kind.INT:
            try:
                return self.check(int(text))
            except ValueError:
                pass
            try:  # "2.5" is the number 2.5 wherever it is given: say so, as the API and the file do
                number = float(text)
            except ValueError:
                raise self.error(text) from None
            raise self.error(number)
        if self.kind is Kind.NUMBER:
            try:
                value = _seconds(text) if self.unit == "seconds" else float(text)
            except ValueError:
                raise self.error(text) from None
            return self.check(value)
        return self.check(text)

    def tokens(self, value: Any) -> list[str]:
        """Command-line tokens that set ``value`` (what ``autotune submit`` passes to the job's run)."""
        if value is None:
            return []
        if self.kind is Kind.OPTIONS:
            out: list[str] = []
            for key, v in value.items():
                out += [self.flag, f"{key}={_yaml_scalar(v)}"]
            return out
        return [self.flag, _num(value) if isinstance(value, float) else str(value)]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _seconds(text: str) -> float:
    """Seconds, or a number with s, m or h: 90, 90s, 30m, 1.5h."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip()
    scale = units.get(t[-1:].lower()) if t else None
    return float(t[:-1] if scale else t) * (scale or 1.0)


def _yaml_scalar(value: Any) -> str:
    import yaml

    dumped = yaml.safe_dump(value, default_flow_style=True).strip()
    return dumped[:-4].strip() if dumped.endswith("...") else dumped


S, K = Setting, Kind
#: every run setting, in the order the docs and ``--help`` show them
SETTINGS: tuple[Setting, ...] = (
    S("metric", K.TEXT, "the metric to optimise, as the trial reports it", default="score", file="top"),
    S("mode", K.CHOICE, "min or max: whether a lower or a higher metric is better", default="max",
      choices=("min", "max"), file="top"),
    S("budget", K.NUMBER, "training units per trial (per step under pbt), passed to the trial", low=0,
      low_open=True, nullable=True, file="top"),
    S("sampler", K.CHOICE, "the sampler that proposes configs (an alias such as cmaes or tpe works too)",
      default="pshe2", choices=("hazero", "pshe2", "bayes", "bayes-gp", "random", "pshe3"),
      aliases=(("cmaes", "hazero"), ("hamiltonian", "pshe2"), ("tpe", "bayes"), ("gp", "bayes-gp"), ("hmc", "pshe3")),
      autodl="tuning_strategy", in_dashboard=True),
    S("evaluator", K.CHOICE, "full (every trial trains from scratch) or pbt (Population-Based: trials continue "
      "from the best checkpoints)", default="pbt", choices=("full", "pbt"),
      aliases=(("fulltrial", "full"), ("full-trial", "full"), ("populationbased", "pbt"), ("population-based", "pbt")),
      autodl="evaluator", in_dashboard=True),
    S("schedule", K.CHOICE, "async: a trial starts the moment a slot frees; rounds: each round waits for its "
      "slowest trial, as AutoDL Finetuner did", default="async", choices=("async", "rounds"), in_dashboard=True),
    S("rounds", K.INT, "rounds: the run has rounds x popsize trials", default=10, low=1, autodl="round",
      in_dashboard=True),
    S("popsize", K.INT, "trials per round (the population, under pbt)", default=5, low=1, autodl="popsize",
      in_dashboard=True),
    S("seed", K.INT, "seed for the sampler and the explore rule (unset: a fresh one)", low=0, high=2**32 - 1,
      nullable=True, in_dashboard=True),
    S("cpus_per_trial", K.NUMBER, "CPUs each trial holds on Ray, fractions allowed", default=1.0, low=0,
      low_open=True, in_dashboard=True),
    S("gpus_per_trial", K.NUMBER, "GPUs each trial holds, fractions of one allowed (0.25), else whole ones",
      default=0.0, low=0, whole_above=1, in_dashboard=True),
    S("trial_timeout", K.NUMBER, "seconds before a trial is stopped and failed", low=0, low_open=True,
      nullable=True, unit="seconds"),
    S("time_budget", K.NUMBER, "search time (90, 30m, 2h) after which no trial starts; running trials finish",
      low=0, low_open=True, nullable=True, unit="seconds"),
    S("max_retries", K.INT, "retries of a trial whose node was lost", default=1, low=0),
    S("keep_checkpoints", K.INT, "as trials end, delete the checkpoints of all but the K best trials "
      "(unset: keep all)", low=1, nullable=True, metavar="K"),
    S("early_stop", K.CHOICE, "stop losing trials at their reports: asha (successive halving) or median",
      default="none", choices=("none", "asha", "median")),
    S("early_stop_options", K.OPTIONS, "the early-stopping rule's options: grace_period, reduction_factor, "
      "max_t (asha), min_trials (median)", default={}, flag_name="early-stop-option", metavar="KEY=VALUE"),
    S("pbt_explore", K.CHOICE, "pbt: a replaced member's new hyperparameters: perturb (its parent's, each moved "
      "by 0.8/1.2 or a step, or resampled), trust-gp (a Gaussian process of the step's gain picks them near "
      "the parent), sampler (the sampler proposes every config, as AutoDL Finetuner)", default="perturb",
      choices=("perturb", "trust-gp", "sampler")),
    S("pbt_exploit", K.CHOICE, "pbt: quantile (a member in the bottom quantile of its generation is replaced by "
      "a child of the top quantile; the others continue) or round-robin (children of the top half, in turn)",
      default="quantile", choices=("quantile", "round-robin")),
    S("quantile_fraction", K.NUMBER, "pbt with quantile: the fraction replaced, and copied, each generation",
      default=0.25, low=0, high=0.5, low_open=True),
    S("top_fraction", K.NUMBER, "pbt with round-robin: the fraction of the best trials that may be parents",
      default=0.5, low=0, high=1, low_open=True),
    S("sampler_options", K.OPTIONS, "the sampler's options, e.g. sigma0=0.25 for hazero", default={},
      flag_name="sampler-option", metavar="KEY=VALUE"),
)
del S, K
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
FILE_KEYS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.file == "defaults")
DASHBOARD_KEYS: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.in_dashboard)


def check_name(name: Any) -> str:
    """A run name: a folder name and a database key."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("a run needs a non-empty name")
    bad = set(name) & set(NAME_FORBIDDEN)
    if any(ord(c) < 32 for c in name):
        raise ConfigError(f"run name {name!r} may not contain control characters")
    if bad or name in (".", ".."):
        raise ConfigError(f"run name {name!r} may not contain {''.join(sorted(bad)) or 'only dots'}")
    if len(name.encode()) > MAX_NAME_BYTES:  # it names a folder: file systems stop at 255 bytes
        raise ConfigError(f"run name is {len(name.encode())} bytes long; at most {MAX_NAME_BYTES} please")
    return name


def markdown_table() -> str:
    """The settings table of ``docs/settings.md`` (a test keeps the page equal to it)."""
    rows = ["| setting | command line | must be | default | AutoDL Finetuner | what it does |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        flag = f"`{s.flag} {s.value_name}`"
        default = "unset" if s.default is None else ("none" if s.default == {} else f"`{s.default}`")
        where = {"defaults": "", "top": " (a top-level key)"}.get(s.file, " (not in a space file)")
        rows.append(f"| `{s.name}`{where} | {flag} | {s.rule()} | {default} | "
                    f"{'`' + s.autodl + '`' if s.autodl else '-'} | {s.help} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # the table of docs/settings.md
    print(markdown_table(), end="")

__all__ = ["BY_NAME", "DASHBOARD_KEYS", "FILE_KEYS", "Kind", "SETTINGS", "Setting", "check_name", "markdown_table"]
