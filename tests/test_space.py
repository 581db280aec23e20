"""Search spaces: loading (native and PaddleHub), errors, the unit-cube encoding and Optuna distributions."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from autotune.errors import SearchSpaceError
from autotune.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SpaceFile,
    load_space,
    load_space_file,
)

NATIVE = """\
# what it tunes, for which trial
trial: ../trials/image_classification.py:objective
metric: val_accuracy
mode: max
budget: 2
fixed: {labels_per_class: 100}
defaults: {rounds: 10, popsize: 5}
params:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, init: 1.0e-3}
  batch_size: {type: int, low: 16, high: 128, log: true, init: 32}
  epochs: {type: int, low: 1, high: 10, step: 1}
  optimizer: {type: categorical, choices: [adam, sgd, adamw], init: adam}
"""

PADDLEHUB = """\
param_list:
- name : learning_rate
  init_value : 0.001
  type : float
  lower_than : 0.05
  greater_than : 0.000005
- name : batch_size
  init_value : 12
  type : int
  lower_than : 20
  greater_than : 10
- name : warmup_prop
  init_value : 0.1
  type : float
  lower_than : 0.2
  greater_than : 0.0
"""


def write(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / "search_spaces" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def space_of(**params: dict[str, Any]) -> SearchSpace:
    return SearchSpace.from_dict({"params": params})


# -- loading --------------------------------------------------------------------------------------
def test_native_file_loads_every_field(tmp_path: Path) -> None:
    path = write(tmp_path, NATIVE)
    file = load_space_file(path)
    space = file.space
    assert load_space(path) == space
    assert space.names == ("learning_rate", "batch_size", "epochs", "optimizer")
    assert space.params[0] == FloatParam("learning_rate", 1e-4, 1e-1, log=True, init=1e-3)
    assert space.params[1] == IntParam("batch_size", 16, 128, log=True, init=32)
    assert space.params[2] == IntParam("epochs", 1, 10)
    assert space.params[3] == CategoricalParam("optimizer", ("adam", "sgd", "adamw"), init="adam")
    assert (file.metric, file.mode, file.budget) == ("val_accuracy", "max", 2)
    assert file.fixed == {"labels_per_class": 100}
    assert file.defaults == {"rounds": 10, "popsize": 5}
    assert space.source == file.source == str(path)
    assert space.dim == 4
    expected_trial = (tmp_path / "trials" / "image_classification.py").resolve()
    assert file.trial == f"{expected_trial}:objective"


def test_params_may_be_a_list_of_named_items() -> None:
    space = SearchSpace.from_dict(
        {"params": [{"name": "x", "type": "float", "low": 0, "high": 1}, {"name": "k", "type": "int", "low": 1, "high": 3}]}
    )
    assert space.names == ("x", "k")
    assert isinstance(space.params[0], FloatParam) and isinstance(space.params[1], IntParam)


@pytest.mark.parametrize(
    ("trial", "expected"),
    [
        ("pkg.module:objective", "pkg.module:objective"),
        ("pkg.module", "pkg.module"),
        ("train.py", "{dir}/train.py"),
        ("../trials/x.py", "{parent}/trials/x.py"),
        ("sub/x.py:main", "{dir}/sub/x.py:main"),
        ("/abs/x.py:main", "/abs/x.py:main"),
    ],
)
def test_trial_paths_resolve_relative_to_the_space_file(tmp_path: Path, trial: str, expected: str) -> None:
    path = write(tmp_path, f"trial: {trial}\nparams: {{x: {{type: float, low: 0, high: 1}}}}\n")
    assert load_space_file(path).trial == expected.format(dir=path.parent.resolve(), parent=tmp_path.resolve())


def test_paddlehub_file_loads_unchanged(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, PADDLEHUB, "hparam.yaml"))
    lr, bs, warmup = space.params
    # 5e-6 .. 5e-2 spans four decades: log scale, so the range above 5e-4 is not 99% of the search
    assert lr == FloatParam("learning_rate", 5e-6, 0.05, log=True, init=0.001)
    assert bs == IntParam("batch_size", 10, 20, init=12)  # greater_than/lower_than are inclusive
    assert warmup == FloatParam("warmup_prop", 0.0, 0.2, log=False, init=0.1)  # low 0: linear
    assert space.decode(np.array([0.5, 0.0, 0.0]))["learning_rate"] == pytest.approx(math.sqrt(5e-6 * 0.05))
    assert space.decode(np.array([0.0, 0.0, 0.0]))["batch_size"] == 10
    assert space.decode(np.array([0.0, 1.0, 0.0]))["batch_size"] == 20


@pytest.mark.parametrize(
    ("bounds", "log_line", "expected"),
    [
        ((1e-3, 0.1), "", False),  # exactly two decades: linear
        ((1e-3, 0.1001), "", True),  # a little more: log
        ((1e-5, 1.0), "  log: false\n", False),  # the file says otherwise
        ((0.1, 0.5), "  log: true\n", True),
    ],
)
def test_paddlehub_two_decade_log_rule(tmp_path: Path, bounds: tuple[float, float], log_line: str, expected: bool) -> None:
    text = f"param_list:\n- name: lr\n  type: float\n  greater_than: {bounds[0]!r}\n  lower_than: {bounds[1]!r}\n{log_line}"
    (param,) = load_space(write(tmp_path, text)).params
    assert isinstance(param, FloatParam) and param.log is expected


def test_paddlehub_with_autotune_extras() -> None:
    data = {"metric": "acc", "mode": "MAX", "param_list": [{"name": "n", "type": "int", "greater_than": 1, "lower_than": 4}]}
    file = SpaceFile.from_dict(data)
    assert (file.metric, file.mode) == ("acc", "max")
    assert file.space.params == (IntParam("n", 1, 4),)


def test_to_dict_round_trips_both_forms(tmp_path: Path) -> None:
    for text in (NATIVE, PADDLEHUB):
        file = load_space_file(write(tmp_path, text))
        again = SpaceFile.from_dict(file.to_dict())
        assert again == file
        assert again.trial == file.trial
        assert SearchSpace.from_dict(file.space.to_dict()) == file.space


def test_yaml_1e_minus_4_without_dot_is_read_as_a_number(tmp_path: Path) -> None:
    # YAML 1.1 reads 1e-4 as a string; a space file author means a number
    space = load_space(write(tmp_path, "params:\n  lr: {type: float, low: 1e-5, high: 1e-1, log: true}\n"))
    assert space.params[0] == FloatParam("lr", 1e-5, 0.1, log=True)


# -- errors ---------------------------------------------------------------------------------------
BAD_PARAMS = [
    ("lr: {type: float, low: 0.1, hihg: 1}", ["parameter 'lr'", "unknown key 'hihg'", "did you mean 'high'?",
                                               "expected one of: high, init, log, low, type"]),
    ("lr: {type: float, low: 1, high: 1}", ["parameter 'lr'", "low < high must hold", "low=1.0, high=1.0"]),
    ("lr: {type: float, low: 2, high: 1}", ["parameter 'lr'", "low < high"]),
    ("n: {type: int, low: 5, high: 5}", ["parameter 'n'", "low < high must hold"]),
    ("lr: {type: float, low: 0, high: 1, log: true}", ["parameter 'lr'", "log scale needs low > 0", "low=0.0"]),
    ("n: {type: int, low: 0, high: 8, log: true}", ["parameter 'n'", "log scale needs low >= 1"]),
    ("lr: {type: float, low: 0, high: 1, init: 2}", ["parameter 'lr'", "init=2.0 is outside the bounds [0.0, 1.0]"]),
    ("n: {type: int, low: 1, high: 9, step: 2, init: 4}", ["parameter 'n'", "init=4 is not on the grid"]),
    ("n: {type: int, low: 1, high: 10, step: 2}", ["parameter 'n'", "must be a multiple of step (2)", "high=9"]),
    ("n: {type: int, low: 1.5, high: 10}", ["parameter 'n'", "low must be an integer, but got 1.5"]),
    ("o: {type: categorical, choices: []}", ["parameter 'o'", "choices must not be empty"]),
    ("o: {type: categorical, choices: [a, b, a]}", ["parameter 'o'", "choice 'a' appears twice"]),
    ("o: {type: categorical, choices: [a, b], init: c}", ["parameter 'o'", "init='c' is not one of the choices"]),
    ("o: {type: categorical, choices: a}", ["parameter 'o'", "choices must be a list"]),
    ("lr: {type: flaot, low: 0, high: 1}", ["parameter 'lr'", "unknown type 'flaot'", "did you mean 'float'?"]),
    ("lr: {low: 0, high: 1}", ["parameter 'lr'", "missing key 'type'", "expected one of: categorical, float, int"]),
    ("lr: {tpye: float, low: 0, high: 1}", ["parameter 'lr'", "unknown key 'tpye'", "did you mean 'type'?"]),
    ("lr: {type: float, low: 0}", ["parameter 'lr'", "missing key 'high'"]),
    ("lr: {type: float, low: zero, high: 1}", ["parameter 'lr'", "low must be a number, but got 'zero'"]),
    ("lr: 0.1", ["parameter 'lr'", "expected a mapping like {type: float"]),
]


@pytest.mark.parametrize(("line", "fragments"), BAD_PARAMS)
def test_bad_parameters_name_file_parameter_and_expectation(tmp_path: Path, line: str, fragments: list[str]) -> None:
    path = write(tmp_path, f"params:\n  {line}\n")
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


BAD_DOCUMENTS = [
    ("- just\n- a list\n", ["expected a mapping with a 'params' key", "got a list"]),
    ("", ["got an empty document"]),
    ("metric: acc\n", ["missing key 'params'"]),
    ("parms: {}\n", ["unknown key 'parms'", "did you mean 'params'?", "expected one of: budget, defaults"]),
    ("params: {x: {type: float, low: 0, high: 1}}\nmode: maximise\n", ["mode must be 'min' or 'max', but got 'maximise'"]),
    ("params: {x: {type: float, low: 0, high: 1}}\nbudget: -1\n", ["budget must be a number > 0, but got -1"]),
    ("params: {x: {type: float, low: 0, high: 1}}\ndefaults: {rouns: 3}\n",
     ["defaults: unknown key 'rouns'", "did you mean 'rounds'?"]),
    ("params: {x: {type: float, low: 0, high: 1}}\nfixed: {x: 3}\n", ["fixed: 'x' is also a searched parameter"]),
    ("params: {x: {type: float, low: 0, high: 1}}\nfixed: {when: 2020-01-01}\n", ["fixed: 'when'", "expected a YAML scalar"]),
    ("params: {}\n", ["no parameters to search"]),
    ("params:\n  x: {type: float, low: 0, high: 1}\n  x: {type: int, low: 0, high: 3}\n",
     ["duplicate key 'x' at line 3 (first at line 2)"]),
    ("params:\n- {name: x, type: float, low: 0, high: 1}\n- {name: x, type: int, low: 0, high: 3}\n",
     ["parameter 'x': duplicate name"]),
    ("params:\n  x: {type: float, low: 0, high: [1\n", ["invalid YAML at line 3"]),
    ("params:\n\tx: 1\n", ["invalid YAML at line 2"]),
    ("param_list:\n- {name: lr, type: float, greater_than: 0.1, lower_than: 0.01}\n",
     ["parameter 'lr'", "greater_than < lower_than must hold"]),
    ("param_list:\n- {name: lr, type: float, greater_than: 0, lower_than: 1, init_value: 3}\n",
     ["parameter 'lr'", "init_value=3.0 is outside the bounds"]),
    ("param_list:\n- {name: lr, type: float, greater_than: 0, lower_than: 1, log: true}\n",
     ["parameter 'lr'", "log scale needs greater_than > 0"]),
    ("param_list:\n- {name: lr, type: float, greater_than: 0, lower_thn: 1}\n",
     ["parameter 'lr'", "unknown key 'lower_thn'", "did you mean 'lower_than'?"]),
    ("param_list:\n- {name: o, type: str, greater_than: 0, lower_than: 1}\n",
     ["parameter 'o'", "expected int or float"]),
    ("param_list:\n- {name: a, type: int, greater_than: 0, lower_than: 3}\n- {name: a, type: int, greater_than: 0, lower_than: 3}\n",
     ["parameter 'a': duplicate name"]),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_DOCUMENTS)
def test_bad_documents_name_the_file_and_what_was_expected(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SearchSpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SearchSpaceError, match="cannot read the space file"):
        load_space(tmp_path / "nope.yaml")


def test_yaml_tags_are_never_executed(tmp_path: Path) -> None:
    path = write(tmp_path, "params: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SearchSpaceError, match="invalid YAML"):
        load_space(path)


def test_dict_without_source_says_space() -> None:
    with pytest.raises(SearchSpaceError, match=r"^<space>: parameter 'x': low < high"):
        space_of(x={"type": "float", "low": 1, "high": 0})


def test_params_built_in_python_are_checked_too() -> None:
    with pytest.raises(SearchSpaceError, match="parameter 'x': a log scale needs low > 0"):
        FloatParam("x", 0.0, 1.0, log=True)
    with pytest.raises(SearchSpaceError, match="duplicate name"):
        SearchSpace((FloatParam("x", 0, 1), IntParam("x", 0, 3)))


# -- encoding -------------------------------------------------------------------------------------
MIXED = space_of(
    lr={"type": "float", "low": 1e-5, "high": 1.0, "log": True, "init": 1e-3},
    drop={"type": "float", "low": -1.0, "high": 0.5},
    layers={"type": "int", "low": 1, "high": 4},
    width={"type": "int", "low": 8, "high": 512, "log": True, "init": 64},
    every={"type": "int", "low": 0, "high": 100, "step": 25, "init": 75},
    opt={"type": "categorical", "choices": ["adam", 1, 2.5, True, None], "init": 2.5},
)


def test_decode_returns_plain_python_values() -> None:
    config = MIXED.decode(np.full(MIXED.dim, 0.3))
    assert [type(v) for v in config.values()] == [float, float, int, int, int, type(config["opt"])]
    assert type(config["opt"]) in (str, int, float, bool, type(None))


def test_cube_corners_decode_to_the_bounds() -> None:
    low, high = MIXED.decode(np.zeros(MIXED.dim)), MIXED.decode(np.ones(MIXED.dim))
    assert low == {"lr": 1e-5, "drop": -1.0, "layers": 1, "width": 8, "every": 0, "opt": "adam"}
    assert high == {"lr": 1.0, "drop": 0.5, "layers": 4, "width": 512, "every": 100, "opt": None}


def test_points_outside_the_cube_are_clipped_and_nan_refused() -> None:
    assert MIXED.decode(np.full(MIXED.dim, -3.0)) == MIXED.decode(np.zeros(MIXED.dim))
    with pytest.raises(SearchSpaceError, match="NaN"):
        MIXED.decode(np.full(MIXED.dim, np.nan))
    with pytest.raises(SearchSpaceError, match=r"shape \(6,\)"):
        MIXED.decode(np.zeros(3))


def test_init_point_and_config() -> None:
    point = MIXED.init_point()
    assert point[1] == 0.5  # no init: the centre
    assert point[2] == 0.5  # int without init: the centre of the cube range
    assert point[5] == pytest.approx(0.5)  # 2.5 is the third of five choices: the centre of its cell
    assert point[4] == pytest.approx(3.5 / 5)  # 75 is the fourth of five grid values
    assert MIXED.init_config() == {"lr": 1e-3, "drop": MIXED.decode(point)["drop"], "layers": 3, "width": 64,
                                   "every": 75, "opt": 2.5}
    assert MIXED.decode(point)["width"] == 64 and MIXED.decode(point)["lr"] == pytest.approx(1e-3)


def test_log_scale_spreads_a_learning_rate_over_its_decades() -> None:
    space = space_of(lr={"type": "float", "low": 5e-6, "high": 0.05, "log": True})
    samples = [space.decode(np.array([u]))["lr"] for u in np.linspace(0, 1, 1001)]
    share_above = np.mean(np.array(samples) > 5e-4)
    assert share_above == pytest.approx(0.5, abs=0.01)  # linear mapping would put 99% there


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "int", "low": 1, "high": 4}, {1: 0.25, 2: 0.25, 3: 0.25, 4: 0.25}),
        ({"type": "int", "low": 0, "high": 10, "step": 5}, {0: 1 / 3, 5: 1 / 3, 10: 1 / 3}),
        ({"type": "categorical", "choices": ["a", "b", "c", "d"]}, {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}),
        # log: each integer's share is the width of k-0.5..k+0.5 on the log scale
        ({"type": "int", "low": 1, "high": 3, "log": True},
         {k: math.log((k + 0.5) / (k - 0.5)) / math.log(3.5 / 0.5) for k in (1, 2, 3)}),
    ],
)
def test_every_value_gets_its_fair_share_of_the_cube(spec: dict[str, Any], expected: dict[Any, float]) -> None:
    space = space_of(x=spec)
    rng = np.random.default_rng(0)
    values = [space.decode(u)["x"] for u in rng.random((20000, 1))]
    for value, share in expected.items():
        assert values.count(value) / len(values) == pytest.approx(share, abs=0.015)
    assert set(values) == set(expected)


def test_encode_validates_and_names_the_parameter() -> None:
    config = MIXED.init_config()
    with pytest.raises(SearchSpaceError, match="parameter 'layers': 5 is not one of 1, 2, ..., 4"):
        MIXED.encode({**config, "layers": 5})
    with pytest.raises(SearchSpaceError, match="parameter 'opt': 'sgd' is not one of the choices"):
        MIXED.encode({**config, "opt": "sgd"})
    with pytest.raises(SearchSpaceError, match="parameter 'drop': missing"):
        MIXED.encode({k: v for k, v in config.items() if k != "drop"})
    with pytest.raises(SearchSpaceError, match="'extra' is not a parameter"):
        MIXED.encode({**config, "extra": 1})
    with pytest.raises(SearchSpaceError, match="parameter 'layers': expected an integer"):
        MIXED.encode({**config, "layers": 2.5})


def test_bool_and_int_choices_stay_apart() -> None:
    space = space_of(c={"type": "categorical", "choices": [1, True, 0, False]})
    for choice in (1, True, 0, False):
        out = space.decode(space.encode({"c": choice}))["c"]
        assert out == choice and type(out) is type(choice)


def test_optuna_distributions() -> None:
    dists = MIXED.to_optuna_distributions()
    assert dists["lr"] == FloatDistribution(1e-5, 1.0, log=True)
    assert dists["drop"] == FloatDistribution(-1.0, 0.5)
    assert dists["width"] == IntDistribution(8, 512, log=True)
    assert dists["every"] == IntDistribution(0, 100, step=25)
    # 1 and True compare equal in Python, so Optuna sees JSON labels that keep them apart
    assert dists["opt"] == CategoricalDistribution(('"adam"', "1", "2.5", "true", "null"))
    for u in (0.0, 0.37, 1.0):  # every config the cube decodes to is inside the distributions, both ways
        config = MIXED.decode(np.full(MIXED.dim, u))
        params = MIXED.to_optuna_params(config)
        for name, dist in dists.items():
            assert dist._contains(dist.to_internal_repr(params[name]))
        assert MIXED.from_optuna_params(params) == config


# -- property tests -------------------------------------------------------------------------------
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
choice_values = st.one_of(st.text(max_size=5), st.integers(-5, 5), st.booleans(), st.none(),
                          st.floats(-10, 10, allow_nan=False))


@st.composite
def params(draw: st.DrawFn, name: str) -> Any:
    kind = draw(st.sampled_from(["float", "float-log", "int", "int-log", "categorical"]))
    if kind == "float":
        low = draw(finite)
        high = draw(finite.filter(lambda h: h > low + 1e-6 * max(1.0, abs(low))))
        return FloatParam(name, low, high)
    if kind == "float-log":
        low = draw(st.floats(1e-8, 1e3))
        return FloatParam(name, low, low * draw(st.floats(1.001, 1e8)), log=True)
    if kind == "int":
        low, step, cells = draw(st.integers(-1000, 1000)), draw(st.integers(1, 50)), draw(st.integers(1, 200))
        return IntParam(name, low, low + step * cells, step=step)
    if kind == "int-log":
        low = draw(st.integers(1, 1000))
        return IntParam(name, low, low + draw(st.integers(1, 100000)), log=True)
    # distinct as the space sees them: True is not 1, but 1 and 1.0 are the same choice
    unique = draw(st.lists(choice_values, min_size=1, max_size=6, unique_by=lambda c: (
        type(c).__name__ if isinstance(c, (bool, str, type(None))) else "number", c)))
    return CategoricalParam(name, tuple(unique))


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    n = draw(st.integers(1, 5))
    return SearchSpace(tuple(draw(params(f"p{i}")) for i in range(n)))


def draw_value(draw: st.DrawFn, p: Any) -> Any:
    if isinstance(p, FloatParam):
        return draw(st.floats(p.low, p.high))
    if isinstance(p, IntParam):
        return p.low + p.step * draw(st.integers(0, (p.high - p.low) // p.step))
    return draw(st.sampled_from(p.choices))


def assert_valid(space: SearchSpace, config: dict[str, Any]) -> None:
    assert space.validate_config(config) == config
    for p in space.params:
        value = config[p.name]
        if isinstance(p, FloatParam):
            assert type(value) is float and p.low <= value <= p.high
        elif isinstance(p, IntParam):
            assert type(value) is int and p.low <= value <= p.high and (value - p.low) % p.step == 0
        else:
            assert any(type(value) is type(c) and value == c for c in p.choices)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_of_encode_is_the_config(data: st.DataObject) -> None:
    space = data.draw(spaces())
    config = {p.name: draw_value(data.draw, p) for p in space.params}
    point = space.encode(config)
    assert point.shape == (space.dim,) and np.all((point >= 0) & (point <= 1))
    back = space.decode(point)
    for p in space.params:
        if isinstance(p, FloatParam):  # floats round-trip up to floating-point rounding
            scale = abs(config[p.name]) if p.log else max(abs(p.low), abs(p.high))
            tol = 1e-12 * scale
            assert abs(back[p.name] - config[p.name]) <= tol
        else:  # ints and choices exactly, type included
            assert back[p.name] == config[p.name] and type(back[p.name]) is type(config[p.name])
    assert_valid(space, back)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_every_point_of_the_cube_decodes_to_a_valid_config(data: st.DataObject) -> None:
    space = data.draw(spaces())
    unit = st.one_of(st.sampled_from([0.0, 1.0, 0.5, np.nextafter(1.0, 0.0), 5e-324]), st.floats(0.0, 1.0))
    point = np.array([data.draw(unit) for _ in range(space.dim)])
    config = space.decode(point)
    assert_valid(space, config)
    # and the config's own point lies in the cube and decodes to it again
    assert space.decode(space.encode(config)).keys() == config.keys()


def test_yaml_aliases_cannot_blow_up_or_loop(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]  # 9**9 leaves unfolded
    bomb = "fixed:\n" + "".join(f"  {line}\n" for line in levels) + "params: {x: {type: float, low: 0, high: 1}}\n"
    with pytest.raises(SearchSpaceError, match=r"fixed: 'a\d': the value unfolds to more than 100000 items"):
        load_space(write(tmp_path, bomb))  # refused at once, without unfolding it
    shared = "fixed: {a: &a [1, 2], b: [*a, *a]}\nparams: {x: {type: float, low: 0, high: 1}}\n"
    assert load_space_file(write(tmp_path, shared)).fixed == {"a": [1, 2], "b": [[1, 2], [1, 2]]}
    loop = "fixed: {me: &me [1, *me]}\nparams: {x: {type: float, low: 0, high: 1}}\n"
    with pytest.raises(SearchSpaceError, match="fixed: 'me': a value contains itself"):
        load_space(write(tmp_path, loop))


def test_the_init_point_decodes_to_the_init_values_exactly() -> None:
    """Users see (and scripts get) `--learning_rate=0.001`, not its round trip 0.0010000000000000002."""
    space = SearchSpace.from_dict({"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 0.1, "log": True, "init": 1e-3},
        "x": {"type": "float", "low": 0.0, "high": 1.0, "init": 0.1},
        "wd": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True, "init": 3e-4}}})
    assert space.decode(space.init_point()) == {"lr": 0.001, "x": 0.1, "wd": 0.0003}
    assert repr(space.decode(space.init_point())["lr"]) == "0.001"


def test_parameters_at_the_top_level_get_a_hint_to_use_params() -> None:
    with pytest.raises(SearchSpaceError, match=r"unknown key 'lr'; it looks like a parameter: put parameters under 'params:'"):
        SearchSpace.from_dict({"lr": {"type": "float", "low": 0.0, "high": 1.0}})


def test_a_search_space_holds_parameters_only_and_refuses_run_settings() -> None:
    data = {"metric": "acc", "fixed": {"k": 1}, "params": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False}}}
    with pytest.raises(SearchSpaceError, match=r"^<space>: 'metric', 'fixed' are run settings, not part of a "
                                               r"SearchSpace; read a whole space file with SpaceFile.from_dict"):
        SearchSpace.from_dict(data)
    file = SpaceFile.from_dict(data)
    assert file.space == SearchSpace.from_dict({"params": data["params"]})
    assert file.to_dict() == data
    assert SpaceFile(file.space).to_dict() == {"params": data["params"]}  # a bare space presets nothing


def test_the_space_module_does_not_import_the_loader() -> None:
    """Samplers and the driver import the space; reading YAML files is the loader's job alone."""
    code = ("import sys, autotune.space.space, autotune.space.space_file; "
            "assert 'autotune.space.loader' not in sys.modules and 'yaml' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
