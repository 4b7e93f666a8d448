"""Native 3-D RoPE for the backbone: each rotary pair of a head is driven by T, H or W.

Layout decision (why pairs are interleaved T, H, T, W)
------------------------------------------------------
Qwen3 rotates head dims in the "rotate_half" layout: pair p couples dims (p, p + D/2) and turns by
angle `pos * theta^(-2p/D)`, p in [0, D/2). NEO splits the head T/H/W = 1/2, 1/4, 1/4 with a 1-D rotary
per axis: T over D/2 dims with theta_T, H and W over D/4 dims each with theta_HW.

We keep Qwen's pairing and hand out the pairs in the repeating pattern T, H, T, W:
  * T owns the even pairs p = 2i. Their Qwen frequency theta_T^(-4i/D) = theta_T^(-2i/(D/2)) is exactly
    NEO's T ladder over D/2 dims, so T gets NEO's frequencies AND rotates those dims bit-for-bit like
    Qwen3 does (same dims, same angle). A contiguous split (T = dims [0, D/2) with its own rotate_half)
    would instead pair dims that Qwen never paired, scrambling every pretrained q/k.
  * H owns pairs p = 4i + 1 and W owns p = 4i + 3, each with NEO's ladder theta_HW^(-2i/(D/4)).
Each axis therefore owns exactly the fraction of the head the spec asks for, with the spec's thetas.

What this cannot do: for text (H = W = 0) the spatial pairs stay unrotated while Qwen3 turns them by
T, so no T/H/W split of the head reduces exactly to Qwen3's 1-D RoPE. Exact reduction holds for the T
half only (tested). `spatial_rope=False` gives every pair to T, which *is* Qwen3's RoPE; the Qwen3 parity
test runs in that mode, and a Qwen3 checkpoint trained on in 3-D mode sees its spatial pairs change.
"""

from __future__ import annotations

import torch
from torch import nn

AXIS_T, AXIS_H, AXIS_W = 0, 1, 2


def rope_pair_table(
    head_dim: int, theta_t: float, theta_hw: float, spatial: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis and inverse frequency of each rotary pair.

    Returns (axis, inv_freq), both (head_dim / 2,): axis in {AXIS_T, AXIS_H, AXIS_W}, inv_freq fp32.
    """
    # Computed exactly as transformers' Qwen3 rotary embedding does, so T angles match bit for bit.
    qwen_inv_freq = 1.0 / (
        theta_t ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim)
    )
    if not spatial:
        return torch.full_like(qwen_inv_freq, AXIS_T, dtype=torch.long), qwen_inv_freq
    pair = torch.arange(head_dim // 2)
    axis = torch.where(pair % 2 == 0, AXIS_T, torch.where(pair % 4 == 1, AXIS_H, AXIS_W))
    hw_dim = head_dim // 4
    hw_inv_freq = 1.0 / (
        theta_hw ** (torch.arange(0, hw_dim, 2, dtype=torch.int64).float() / hw_dim)
    )
    inv_freq = torch.where(axis == AXIS_T, qwen_inv_freq, hw_inv_freq[pair // 4])
    return axis, inv_freq


class Rope3D(nn.Module):
    """Turns (T, H, W) token positions into the cos/sin tables `apply_rope` consumes."""

    def __init__(self, head_dim: int, theta_t: float, theta_hw: float, spatial: bool) -> None:
        super().__init__()
        axis, inv_freq = rope_pair_table(head_dim, theta_t, theta_hw, spatial)
        self.register_buffer("pair_axis", axis, persistent=False)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: (3, L) integer T/H/W -> (cos, sin), each (L, head_dim) fp32."""
        pair_positions = positions.index_select(0, self.pair_axis).T.float()  # (L, D/2)
        angles = pair_positions * self.inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (heads, L, D); cos, sin: (L, D) -> rotated x, same shape and dtype."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return x * cos + rotate_half(x) * sin
