"""Property-based bad input: malformed space files and CLI arguments always get one clear error line,
never a traceback, and never leave a run folder behind."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotune.cli import main
from autotune.errors import SearchSpaceError
from autotune.space import load_space
from conftest import objective

KEYS = ["type", "low", "high", "log", "step", "init", "choices", "name", "init_value", "greater_than",
        "lower_than", "params", "param_list", "metric", "mode", "trial", "budget", "fixed", "defaults", "hihg",
        "rounds", "cpus_per_trial", "keep_checkpoints", "sampler_options"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8), st.sampled_from(["float", "int", "categorical", "max", "min", "log"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                      max_leaves=12)
documents = st.one_of(values, st.dictionaries(st.sampled_from(["params", "param_list"]),
                                              st.one_of(st.lists(st.dictionaries(st.sampled_from(KEYS), values,
                                                                                 max_size=6), max_size=3),
                                                        st.dictionaries(st.text(min_size=1, max_size=5),
                                                                        st.dictionaries(st.sampled_from(KEYS), values,
                                                                                        max_size=6), max_size=3)),
                                              min_size=1))
raw_text = st.text(alphabet=st.sampled_from(list("ab:-[]{}\n #'\"1.e\t&*!|>")), max_size=60)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.one_of(documents.map(lambda d: yaml.safe_dump(d, allow_unicode=True)), raw_text))
def test_any_space_file_loads_or_fails_with_a_clear_error(tmp_path, doc):
    path = tmp_path / "space.yaml"
    path.write_text(doc)
    try:
        space = load_space(path)
    except SearchSpaceError as e:
        message = str(e)
        assert "space.yaml" in message, message  # names the file
        assert "\n" not in message.strip() or message.count("\n") < 3
        return
    assert space.dim == len(space.params) >= 1  # what loads is a usable space


BAD_OPTIONS = {
    "--popsize": ["0", "-3", "many", "1.5"],
    "--rounds": ["0", "-1", "x"],
    "--mode": ["up", "", "MAXIMISE"],
    "--sampler": ["nope", "cma-es-2", ""],
    "--evaluator": ["nope", "asha"],
    "--cpus-per-trial": ["-1", "nan", "one"],
    "--gpus-per-trial": ["-0.5", "inf", "1.5"],
    "--trial-timeout": ["0", "-5", "soon"],
    "--budget": ["0", "-2", "lots"],
    "--resource": ["novalue", "=3", "x=abc"],
    "--space": ["missing.yaml"],
    "--sampler-option": ["novalue", "=3", "bogus=1"],
    "--output": ["space.yaml"],  # a file
}
GOOD_OPTIONS = {"--seed": ["1", "7"], "--metric": ["score"], "--name": ["r1"], "--sampler": ["random", "tpe"],
                "--evaluator": ["full", "pbt"], "--popsize": ["2"], "--rounds": ["1"]}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_bad_cli_arguments_fail_in_one_line_before_anything_is_created(tmp_path, data, xy_space):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({**xy_space, "trial": objective("quadratic")}))
    bad = data.draw(st.dictionaries(st.sampled_from(sorted(BAD_OPTIONS)), st.none(), min_size=1, max_size=3))
    good = data.draw(st.dictionaries(st.sampled_from(sorted(set(GOOD_OPTIONS) - set(bad))), st.none(), max_size=4))
    args = ["run", "--space", str(space), "--executor", "local"]
    if "--output" not in bad:
        args += ["--output", str(tmp_path / "runs")]
    for opt in good:
        args += [opt, data.draw(st.sampled_from(GOOD_OPTIONS[opt]))]
    for opt in bad:
        args += [opt, data.draw(st.sampled_from(BAD_OPTIONS[opt]))]
    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(args)
    finally:
        os.chdir(cwd)
    lines = err.getvalue().strip().splitlines()
    assert code == 2, (args, err.getvalue())
    assert len(lines) == 1 and lines[0].startswith("autotune: error:"), (args, err.getvalue())
    assert "Traceback" not in err.getvalue()
    runs = Path(tmp_path / "runs")
    assert not runs.exists() or not any(runs.iterdir()), f"a run folder was left behind by {args}"


def test_space_files_are_data_never_code(tmp_path):
    marker = tmp_path / "pwned"
    for doc in (f'!!python/object/apply:os.system ["touch {marker}"]',
                f'params: !!python/object/apply:os.system ["touch {marker}"]',
                f'params:\n  x: {{type: float, low: 0, high: 1, init: !!python/object/apply:os.system ["touch {marker}"]}}'):
        path = tmp_path / "evil.yaml"
        path.write_text(doc)
        try:
            load_space(path)
        except SearchSpaceError as e:
            assert "evil.yaml" in str(e)
        else:
            raise AssertionError("a python tag in a space file was accepted")
        assert not marker.exists()


def test_a_trial_cannot_overwrite_another_trials_checkpoint(tmp_path, xy_space):
    """Checkpoints a trial reports from outside its folder are copied in; the other folder is untouched."""
    import autotune
    from autotune.trial_runner import hash_path

    first = autotune.run(objective("big_checkpoint"), space={**xy_space, "fixed": {"mb": 0.01}}, sampler="random",
                         evaluator="full", rounds=1, popsize=1, seed=0, output=tmp_path, name="a", executor="local")
    victim = tmp_path / "a" / first.records[0].checkpoint
    before = hash_path(victim)
    space = {**xy_space, "fixed": {"steal": str(victim)}}
    second = autotune.run(objective("steal_checkpoint"), space=space, sampler="random", evaluator="full", rounds=1,
                          popsize=2, seed=0, output=tmp_path, name="b", executor="local")
    for r in second.records:
        assert r.status == "completed" and r.checkpoint == f"{r.trial_dir}/checkpoint"
        assert (tmp_path / "b" / r.checkpoint / "weights.bin").read_bytes() == b"scribbled"  # its own copy
    assert hash_path(victim) == before  # the other trial's checkpoint is untouched


def test_a_trial_function_may_come_from_an_import_or_a_guarded_block(tmp_path):
    """The up-front check reads the file without running it: imported, guarded and star-imported names
    count as defined; a name bound nowhere is refused."""
    from autotune.errors import TrialError
    from autotune.targets import parse_target

    (tmp_path / "entry.py").write_text(
        "from json import loads as objective\n"
        "try:\n    import numpy\nexcept ImportError:\n    pass\nelse:\n    def guarded(config, trial):\n        return 1\n"
        "class Trial:\n    pass\n")
    for name in ("objective", "guarded", "Trial"):
        assert parse_target(f"{tmp_path / 'entry.py'}:{name}").ref.endswith(f":{name}")
    with pytest.raises(TrialError, match="defines no function 'missing'"):
        parse_target(f"{tmp_path / 'entry.py'}:missing")
    (tmp_path / "star.py").write_text("from os.path import *\n")
    assert parse_target(f"{tmp_path / 'star.py'}:join").kind == "function"
