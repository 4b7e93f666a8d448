"""Checkpoints: {"config": NeoConfig.to_dict(), "state_dict": ..., "extra": ...} in one torch file.

Loading uses `torch.load(weights_only=True)`, so a checkpoint can hold only tensors and builtins.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from model.config import NeoConfig
from model.model import NeoUnify, build_model


def save_checkpoint(path: str | Path, model: NeoUnify, extra: dict[str, Any] | None = None) -> None:
    """Write atomically (temp file + rename), so a crash never leaves a truncated checkpoint.

    `extra` carries trainer state (step, optimizer state dict, ...): tensors and builtins only.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    payload = {
        "config": model.config.to_dict(),
        "state_dict": model.state_dict(),
        "extra": extra or {},
    }
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[NeoUnify, dict[str, Any]]:
    """Rebuild the model, in its saved dtype, from config and weights; returns (model, extra)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    state_dict = payload["state_dict"]
    model = build_model(
        NeoConfig.from_dict(payload["config"]),
        device=map_location,
        dtype=state_dict["embed_tokens.weight"].dtype,
    )
    model.load_state_dict(state_dict)
    return model, payload["extra"]
