"""Encoder-free image embedder: pixels -> one token per 32x32 patch, no vision encoder, no VAE.

Conv(3 -> C1, k16 s16), GELU, 2-D rotary rotation of the C1 features on the 16-px grid, then
Conv(C1 -> hidden, k2 s2) with no activation. NEO-unify keeps two of these with separate weights:
the understanding one sees ImageNet-normalised clean images, the generation one sees z_t in [-1, 1].
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalize(pixels: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> ImageNet mean/std normalised, same shape."""
    mean = pixels.new_tensor(IMAGENET_MEAN)[:, None, None]
    std = pixels.new_tensor(IMAGENET_STD)[:, None, None]
    return ((pixels + 1) / 2 - mean) / std


def rotate_grid_features(features: torch.Tensor, theta: float) -> torch.Tensor:
    """2-D rotary rotation of a feature map, the patch's own position baked into its features.

    features: (B, C, h, w). The first C/2 channels turn by column index, the last C/2 by row
    index, each as adjacent-channel pairs (2j, 2j+1) with frequencies theta^(-2j/(C/2)).
    Computed in fp32 because bf16 cannot hold the angles of large grids. Returns (B, C, h, w).
    """
    _, channels, rows, cols = features.shape
    half = channels // 2
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, half, 2, device=features.device, dtype=torch.float32) / half)
    )
    col_angles = torch.arange(cols, device=features.device, dtype=torch.float32)[:, None] * inv_freq
    row_angles = torch.arange(rows, device=features.device, dtype=torch.float32)[:, None] * inv_freq
    # Angles per grid cell and channel pair: (h, w, half/2) for each half.
    col_angles = col_angles[None, :, :].expand(rows, cols, -1)
    row_angles = row_angles[:, None, :].expand(rows, cols, -1)
    angles = torch.cat((col_angles, row_angles), dim=-1)  # (h, w, C/2)

    x = features.float().permute(0, 2, 3, 1)  # (B, h, w, C)
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = angles.cos(), angles.sin()
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    return rotated.permute(0, 3, 1, 2).to(features.dtype)


class ImageEmbedder(nn.Module):
    """(B, 3, H, W) pixels, H and W multiples of `token_patch` -> (B, H*W / token_patch^2, hidden).

    Tokens come out in row-major order over the token grid.
    """

    def __init__(
        self, hidden_size: int, channels: int, embed_patch: int, token_patch: int, rope_theta: float
    ) -> None:
        super().__init__()
        merge = token_patch // embed_patch
        self.patch_conv = nn.Conv2d(3, channels, kernel_size=embed_patch, stride=embed_patch)
        self.merge_conv = nn.Conv2d(channels, hidden_size, kernel_size=merge, stride=merge)
        self.rope_theta = rope_theta

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = F.gelu(self.patch_conv(pixels))
        features = rotate_grid_features(features, self.rope_theta)
        return self.merge_conv(features).flatten(2).transpose(1, 2)


def embed_images(embedder: ImageEmbedder, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Images of any sizes (each (3, H, W)) -> their tokens concatenated in order, (sum N_i, hidden).

    Images of equal size run as one batch, so a resolution bucket costs one convolution call.
    """
    by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        by_shape[tuple(image.shape)].append(index)
    tokens: list[torch.Tensor] = [torch.empty(0)] * len(images)
    for indices in by_shape.values():
        batch_tokens = embedder(torch.stack([images[i] for i in indices]))
        for i, image_tokens in zip(indices, batch_tokens, strict=True):
            tokens[i] = image_tokens
    return torch.cat(tokens)
