"""A feature that needs one of autotune's extras says which one, in one line, when it is used.

The bundled text trial needs the ``text`` extra (transformers, the MiniLM weights, the BBC corpus) and
the EfficientNet model the ``image`` extra. Without them a search on that trial must stop with one
line naming the extra to install, never a traceback, while everything else keeps working.
"""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import REPO, cli, error_line

from autotune.errors import AutotuneError, MissingExtraError

TRIALS = REPO / "trials"

#: put first on PYTHONPATH: makes the named packages unimportable, in the driver and in every worker
BLOCKER = """
import sys
from importlib.abc import MetaPathFinder

class _Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None

sys.meta_path.insert(0, _Blocked())
"""


def _trial_module(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(TRIALS))
    spec = importlib.util.spec_from_file_location(f"extras_{name}", TRIALS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_error_names_the_extra_in_one_line():
    e = MissingExtraError("the text trial (transformers)", "text")
    assert isinstance(e, AutotuneError) and isinstance(e, ImportError) and e.extra == "text"
    assert "\n" not in str(e) and 'pip install "autotune[text]"' in str(e)


def test_text_trial_without_transformers_names_the_text_extra(monkeypatch):
    text = _trial_module("_text", monkeypatch)
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingExtraError, match=r'pip install "autotune\[text\]"') as info:
        text._transformers()
    assert info.value.extra == "text"


def test_efficientnet_without_its_package_names_the_image_extra(monkeypatch):
    common = _trial_module("_common", monkeypatch)
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(MissingExtraError, match=r'pip install "autotune\[image\]"'):
        common.build_model("efficientnet_lite0", num_classes=10, weights=None, image_size=None)


@pytest.mark.slow
def test_a_search_on_the_text_trial_without_the_extra_stops_with_one_line(tmp_path):
    """What a newcomer sees: the run stops after its first trials, with one line naming the extra."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER.format(blocked={"transformers"}))
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    proc = cli("run", "--space", str(REPO / "search_spaces" / "text_finetune.yaml"), "--rounds", "1",
               "--popsize", "2", "--output", str(tmp_path / "runs"), "--executor", "local", env=env, timeout=240)
    assert proc.returncode != 0
    line = error_line(proc.stderr)
    assert 'pip install "autotune[text]"' in line and "Traceback" not in proc.stderr, proc.stderr
