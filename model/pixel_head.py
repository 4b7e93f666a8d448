"""Pixel output head and the token <-> pixel-patch layout.

The head maps a generation-stream hidden state to the clean 32x32 RGB patch x0 in [-1, 1], laid out
(row, col, channel) per token; an image is rebuilt by reshaping, there is no decoder.
"""

from __future__ import annotations

import torch
from torch import nn


class PixelHead(nn.Module):
    """(N, hidden) -> (N, 3 * patch^2): Linear, GELU, Linear."""

    def __init__(self, hidden_size: int, inner_size: int, token_patch: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(hidden_size, inner_size),
            nn.GELU(),
            nn.Linear(inner_size, 3 * token_patch * token_patch),
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mlp(hidden)


def patchify(image: torch.Tensor, patch: int) -> torch.Tensor:
    """(3, H, W) -> (H/patch * W/patch, patch * patch * 3), tokens row-major, values (row, col, ch)."""
    channels, height, width = image.shape
    rows, cols = height // patch, width // patch
    grid = image.reshape(channels, rows, patch, cols, patch)
    return grid.permute(1, 3, 2, 4, 0).reshape(rows * cols, patch * patch * channels)


def unpatchify(tokens: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """Inverse of `patchify`: (N, patch * patch * 3) -> (3, H, W)."""
    rows, cols = height // patch, width // patch
    grid = tokens.reshape(rows, cols, patch, patch, 3)
    return grid.permute(4, 0, 2, 1, 3).reshape(3, height, width)
