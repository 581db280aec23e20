"""Script trials in AutoDL Finetuner's protocol: flags in, report_final_result out."""

from __future__ import annotations

import autotune
from conftest import PROGRAMS


def test_script_trials_report_and_warm_start(tmp_path):
    space = {
        "param_list": [
            {"name": "x", "type": "float", "init_value": 0.5, "greater_than": 0.0, "lower_than": 1.0},
            {"name": "lr", "type": "float", "init_value": 0.01, "greater_than": 0.001, "lower_than": 0.1},
        ]
    }
    result = autotune.run(str(PROGRAMS / "script_trial.py"), space=space, metric="score", sampler="random",
                          evaluator="pbt", rounds=2, popsize=2, seed=0, output=tmp_path, name="script",
                          executor="local")
    assert len(result.records) == 4
    assert all(r.status == "completed" for r in result.records), [r.reason for r in result.records]
    for r in result.records:
        assert r.value is not None and r.checkpoint.endswith("checkpoint")
    run_dir = tmp_path / "script"
    by_id = {r.trial_id: r for r in result.records}
    for child in (r for r in result.records if r.round == 1):
        parent = by_id[child.parent_id]
        saved = float((run_dir / parent.checkpoint / "params.txt").read_text())
        mine = float((run_dir / child.checkpoint / "params.txt").read_text())
        assert mine == saved + child.config["x"]  # the script got --model_path=parent's folder
        log = (run_dir / child.trial_dir / "trial.log").read_text()
        assert f"--model_path={run_dir.resolve() / parent.checkpoint}" in log


def test_a_script_runs_where_autotune_started_and_a_crash_says_why(tmp_path, monkeypatch):
    """Relative paths in a script's arguments mean what they meant where `autotune run` started (as with
    PaddleHub); a script that exits with an error has its last output line in the failure reason."""
    import pytest

    from autotune.errors import TrialError

    space = {"params": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "metric": "score"}
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "data" / "offset.txt").write_text("10")
    monkeypatch.chdir(tmp_path / "proj")
    result = autotune.run(str(PROGRAMS / "script_trial.py"), space=space, sampler="random", evaluator="full",
                          rounds=1, popsize=2, seed=0, output=tmp_path / "runs", name="rel", executor="local",
                          script_args=("--data=data/offset.txt",))
    assert [r.status for r in result.records] == ["completed", "completed"], [r.reason for r in result.records]
    assert all(r.value > 9 for r in result.records)  # the offset file was read

    monkeypatch.chdir(tmp_path)  # no data/ here
    with pytest.raises(TrialError):
        autotune.run(str(PROGRAMS / "script_trial.py"), space=space, sampler="random", evaluator="full",
                     rounds=1, popsize=2, seed=0, output=tmp_path / "runs", name="lost", executor="local",
                     script_args=("--data=data/offset.txt",))
    for r in autotune.load(tmp_path / "runs" / "lost").records:
        assert r.status == "failed"
        assert r.reason.startswith("script exited with code 1: FileNotFoundError:") and "data/offset.txt" in r.reason


def test_report_outside_a_trial_is_a_clear_error():
    import pytest

    from autotune.errors import TrialError

    with pytest.raises(TrialError, match="not inside an autotune trial"):
        autotune.report_final_result(1.0)
