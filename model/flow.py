"""Flow matching with resolution-adaptive noise: pure functions on tensors.

Convention: t in [0, 1], t = 0 is pure noise and t = 1 the clean image;
z_t = t * x + (1 - t) * sigma_R * eps. The network predicts x ("x-predict") and is trained on the
velocity ("v-loss") v = (x - z_t) / max(1 - t, t_eps).
"""

from __future__ import annotations

import math

import torch


def noise_scale(
    height: int, width: int, token_patch: int = 32, base_tokens: int = 64, max_scale: float = 8.0
) -> float:
    """sigma_R = sqrt(N / N_0) for an image of N = H*W / token_patch^2 tokens, clamped at max_scale.

    256x256 -> 1, 2048x2048 -> 8: bigger images need more noise to destroy the same information.
    """
    tokens = (height // token_patch) * (width // token_patch)
    return min(math.sqrt(tokens / base_tokens), max_scale)


def sample_timesteps(
    count: int,
    generator: torch.Generator | None = None,
    mean: float = -0.8,
    std: float = 0.8,
) -> torch.Tensor:
    """(count,) training timesteps t ~ sigmoid(N(mean, std)); the mean < 0 favours noisy t."""
    normal = torch.randn(count, generator=generator) * std + mean
    return torch.sigmoid(normal)


def add_noise(
    x: torch.Tensor, t: float | torch.Tensor, sigma: float, eps: torch.Tensor
) -> torch.Tensor:
    """z_t = t * x + (1 - t) * sigma * eps; x and eps share one shape."""
    return t * x + (1 - t) * sigma * eps


def velocity(
    x: torch.Tensor, z: torch.Tensor, t: float | torch.Tensor, t_eps: float
) -> torch.Tensor:
    """(x - z) / max(1 - t, t_eps): the velocity implied by a (predicted or true) clean image x.

    The t_eps floor keeps the division finite as t -> 1.
    """
    one_minus_t = 1 - t
    if isinstance(one_minus_t, torch.Tensor):
        one_minus_t = one_minus_t.clamp_min(t_eps)
    else:
        one_minus_t = max(one_minus_t, t_eps)
    return (x - z) / one_minus_t


def shifted_timesteps(steps: int, shift: float) -> torch.Tensor:
    """(steps + 1,) sampling times from 0 (noise) to 1 (clean), shifted toward the noisy end.

    With sigma = 1 - t on a uniform grid: sigma' = shift * sigma / (1 + (shift - 1) * sigma),
    t' = 1 - sigma'.
    """
    sigma = 1 - torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    shifted = shift * sigma / (1 + (shift - 1) * sigma)
    return (1 - shifted).float()
