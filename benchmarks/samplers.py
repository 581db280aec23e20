"""Search quality: autotune's samplers against Optuna's and PaddleHub's, on COCO's BBOB functions.

    python benchmarks/samplers.py                 # the committed results (see benchmarks/README.md)
    python benchmarks/samplers.py --quick         # CI: a tiny grid, about a minute

Every contender gets the same problems, budgets (rounds x population, as in AutoDL Finetuner) and
seeds.  A contender is driven round by round: ask a whole population, evaluate it on the decoded
configs, tell the values.  No Ray and no driver are involved: this measures the samplers alone.

Contenders
  autotune   hazero, pshe2, bayes, bayes-gp, random, pshe3: ``make_sampler(name, space, popsize, seed)``,
             ask(popsize) / tell(observations); the objective sees ``candidate.config``, so the
             space encoding is exercised (BBOB coordinates are float params in [-5, 5]).
  optuna     ``CmaEsSampler(popsize=...)``, ``TPESampler()`` and ``GPSampler()`` with Optuna's
             defaults, driven with ``study.ask(distributions)`` / ``study.tell`` in batches of popsize.
  reference  re-implementations of PaddleHub AutoDL Finetuner's strategies (``paddlehub/autofinetune/
             autoft.py``), written from its published update rules; reference baselines, not
             PaddleHub's code:
             ``ph-hazero``        pycma from the init point in a [-1, 1] box, sigma 0.2, popsize;
             ``ph-pshe2``         the PSHE2 rule with per-particle momentum (the published formula);
             ``ph-pshe2-shipped`` the rule as PaddleHub 1.x ran it: its ``[[0] * n] * popsize``
                                  lists make every particle share one momentum row, and the gradient
                                  rows alias too, so that row is pushed popsize times by the last
                                  particle's gradients.
             Both PSHE2 variants keep positions unclipped and clip at conversion, as PaddleHub did;
             [-1, 1] maps linearly onto the unit cube and configs are decoded by autotune's encoding
             (which is linear for these float params, as PaddleHub's was).

Problems
  BBOB functions (``cocoex``) in dimension 2, 5 and 10, several instances each, plus mixed spaces:
  a BBOB function with an integer ``n`` in [0, 10] and a categorical ``c`` of 5 choices added,
  ``f = g(x) + w * (((n - n*) / 10)^2 + penalty[c])`` with ``w`` half of g's random-median gap, so
  ``f* = g*`` (n* and the penalties depend on the instance).

Metric
  normalised regret of the best value found so far, ``(best - f*) / (f_random_median - f*)``, where
  ``f_random_median`` is the median of f over 10,000 uniform points of the search space: 1 is a
  typical random guess, 0 the optimum.  Per round; median and interquartile range over seeds; and
  the average rank (by median final regret) over problems.  Sampler time (ask + tell) is timed
  apart from objective time.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _bench  # noqa: E402  (not "_common": trials/_common.py owns that name)

AUTOTUNE = ("hazero", "pshe2", "bayes", "bayes-gp", "random", "pshe3")
#: pshe3 with one part switched off, for its ablation (benchmarks/results/pshe3_ablation/): the dynamics
#: replaced by random-restart L-BFGS-B on the same potential, or the batch taken without fantasies
ABLATIONS = {"pshe3-optimise": ("pshe3", {"moves": "optimise"}),
             "pshe3-independent": ("pshe3", {"batch": "independent"})}
OPTUNA = ("optuna-cmaes", "optuna-tpe", "optuna-gp")
REFERENCE = ("ph-hazero", "ph-pshe2", "ph-pshe2-shipped")
CONTENDERS = AUTOTUNE + OPTUNA + REFERENCE + tuple(ABLATIONS)
SLOW = ("bayes-gp", "optuna-gp")  # Gaussian processes: seconds per ask at a few hundred trials

#: The committed grid.  The Gaussian-process samplers cost 5-30 s per 50-trial run here (most of it in
#: acquisition optimisation), so they run on a subset: ``bayes-gp`` on the 10 x 5 budget in 2 and 5
#: dimensions, instance 1; ``optuna-gp`` (the same algorithm: autotune's ``bayes-gp`` wraps Optuna's
#: GPSampler with its defaults) only where needed to check that the two trajectories are identical.
FULL = dict(functions=(1, 3, 8, 10), dims=(2, 5, 10), instances=(1, 2), mixed=((1, 5), (3, 5)),
            budgets=("10x5", "20x10", "10x4d"), seeds=10,
            limits={"bayes-gp": dict(budgets=("10x5",), dims=(2, 5), instances=(1,), mixed=False),
                    "optuna-gp": dict(budgets=("10x5",), dims=(2,), instances=(1,), mixed=False, functions=(1, 3))})
QUICK = dict(functions=(1, 3), dims=(2,), instances=(1,), mixed=((1, 2),), budgets=("4x4",), seeds=2, limits={})

N_CHOICES, N_MAX = 5, 10


# -- problems --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProblemKey:
    function: int
    dim: int
    instance: int
    mixed: bool = False

    @property
    def name(self) -> str:
        base = f"f{self.function}-d{self.dim}-i{self.instance}"
        return f"mixed-{base}" if self.mixed else base

    @property
    def group(self) -> str:
        return f"mixed-f{self.function}-d{self.dim}" if self.mixed else f"f{self.function}-d{self.dim}"


class Problem:
    """One BBOB problem (optionally with an int and a categorical added) over an autotune space."""

    def __init__(self, key: ProblemKey) -> None:
        import cocoex
        from autotune.space import CategoricalParam, FloatParam, IntParam, SearchSpace

        self.key = key
        suite = cocoex.Suite("bbob", "", f"dimensions:{key.dim} instance_indices:{key.instance} "
                                         f"function_indices:{key.function}")
        self._suite = suite  # the problem lives as long as its suite
        self.coco = suite.get_problem_by_function_dimension_instance(key.function, key.dim, key.instance)
        lo, hi = self.coco.lower_bounds, self.coco.upper_bounds
        params: list[Any] = [FloatParam(f"x{i}", float(lo[i]), float(hi[i])) for i in range(key.dim)]
        if key.mixed:
            params += [IntParam("n", 0, N_MAX), CategoricalParam("c", tuple("abcde"))]
            rng = np.random.default_rng(1000 + key.instance * 100 + key.function)
            self.n_star = int(rng.integers(0, N_MAX + 1))
            self.penalty = dict(zip("abcde", rng.permutation([0.0, 0.25, 0.5, 0.75, 1.0])))
        self.space = SearchSpace(tuple(params), source=key.name)
        self.g_star = self._bbob_optimum()
        self.weight = 0.0
        if key.mixed:
            g_med = float(np.median([self._g(x) for x in self._uniform_x(10_000)]))
            self.weight = 0.5 * (g_med - self.g_star)
        self.f_star = self.g_star
        rng = np.random.default_rng(12345)
        u = rng.random((10_000, self.space.dim))
        self.f_random_median = float(np.median([self(self.space.decode(p)) for p in u]))

    def _uniform_x(self, n: int) -> np.ndarray:
        rng = np.random.default_rng(54321)
        return rng.uniform(self.coco.lower_bounds, self.coco.upper_bounds, size=(n, self.key.dim))

    def _g(self, x: np.ndarray) -> float:
        return float(self.coco(np.asarray(x, dtype=float)))

    def _bbob_optimum(self) -> float:
        """f(x_opt): cocoex writes x_opt to a file in the working directory (its only way out)."""
        here = os.getcwd()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                os.chdir(tmp)
                self.coco._best_parameter("print")
                xopt = np.loadtxt(Path(tmp) / "._bbob_problem_best_parameter.txt", ndmin=1)
            finally:
                os.chdir(here)
        return self._g(xopt)

    def __call__(self, config: dict[str, Any]) -> float:
        x = np.array([config[f"x{i}"] for i in range(self.key.dim)], dtype=float)
        f = self._g(x)
        if self.key.mixed:
            f += self.weight * (((config["n"] - self.n_star) / N_MAX) ** 2 + self.penalty[config["c"]])
        return f

    def regret(self, best: float) -> float:
        return max(0.0, (best - self.f_star) / (self.f_random_median - self.f_star))


# -- PaddleHub reference strategies (reference baselines, re-implemented from the published rules) --
class PaddleHAZero:
    """AutoDL Finetuner's HAZero: pycma from the init point in [-1, 1]^d, sigma 0.2, given popsize."""

    def __init__(self, dim: int, popsize: int, seed: int, init: np.ndarray) -> None:
        import cma

        rng = np.random.default_rng(seed)
        opts = {"popsize": popsize, "bounds": [-1, 1], "AdaptSigma": True, "verbose": -9, "verb_disp": 0,
                "verb_log": 0, "verb_time": False, "seed": float("nan"),
                "randn": lambda *shape: rng.standard_normal(shape)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es = cma.CMAEvolutionStrategy(list(init), 0.2, opts)
        self._asked: list[np.ndarray] = []

    def ask(self) -> list[np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._asked = self.es.ask()
        return self._asked

    def tell(self, values: list[float]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es.tell(self._asked, values)


class PaddlePSHE2:
    """AutoDL Finetuner's PSHE2 rule (alpha 0.5, epsilon 0.2) in [-1, 1]^d.

    ``shipped=False``: every particle has its own momentum (the published formula).
    ``shipped=True``: one momentum row shared by all particles, updated once per particle in turn
    with the gradients of the last particle (what PaddleHub's aliased lists computed).
    """

    def __init__(self, dim: int, popsize: int, seed: int, init: np.ndarray, shipped: bool,
                 alpha: float = 0.5, epsilon: float = 0.2) -> None:
        self.rng = np.random.RandomState(seed)
        self.popsize, self.dim, self.shipped = popsize, dim, shipped
        self.alpha, self.epsilon = alpha, epsilon
        self.x = np.array([self._perturb(init.copy(), 1.0) for _ in range(popsize)])
        self.momentum = np.zeros((popsize, dim))
        self.best_x = np.zeros((popsize, dim))
        self.best_f = np.full(popsize, np.inf)
        self.global_x = np.zeros(dim)
        self.global_f = np.inf
        self.t = 0

    def _perturb(self, x: np.ndarray, size: float) -> np.ndarray:
        r = (self.rng.random_sample(x.shape) - 0.5) * 2.0
        return np.where(r >= 0, (1.0 - x) * r * size + x, (x + 1.0) * r * size + x)

    def ask(self) -> list[np.ndarray]:
        return [np.clip(row, -1.0, 1.0) for row in self.x]  # PaddleHub clipped at conversion only

    def tell(self, values: list[float]) -> None:
        self.t += 1
        f = np.asarray(values, dtype=float)
        improved = f <= self.best_f
        self.best_x[improved], self.best_f[improved] = self.x[improved], f[improved]
        i = int(np.argmin(f))
        if f[i] <= self.global_f:
            self.global_x, self.global_f = self.x[i].copy(), float(f[i])
        a = self.alpha
        decay = 1.0 - 3.0 * a / self.t
        local = self.x - self.best_x
        pop = self.x - self.global_x
        if self.shipped:
            m = self.momentum[0]
            for _ in range(self.popsize):
                m = decay * m - a * local[-1] - a * pop[-1]
            self.momentum = np.tile(m, (self.popsize, 1))
        else:
            self.momentum = decay * self.momentum - a * local - a * pop
        self.x = self.x + a * self.momentum
        self.x = np.array([self._perturb(row, self.epsilon) for row in self.x])


# -- driving one contender ------------------------------------------------------------------------
def parse_budget(text: str, dim: int) -> tuple[int, int]:
    rounds, pop = text.split("x")
    return int(rounds), (int(pop[:-1]) * dim if pop.endswith("d") else int(pop))


def run_contender(problem: Problem, contender: str, rounds: int, popsize: int, seed: int) -> dict[str, Any]:
    """Drive one contender for ``rounds`` rounds; best-so-far per round and the timings."""
    space = problem.space
    best = math.inf
    per_round: list[float] = []
    t_ask = t_tell = t_obj = 0.0
    ask: Callable[[], list[Any]]
    tell: Callable[[list[Any], list[float]], None]
    configs: Callable[[list[Any]], list[dict[str, Any]]]
    if contender in AUTOTUNE or contender in ABLATIONS:
        from autotune.samplers import Observation, make_sampler

        name, options = ABLATIONS.get(contender, (contender, {}))
        sampler = make_sampler(name, space, popsize, seed=seed, **options)
        ask = lambda: sampler.ask(popsize)  # noqa: E731
        configs = lambda cands: [c.config for c in cands]  # noqa: E731
        tell = lambda cands, vals: sampler.tell([Observation(c.id, v) for c, v in zip(cands, vals)])  # noqa: E731
    elif contender in OPTUNA:
        import optuna
        from optuna.exceptions import ExperimentalWarning

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.simplefilter("ignore", ExperimentalWarning)
        if contender == "optuna-cmaes":
            osampler: Any = optuna.samplers.CmaEsSampler(popsize=popsize, seed=seed, warn_independent_sampling=False)
        elif contender == "optuna-tpe":
            osampler = optuna.samplers.TPESampler(seed=seed)
        else:
            osampler = optuna.samplers.GPSampler(seed=seed)
        study = optuna.create_study(sampler=osampler, direction="minimize")
        dists = space.to_optuna_distributions()
        ask = lambda: [study.ask(dists) for _ in range(popsize)]  # noqa: E731
        configs = lambda trials: [t.params for t in trials]  # noqa: E731

        def tell(trials: list[Any], vals: list[float]) -> None:
            for t, v in zip(trials, vals):
                study.tell(t, v)
    else:
        init = 2.0 * space.init_point() - 1.0
        if contender == "ph-hazero":
            strategy: Any = PaddleHAZero(space.dim, popsize, seed, init)
        else:
            strategy = PaddlePSHE2(space.dim, popsize, seed, init, shipped=contender.endswith("shipped"))
        ask = strategy.ask
        configs = lambda xs: [space.decode(np.clip((np.asarray(x) + 1.0) / 2.0, 0.0, 1.0)) for x in xs]  # noqa: E731
        tell = lambda xs, vals: strategy.tell(vals)  # noqa: E731
    for _ in range(rounds):
        t0 = time.perf_counter()
        asked = ask()
        cfgs = configs(asked)
        t1 = time.perf_counter()
        values = [problem(c) for c in cfgs]
        t2 = time.perf_counter()
        tell(asked, values)
        t3 = time.perf_counter()
        t_ask, t_obj, t_tell = t_ask + t1 - t0, t_obj + t2 - t1, t_tell + t3 - t2
        best = min(best, min(values))
        per_round.append(best)
    n = rounds * popsize
    return {"best_by_round": per_round, "ask_ms": 1e3 * t_ask / n, "tell_ms": 1e3 * t_tell / n,
            "objective_ms": 1e3 * t_obj / n}


_PROBLEMS: dict[ProblemKey, Problem] = {}


def _problem(key: ProblemKey) -> Problem:
    if key not in _PROBLEMS:
        _PROBLEMS[key] = Problem(key)
    return _PROBLEMS[key]


def _task(args: tuple[ProblemKey, str, str, int]) -> dict[str, Any]:
    key, budget, contender, seed = args
    try:
        import torch  # Optuna's GPSampler computes with torch: one thread per worker process

        torch.set_num_threads(1)
    except ImportError:
        pass
    problem = _problem(key)
    rounds, popsize = parse_budget(budget, key.dim)
    started = time.perf_counter()
    out = run_contender(problem, contender, rounds, popsize, seed)
    regrets = [problem.regret(b) for b in out["best_by_round"]]
    return {
        "problem": key.name, "group": key.group, "function": key.function, "dim": key.dim,
        "instance": key.instance, "mixed": int(key.mixed), "budget": budget, "rounds": rounds,
        "popsize": popsize, "contender": contender, "seed": seed, "best": out["best_by_round"][-1],
        "f_star": problem.f_star, "f_random_median": problem.f_random_median, "regret": regrets[-1],
        "regret_by_round": " ".join(f"{r:.5g}" for r in regrets), "ask_ms": out["ask_ms"],
        "tell_ms": out["tell_ms"], "sampler_ms": out["ask_ms"] + out["tell_ms"],
        "objective_ms": out["objective_ms"], "wall_s": time.perf_counter() - started,
    }


RUN_COLUMNS = ["problem", "group", "function", "dim", "instance", "mixed", "budget", "rounds", "popsize",
               "contender", "seed", "best", "f_star", "f_random_median", "regret", "regret_by_round",
               "ask_ms", "tell_ms", "sampler_ms", "objective_ms", "wall_s"]


# -- summaries -----------------------------------------------------------------------------------
def summarise(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(per problem x budget x contender x round: median/IQR regret; per budget x contender: ranks, times;
    per budget x group x contender: median final regret)."""
    import pandas as pd

    df = pd.DataFrame(rows)
    # rank on the values as the CSV stores them (6 significant digits), so a summary of fresh rows and one of
    # rows merged from the CSV agree, and contenders with the same trajectory tie
    df["regret"] = [float(f"{float(v):.6g}") for v in df["regret"]]
    curves = []
    for (problem, budget, contender), g in df.groupby(["problem", "budget", "contender"], sort=True):
        mat = np.array([[float(v) for v in s.split()] for s in g["regret_by_round"]])
        for r in range(mat.shape[1]):
            q25, q50, q75 = np.percentile(mat[:, r], [25, 50, 75])
            curves.append({"problem": problem, "budget": budget, "contender": contender, "round": r + 1,
                           "trials": (r + 1) * int(g["popsize"].iloc[0]), "seeds": len(g),
                           "median": q50, "q25": q25, "q75": q75})
    overall = []
    for budget, dfb in df.groupby("budget"):
        covers = {c: set(g["problem"]) for c, g in dfb.groupby("contender")}
        everything = set(dfb["problem"])
        scopes = {"all problems": everything}
        for c, probs in covers.items():  # contenders that ran on a subset get a table of their own
            if probs != everything and len(probs) >= 2 and probs not in scopes.values():
                scopes[f"{c} subset"] = probs
        for scope, probs in scopes.items():
            members = [c for c, cov in covers.items() if probs <= cov]
            sub = dfb[dfb.problem.isin(probs) & dfb.contender.isin(members)]
            med = sub.groupby(["problem", "contender"])["regret"].median().reset_index()
            med["rank"] = med.groupby("problem")["regret"].rank(method="average")
            for contender, g in med.groupby("contender"):
                runs = sub[sub.contender == contender]
                overall.append({
                    "budget": budget, "scope": scope, "contender": contender, "problems": len(g),
                    "contenders": len(members), "seeds": runs["seed"].nunique(), "avg_rank": g["rank"].mean(),
                    "median_regret": float(np.median(runs["regret"])),
                    "q25": float(np.percentile(runs["regret"], 25)), "q75": float(np.percentile(runs["regret"], 75)),
                    "sampler_ms": float(runs["sampler_ms"].median()),
                    "objective_ms": float(runs["objective_ms"].median()),
                })
    groups = []
    for (budget, group, contender), g in df.groupby(["budget", "group", "contender"]):
        groups.append({"budget": budget, "group": group, "contender": contender, "runs": len(g),
                       "median": float(np.median(g["regret"])), "q25": float(np.percentile(g["regret"], 25)),
                       "q75": float(np.percentile(g["regret"], 75))})
    return curves, overall, groups


def plot(curves: list[dict[str, Any]], path: Path, problems: list[str], budget: str) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return None
    import pandas as pd

    df = pd.DataFrame(curves)
    df = df[df.budget == budget]
    problems = [p for p in problems if p in set(df.problem)]
    if not problems:
        return None
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    styles = {**{c: "-" for c in AUTOTUNE}, **{c: "--" for c in OPTUNA}, **{c: ":" for c in REFERENCE}}
    for ax, prob in zip(axes[0], problems):
        for contender, g in df[df.problem == prob].groupby("contender"):
            g = g.sort_values("trials")
            ax.plot(g["trials"], g["median"], styles.get(contender, "-"), label=contender, lw=1.6)
            ax.fill_between(g["trials"], g["q25"], g["q75"], alpha=0.12)
        ax.set_yscale("log")
        ax.set_title(f"{prob}, {budget}")
        ax.set_xlabel("trials")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("normalised regret (median, IQR)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _allowed(limit: dict[str, Any] | None, key: ProblemKey, budget: str) -> bool:
    if not limit:
        return True
    return (budget in limit.get("budgets", (budget,)) and key.dim in limit.get("dims", (key.dim,))
            and key.instance in limit.get("instances", (key.instance,))
            and key.function in limit.get("functions", (key.function,))
            and (limit.get("mixed", True) or not key.mixed))


def report(rows: list[dict[str, Any]], out: Path) -> None:
    """Write the summaries and plots of ``rows`` (every run of the output folder) and print the tables."""
    curves, overall, groups = summarise(rows)
    _bench.write_csv(out / "samplers_curves.csv", curves)
    overall.sort(key=lambda r: (r["budget"], r["scope"] != "all problems", r["scope"], r["avg_rank"]))
    _bench.write_csv(out / "samplers_summary.csv", overall)
    _bench.write_csv(out / "samplers_groups.csv", groups)
    shown = sorted({r["problem"] for r in rows})
    pick = [n for n in ("f1-d5-i1", "f3-d5-i1", "f8-d10-i1", "mixed-f3-d5-i1") if n in shown] or shown[:3]
    for budget in sorted({r["budget"] for r in rows}):
        plot(curves, out / f"samplers_curves_{budget}.png", pick, budget)
    for budget, scope in dict.fromkeys((r["budget"], r["scope"]) for r in overall):
        sub = [r for r in overall if r["budget"] == budget and r["scope"] == scope]
        print(f"\nbudget {budget}, {scope}: average rank over {sub[0]['problems']} problems, "
              f"{sub[0]['seeds']} seeds")
        print(_bench.table([(r["contender"], f"{r['avg_rank']:.2f}", f"{r['median_regret']:.3g}",
                              f"[{r['q25']:.3g}, {r['q75']:.3g}]", f"{r['sampler_ms']:.2f}", r["problems"])
                             for r in sub],
                            ["contender", "avg rank", "median regret", "IQR", "sampler ms/trial", "problems"]))


def main(argv: list[str] | None = None) -> int:
    p = _bench.base_parser(__doc__.split("\n")[0])
    p.add_argument("--functions", type=lambda s: tuple(int(x) for x in s.split(",")))
    p.add_argument("--dims", type=lambda s: tuple(int(x) for x in s.split(",")))
    p.add_argument("--instances", type=lambda s: tuple(int(x) for x in s.split(",")))
    p.add_argument("--budgets", type=lambda s: tuple(s.split(",")))
    p.add_argument("--seeds", type=int)
    p.add_argument("--contenders", type=lambda s: tuple(s.split(",")), default=AUTOTUNE + OPTUNA + REFERENCE,
                   help=f"default: all but the pshe3 ablations ({', '.join(ABLATIONS)})")
    p.add_argument("--no-mixed", action="store_true")
    p.add_argument("--no-limits", action="store_true", help="run the GP contenders on the whole grid too")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--merge", action="store_true",
                   help="replace only these contenders' rows for these budgets in the output folder's "
                        "samplers_runs.csv, keep the others (contenders and budgets are independent: same problems "
                        "and seeds), and re-summarise")
    p.add_argument("--summarise", action="store_true",
                   help="run nothing: re-summarise and re-plot the output folder's samplers_runs.csv")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    if args.no_limits:
        cfg["limits"] = {}
    for k in ("functions", "dims", "instances", "budgets", "seeds"):
        if getattr(args, k) is not None:
            cfg[k] = getattr(args, k)
    unknown = [c for c in args.contenders if c not in CONTENDERS]
    if unknown:
        p.error(f"unknown contenders {unknown}; valid: {', '.join(CONTENDERS)}")
    out = _bench.out_dir(args)
    if args.summarise:
        import pandas as pd

        report(pd.read_csv(out / "samplers_runs.csv").to_dict("records"), out)
        return 0
    keys = [ProblemKey(f, d, i) for f in cfg["functions"] for d in cfg["dims"] for i in cfg["instances"]]
    if not args.no_mixed:
        keys += [ProblemKey(f, d, i, mixed=True) for f, d in cfg["mixed"] for i in cfg["instances"]]
    tasks, skipped = [], []
    for key in keys:
        for budget in cfg["budgets"]:
            for contender in args.contenders:
                if not _allowed(cfg["limits"].get(contender), key, budget):
                    skipped.append((key.name, budget, contender))
                    continue
                tasks += [(key, budget, contender, seed) for seed in range(cfg["seeds"])]
    # slow tasks first so the pool's tail is short
    tasks.sort(key=lambda t: (t[2] not in SLOW, -parse_budget(t[1], t[0].dim)[0] * parse_budget(t[1], t[0].dim)[1]))
    print(f"{len(tasks)} runs ({len(keys)} problems x {len(cfg['budgets'])} budgets x contenders x "
          f"{cfg['seeds']} seeds; {len(skipped) * cfg['seeds']} GP runs left out by the limits); "
          f"writing to {out}", flush=True)
    started = time.time()
    rows: list[dict[str, Any]] = []
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            for i, row in enumerate(pool.map(_task, tasks, chunksize=1)):
                rows.append(row)
                if (i + 1) % 200 == 0:
                    print(f"  {i + 1}/{len(tasks)} runs, {time.time() - started:.0f} s", flush=True)
    else:
        for i, t in enumerate(tasks):
            rows.append(_task(t))
            if (i + 1) % 200 == 0:
                print(f"  {i + 1}/{len(tasks)} runs, {time.time() - started:.0f} s", flush=True)
    elapsed = time.time() - started
    if args.merge and (out / "samplers_runs.csv").exists():
        import pandas as pd

        kept = pd.read_csv(out / "samplers_runs.csv")
        replaced = kept["contender"].isin(args.contenders) & kept["budget"].isin(cfg["budgets"])
        kept = kept[~replaced]
        rows += kept.to_dict("records")
        print(f"merged with {len(kept)} kept rows of other contenders or budgets from {out / 'samplers_runs.csv'}")
    rows.sort(key=lambda r: (r["budget"], r["problem"], r["contender"], r["seed"]))
    _bench.write_csv(out / "samplers_runs.csv", rows, RUN_COLUMNS)
    machine_file = "samplers_machine.csv"
    if args.merge:  # one record per merge, so earlier merges stay documented
        n = 1 + sum(1 for _ in out.glob("samplers_machine_merge*.csv"))
        machine_file = "samplers_machine_merge.csv" if n == 1 else f"samplers_machine_merge_{n}.csv"
    _bench.write_machine(out / machine_file, {
        "seeds": cfg["seeds"], "functions": cfg["functions"], "dims": cfg["dims"], "instances": cfg["instances"],
        "budgets": cfg["budgets"], "limits": cfg["limits"], "elapsed_s": round(elapsed, 1),
        "jobs": args.jobs})
    report(rows, out)
    print(f"\n{len(rows)} runs in {elapsed:.0f} s; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
