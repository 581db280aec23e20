"""LoRA adapters across a Population-Based step: carry a parent's adapter into a child of another rank.

A child with the parent's ``r`` and ``lora_alpha`` resumes the parent's Trainer checkpoint exactly
(adapter, optimizer moments, schedule, step).  A child whose rank or alpha differs cannot load those
tensors as they are, and a fresh adapter would throw the parent's training away.  So the parent's
update of each adapted weight, ``dW = (alpha / r) B A``, is rewritten for the child's ``(r', alpha')``:
its best rank-``r'`` approximation by SVD (exact when ``r' >= r``), split evenly between ``B'`` and
``A'``.  Directions beyond the parent's rank keep the child's fresh random ``A`` rows with zero ``B``
columns (LoRA's own initialisation), so they add nothing now and still learn.  The optimizer starts
afresh there (its moments are shaped by the old rank); the step count goes on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def adapter_settings(checkpoint: str | Path) -> dict[str, Any]:
    """The ``r``, ``lora_alpha`` and target modules a saved adapter was trained with."""
    cfg = json.loads((Path(checkpoint) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    targets = cfg.get("target_modules") or []
    return {"r": int(cfg["r"]), "lora_alpha": float(cfg["lora_alpha"]),
            "target_modules": sorted(targets) if isinstance(targets, (list, set, tuple)) else [str(targets)]}


def rerank(a: torch.Tensor, b: torch.Tensor, scale: float, fresh_a: torch.Tensor,
           new_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A', B') of the child's rank (``fresh_a``'s rows) with ``new_scale * B' A'`` the best approximation
    of ``scale * B A`` of that rank; the rows past the parent's rank are ``fresh_a``'s, their B columns 0."""
    new_r = fresh_a.shape[0]
    delta = (scale / new_scale) * (b.double() @ a.double())
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(new_r, a.shape[0], s.shape[0])
    root = s[:k].sqrt()
    new_a = fresh_a.detach().clone().double()
    new_b = torch.zeros(b.shape[0], new_r, dtype=torch.float64)
    new_a[:k] = root[:, None] * vh[:k]
    new_b[:, :k] = u[:, :k] * root[None, :]
    return new_a.to(a.dtype), new_b.to(b.dtype)


def load_reranked(model: Any, checkpoint: str | Path, r: int, lora_alpha: float) -> int:
    """Load the parent's adapter from ``checkpoint`` into the peft ``model`` (rank ``r``, ``lora_alpha``),
    re-ranked layer by layer; other saved weights (the classifier head) load as they are.  Returns the
    number of adapted layers carried over."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    parent = adapter_settings(checkpoint)
    saved = load_file(str(Path(checkpoint) / ADAPTER_FILE))
    fresh = get_peft_model_state_dict(model)
    out: dict[str, torch.Tensor] = {}
    carried = 0
    for key, value in saved.items():
        if key.endswith("lora_A.weight"):
            stem = key[: -len("lora_A.weight")]
            b = saved[stem + "lora_B.weight"]
            new_a, new_b = rerank(value, b, parent["lora_alpha"] / parent["r"], fresh[key], lora_alpha / r)
            out[key], out[stem + "lora_B.weight"] = new_a, new_b
            carried += 1
        elif not key.endswith("lora_B.weight"):
            out[key] = value
    missing = [k for k in fresh if k.endswith("lora_A.weight") and k not in out]
    if missing:
        raise ValueError(f"the parent's adapter in {checkpoint} does not cover {missing[:3]} "
                         "(another target_modules?)")
    set_peft_model_state_dict(model, out)
    return carried
