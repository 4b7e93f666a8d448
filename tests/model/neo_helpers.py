"""Plain helpers shared by the model tests (a unique module name, importable next to them)."""

from __future__ import annotations

import torch


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(3, H, W) pixels in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, height, width, generator=generator) * 2 - 1


def byte_ids(text: str) -> list[int]:
    return list(text.encode())
