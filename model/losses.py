"""Unreduced per-token losses and the pure functions that weight and reduce them.

The model returns a `LossBreakdown`; the trainer picks the stage weights and reduces:

    loss = total_loss(model(batch), STAGE_LOSS_WEIGHTS[stage])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


class LossBreakdown(NamedTuple):
    ce: torch.Tensor  # (n_text_targets,) fp32 cross-entropy per supervised text token
    ce_sample_ids: torch.Tensor  # (n_text_targets,) long: packed sample of each CE term
    mse: torch.Tensor  # (n_noisy_tokens,) fp32 velocity MSE per token, mean over 3 * 32 * 32 values
    mse_image_ids: torch.Tensor  # (n_noisy_tokens,) long: generated image of each MSE term


@dataclass(frozen=True)
class LossWeights:
    ce: float
    mse: float


# Training stages of the NEO-unify recipe (model.md section 8).
STAGE_LOSS_WEIGHTS: dict[int, LossWeights] = {
    1: LossWeights(ce=1.0, mse=0.0),  # understanding warm-up
    2: LossWeights(ce=0.0, mse=1.0),  # generation pre-training
    3: LossWeights(ce=0.1, mse=1.0),  # unified mid-training
    4: LossWeights(ce=0.1, mse=1.0),  # SFT
}


def _group_rsqrt_mean(values: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Weighted mean where each term weighs 1/sqrt(size of its group); empty input -> 0.

    A group of n terms then carries total weight sqrt(n): between per-term averaging (big groups
    dominate) and per-group averaging (small groups dominate).
    """
    if values.numel() == 0:
        return values.new_zeros(())
    _, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    weights = counts[inverse].float().rsqrt()
    return (weights * values).sum() / weights.sum()


def sample_weighted_ce(ce: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
    """CE with each sample weighted 1/sqrt(its number of label tokens) per token."""
    return _group_rsqrt_mean(ce, sample_ids)


def image_weighted_mse(mse: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    """Velocity MSE with each image's mean weighted by sqrt(N), N = its token count."""
    return _group_rsqrt_mean(mse, image_ids)


def total_loss(losses: LossBreakdown, weights: LossWeights) -> torch.Tensor:
    """w_ce * weighted CE + w_mse * weighted MSE; a zero weight skips its term entirely."""
    total = losses.ce.new_zeros(())
    if weights.ce:
        total = total + weights.ce * sample_weighted_ce(losses.ce, losses.ce_sample_ids)
    if weights.mse:
        total = total + weights.mse * image_weighted_mse(losses.mse, losses.mse_image_ids)
    return total
