"""The one schema of run settings (autotune.schema): every way in takes the same settings, by the same rules,
with the same message; the command line, the API, a space file, the dashboard and the docs are built from it."""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autotune import cli
from autotune.api import prepare
from autotune.errors import AutotuneError, ConfigError, SearchSpaceError
from autotune.schema import BY_NAME, DASHBOARD_KEYS, FILE_KEYS, SETTINGS, Kind, markdown_table
from autotune.space.space_file import SpaceFile

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
OBJECTIVE = str(ROOT / "tests" / "programs" / "objectives.py") + ":quadratic"
#: the settings a space file, the command line and the API all take (options are per sampler or rule)
COMPARED = [s for s in SETTINGS if s.file and s.kind is not Kind.OPTIONS]


def _help(command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])
    return " ".join(out.getvalue().split())


def test_every_setting_is_a_keyword_of_run_and_an_option_of_run_and_submit_with_its_rule() -> None:
    keywords = inspect.signature(prepare).parameters
    for command in ("run", "submit"):
        text = _help(command)
        for s in SETTINGS:
            assert s.name in keywords, s.name
            assert f"{s.flag} {s.value_name} " in text, (command, s.flag)
            assert " ".join(s.help.split()) in text, (command, s.name)
            if s.kind is not Kind.OPTIONS:
                assert s.rule() in text, (command, s.name)


@pytest.mark.parametrize("name, rule", [
    ("rounds", "an integer >= 1"),
    ("seed", "an integer in [0, 4294967295]"),
    ("cpus_per_trial", "a number > 0"),
    ("gpus_per_trial", "a number >= 0"),
    ("quantile_fraction", "a number in (0, 0.5]"),
    ("time_budget", "a number of seconds > 0"),
    ("schedule", "'async' or 'rounds'"),
    ("early_stop", "one of 'none', 'asha', 'median'"),
])
def test_rules_read_as_the_messages_say_them(name: str, rule: str) -> None:
    assert BY_NAME[name].rule() == rule
    with pytest.raises(ConfigError, match=rf"^{name} must be {re.escape(rule)}, but got"):
        BY_NAME[name].check("bad")


def test_checks_normalise_names_and_refuse_what_is_not_the_kind() -> None:
    assert BY_NAME["sampler"].check(" TPE ") == "bayes"
    assert BY_NAME["evaluator"].check("Population-Based") == "pbt"
    assert BY_NAME["schedule"].check("ASYNC") == "async"
    for name, bad in [("rounds", True), ("rounds", 2.0), ("budget", math.nan), ("budget", math.inf), ("seed", -1),
                      ("gpus_per_trial", 1.5), ("keep_checkpoints", 0), ("metric", " ")]:
        with pytest.raises(ConfigError, match=f"^{name}"):
            BY_NAME[name].check(bad)
    assert BY_NAME["seed"].check(None) is None and BY_NAME["gpus_per_trial"].check(2) == 2
    with pytest.raises(ConfigError, match="^unknown sampler 'cma'; valid names: hazero, pshe2"):
        BY_NAME["sampler"].check("cma")
    assert BY_NAME["time_budget"].parse("30m") == 1800 and BY_NAME["time_budget"].parse("1.5h") == 5400


def test_the_docs_settings_table_is_the_schemas() -> None:
    page = (ROOT / "docs" / "settings.md").read_text()
    assert markdown_table() in page, "docs/settings.md: regenerate the table with python -m autotune.schema"


def test_the_dashboard_start_request_is_built_from_the_schema() -> None:
    from autotune.dashboard.models import StartRequest

    assert set(StartRequest.model_fields) == {"space", "name", *DASHBOARD_KEYS}
    doc = StartRequest.model_json_schema()["properties"]
    assert doc["sampler"]["anyOf"][0]["enum"] == list(BY_NAME["sampler"].choices)
    assert doc["rounds"]["anyOf"][0]["minimum"] == 1 and doc["cpus_per_trial"]["anyOf"][0]["exclusiveMinimum"] == 0
    assert StartRequest(space="s.yaml", sampler="TPE", rounds=2).sampler == "bayes"
    for bad, message in [({"rounds": 0}, "rounds must be an integer >= 1, but got 0"),
                         ({"seed": "3"}, "seed must be an integer in [0, 4294967295], but got '3'"),
                         ({"name": "a/b"}, "run name 'a/b' may not contain /")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            StartRequest(space="s.yaml", **bad)


def test_submit_passes_the_settings_it_was_given_to_the_jobs_run() -> None:
    argv = ["submit", "t.py", "--space", "s.yaml", "--address", "http://h:8265", "--output", "/o", "--rounds", "3",
            "--schedule", "ROUNDS", "--time-budget", "30m", "--sampler-option", "sigma0=0.25", "--resource", "tpu=1",
            "--early-stop", "asha", "--early-stop-option", "grace_period=2", "--seed", "7"]
    a = cli.build_parser().parse_args(argv)
    flags = cli._run_flags(a)  # noqa: SLF001
    again = cli.build_parser().parse_args(["run", "t.py", "--space", "s.yaml", *flags])
    assert cli._settings_of(again) == cli._settings_of(a)  # noqa: SLF001
    assert again.resource == a.resource == [("tpu", 1.0)]
    given = {k: v for k, v in cli._settings_of(a).items() if v is not None}  # noqa: SLF001
    assert given == {"rounds": 3, "schedule": "rounds", "time_budget": 1800.0, "sampler_options": {"sigma0": 0.25},
                     "early_stop": "asha", "early_stop_options": {"grace_period": 2}, "seed": 7}


# -- the property: the command line, the API and a space file accept or refuse alike -------------------------------
def _values(s: Any) -> st.SearchStrategy[Any]:
    """Values for a setting, most of them near its rule's edges, some of the wrong kind."""
    words = st.sampled_from(["nope", "ten", "Later"])
    if s.kind is Kind.CHOICE:
        return st.one_of(st.sampled_from([*s.choices, *(c.upper() for c in s.choices), *(a for a, _ in s.aliases)]),
                         words)
    if s.kind is Kind.TEXT:
        return st.one_of(st.sampled_from(["val_accuracy", "score"]), words)
    edges = [x for x in (s.low, s.high) if x is not None]
    numbers = st.one_of(st.sampled_from([*edges, *(x + d for x in edges for d in (-1, 1, -0.5, 0.25))]),
                        st.integers(-3, 12), st.floats(-2, 40, allow_nan=False).map(lambda x: round(x, 3)))
    return st.one_of(numbers, words) if s.kind is Kind.NUMBER else st.one_of(numbers, words, st.just(2.5))


@st.composite
def _settings(draw: Any) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(COMPARED), max_size=4, unique_by=lambda s: s.name))
    order = {s.name: i for i, s in enumerate(SETTINGS)}
    return {s.name: draw(_values(s)) for s in sorted(chosen, key=lambda s: order[s.name])}


def _cli_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        settings_, *_ = call()
    except AutotuneError as e:
        return "refused", str(e)
    return "accepted", {s.name: getattr(settings_, s.name) for s in COMPARED}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=_settings())
def test_the_command_line_the_api_and_a_space_file_accept_and_refuse_alike(tmp_path: Path, values: dict) -> None:
    out = str(tmp_path / "never-made")
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"params": PARAMS}))
    api = _outcome(lambda: prepare(OBJECTIVE, space=str(plain), output=out, name="x", **values))

    top = {k: v for k, v in values.items() if BY_NAME[k].file == "top"}
    doc = {**top, "defaults": {k: v for k, v in values.items() if k not in top}, "params": PARAMS}
    preset = tmp_path / "preset.yaml"
    preset.write_text(yaml.safe_dump(doc, sort_keys=False))
    from_file = _outcome(lambda: prepare(OBJECTIVE, space=str(preset), output=out, name="x"))

    argv = ["run", OBJECTIVE, "--space", str(plain), "--output", out, "--name", "x"]
    for key, value in values.items():
        argv += [BY_NAME[key].flag, _cli_text(value)]

    def through_the_cli() -> Any:
        a = cli.build_parser().parse_args(argv)
        a.script_args = ()
        return cli._run_cli(lambda *args, storage, executor, progress, **kw: prepare(*args, **kw), a, None)  # noqa: SLF001

    command_line = _outcome(through_the_cli)
    assert api[0] == from_file[0] == command_line[0], (values, api, from_file, command_line)
    if api[0] == "accepted":
        assert api[1] == from_file[1] == command_line[1]
    else:  # one line, the same words; the file's names the file and the key, the command line's the flag
        message = api[1]
        assert "\n" not in message
        assert from_file[1] in (f"{preset}: defaults: {message}", f"{preset}: {message}"), (from_file, message)
        assert command_line[1].endswith(message), (command_line, message)


def test_a_file_setting_refused_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"defaults": {"cpus_per_trial": 0}, "params": PARAMS}))
    with pytest.raises(SearchSpaceError, match=rf"^{path}: defaults: cpus_per_trial must be a number > 0, but got 0$"):
        prepare(OBJECTIVE, space=str(path))
    with pytest.raises(SearchSpaceError, match=r"unknown key 'popsise' \(did you mean 'popsize'\?\)"):
        SpaceFile.from_dict({"defaults": {"popsise": 3}, "params": PARAMS}, source="s.yaml")
    assert set(FILE_KEYS) == {s.name for s in SETTINGS if s.file == "defaults"}
