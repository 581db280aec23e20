"""The bundled LoRA trial (a Hugging Face Trainer script with peft) under pbt, at a tiny scale."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO

import autotune

sys.path.insert(0, str(REPO / "trials"))
import _lora  # noqa: E402


def test_rerank_keeps_the_update_when_the_rank_grows_and_approximates_it_when_it_shrinks():
    g = torch.Generator().manual_seed(0)
    a, b, fresh = torch.randn(4, 10, generator=g), torch.randn(6, 4, generator=g), torch.randn(8, 10, generator=g)
    new_a, new_b = _lora.rerank(a, b, 2.0, fresh, 0.5)
    assert torch.allclose(0.5 * new_b @ new_a, 2.0 * b @ a, atol=1e-5)
    assert torch.equal(new_a[4:], fresh[4:]) and not new_b[:, 4:].any()  # new directions: LoRA's own init
    small_a, small_b = _lora.rerank(a, b, 2.0, torch.randn(2, 10, generator=g), 1.0)
    s = torch.linalg.svdvals(2.0 * b @ a)
    err = torch.linalg.norm(small_b @ small_a - 2.0 * b @ a)
    assert err == pytest.approx(float(torch.sqrt((s[2:] ** 2).sum())), rel=1e-4)  # the best rank-2 one


@pytest.mark.slow
def test_pbt_children_continue_their_parents_adapter(tmp_path):
    space = yaml.safe_load((REPO / "search_spaces" / "lora.yaml").read_text())
    space["trial"] = str(REPO / "trials" / "lora_classification.py") + ":objective"
    space["fixed"] = {"docs_per_class": 4, "val_per_class": 4, "max_length": 16}
    space["params"]["r"] = {"type": "int", "low": 2, "high": 4, "init": 4}
    result = autotune.run(space=space, rounds=3, popsize=2, seed=0, output=tmp_path, name="lora", executor="local")
    assert all(r.status == "completed" for r in result.records), [r.reason for r in result.records]
    children = [r for r in result.records if r.parent_id is not None]
    assert children
    for child in children:
        log = (tmp_path / "lora" / child.trial_dir / "trial.log").read_text()
        assert "[lora] resuming the parent's checkpoint" in log or "[lora] re-ranked 12 adapted layers" in log
        assert child.reports[0]["step"] == child.parent_step + 1
        assert (tmp_path / "lora" / child.checkpoint / "adapter_model.safetensors").is_file()
