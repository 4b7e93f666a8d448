"""Training checkpoints: model weights plus everything `--resume` needs to continue bit for bit.

Format: `model.checkpoint`'s {"config", "state_dict", "extra"}; `extra` holds the train config,
step, optimizer, EMA, schedule, data position and RNG states, all tensors and builtins, so the file
loads with `torch.load(weights_only=True)` and `curation sample` reads it like any model checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.checkpoint import save_checkpoint
from model.model import NeoUnify

CHECKPOINT_DIR = "checkpoints"


def checkpoint_path(output: Path, step: int) -> Path:
    return output / CHECKPOINT_DIR / f"step_{step:06d}.pt"


def list_checkpoints(output: Path) -> list[Path]:
    """Oldest first (the zero-padded step makes name order step order)."""
    return sorted((output / CHECKPOINT_DIR).glob("step_*.pt"))


def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class TrainingState:
    """Everything besides the model weights that a resumed run needs."""

    step: int
    data_position: dict[str, int]
    optimizer: dict[str, Any]
    ema: dict[str, torch.Tensor]
    schedule: dict[str, float]
    rng: dict[str, Any]
    train_config: dict[str, Any]

    def to_extra(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> TrainingState:
        return cls(**extra)


def save_training_checkpoint(output: Path, model: NeoUnify, state: TrainingState, keep: int) -> Path:
    """Write step_NNNNNN.pt (atomically) and delete all but the `keep` newest checkpoints."""
    path = checkpoint_path(output, state.step)
    save_checkpoint(path, model, state.to_extra())
    for old in list_checkpoints(output)[:-keep]:
        old.unlink()
    return path


def load_training_checkpoint(path: Path, model: NeoUnify) -> TrainingState:
    """Load the weights into `model` (whose config must be the saved one); return the rest."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload["config"] != model.config.to_dict():
        raise ValueError(f"{path} holds a different model configuration than this run builds")
    model.load_state_dict(payload["state_dict"])
    return TrainingState.from_extra(payload["extra"])
