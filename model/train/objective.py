"""The stage loss of a global batch split over data-parallel ranks, equal to the one-process loss.

`model.losses` weights terms within their group (sample or image) by 1/sqrt(group size) and divides
by the sum of the weights, which is sum over groups of sqrt(size). Each group lives on one rank, so a
rank's weighted mean times its own weight total is its numerator; dividing by the weight total summed
over ranks gives each rank's share, and the shares add up to `total_loss` of the whole global batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from model.losses import LossBreakdown, LossWeights, image_weighted_mse, sample_weighted_ce


class LossShare(NamedTuple):
    loss: torch.Tensor  # this rank's share of the stage loss (differentiable)
    ce_numerator: torch.Tensor  # weighted CE sum of this rank (detached), for the logged global CE
    mse_numerator: torch.Tensor  # likewise for the velocity MSE


def group_weight_total(group_ids: torch.Tensor) -> torch.Tensor:
    """sum over groups of sqrt(group size): the denominator of model.losses' weighted means."""
    if group_ids.numel() == 0:
        return torch.zeros((), device=group_ids.device)
    _, counts = torch.unique(group_ids, return_counts=True)
    return counts.float().sqrt().sum()


def weight_totals(losses: LossBreakdown) -> torch.Tensor:
    """(2,) this rank's [CE weight total, MSE weight total]."""
    return torch.stack((group_weight_total(losses.ce_sample_ids), group_weight_total(losses.mse_image_ids)))


def loss_share(
    losses: LossBreakdown, weights: LossWeights, local_totals: torch.Tensor, global_totals: torch.Tensor
) -> LossShare:
    ce_numerator = sample_weighted_ce(losses.ce, losses.ce_sample_ids) * local_totals[0]
    mse_numerator = image_weighted_mse(losses.mse, losses.mse_image_ids) * local_totals[1]
    loss = losses.ce.new_zeros(())
    # A term is skipped when its stage weight is 0 or no rank has any of it (0 / 0).
    if weights.ce and global_totals[0] > 0:
        loss = loss + weights.ce * ce_numerator / global_totals[0]
    if weights.mse and global_totals[1] > 0:
        loss = loss + weights.mse * mse_numerator / global_totals[1]
    return LossShare(loss, ce_numerator.detach(), mse_numerator.detach())


def empty_breakdown(device: torch.device) -> LossBreakdown:
    """The losses of a rank whose share of the batch is empty."""
    values = torch.zeros(0, device=device)
    ids = torch.zeros(0, dtype=torch.long, device=device)
    return LossBreakdown(values, ids, values, ids)
