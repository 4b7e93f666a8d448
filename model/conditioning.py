"""Flow-matching condition s_t = TEmb(t) + NSEmb(sigma_R / sigma_max), added to noisy tokens.

There is no adaLN in the backbone: s_t is simply added to every noisy token's input embedding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(
    values: torch.Tensor, dim: int, max_period: float = 10_000.0
) -> torch.Tensor:
    """GLIDE/DiT sinusoidal features: (N,) -> (N, dim) = [cos(v * f), sin(v * f)], fp32.

    The value is used as is (t in [0, 1], not scaled to 1000), as in the NEO-unify reference code.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    args = values.float()[:, None] * freqs[None, :]
    return torch.cat((args.cos(), args.sin()), dim=-1)


class ScalarEmbedder(nn.Module):
    """(N,) scalars -> (N, hidden): sinusoidal features, Linear, SiLU, Linear."""

    def __init__(self, hidden_size: int, frequency_dim: int) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(
            nn.Linear(frequency_dim, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        features = sinusoidal_embedding(values, self.frequency_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class NoiseConditioner(nn.Module):
    """Per-image condition from its timestep t and noise scale sigma_R: (N,), (N,) -> (N, hidden)."""

    def __init__(self, hidden_size: int, frequency_dim: int, noise_scale_max: float) -> None:
        super().__init__()
        self.timestep = ScalarEmbedder(hidden_size, frequency_dim)
        self.noise_scale = ScalarEmbedder(hidden_size, frequency_dim)
        self.noise_scale_max = noise_scale_max

    def forward(self, t: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.timestep(t) + self.noise_scale(sigma / self.noise_scale_max)
