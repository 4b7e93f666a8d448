"""Loss shares of ranks add up to the one-process stage loss; schedule; EMA."""

from __future__ import annotations

import math

import pytest
import torch

from model import STAGE_LOSS_WEIGHTS, LossBreakdown, NeoConfig, NeoUnify, total_loss
from model.train.config import TrainConfig
from model.train.ema import GenerationEMA
from model.train.objective import loss_share, weight_totals
from model.train.optim import learning_rate


def _breakdown(ce_groups: list[int], mse_groups: list[int], seed: int) -> LossBreakdown:
    generator = torch.Generator().manual_seed(seed)
    ce_ids = torch.repeat_interleave(torch.arange(len(ce_groups)), torch.tensor(ce_groups, dtype=torch.long))
    mse_ids = torch.repeat_interleave(torch.arange(len(mse_groups)), torch.tensor(mse_groups, dtype=torch.long))
    return LossBreakdown(
        torch.rand(len(ce_ids), generator=generator), ce_ids, torch.rand(len(mse_ids), generator=generator), mse_ids
    )


def _joined(a: LossBreakdown, b: LossBreakdown) -> LossBreakdown:
    """Both ranks' terms in one batch (the second rank's group ids shifted past the first's)."""
    ce_offset = int(a.ce_sample_ids.max()) + 1 if len(a.ce) else 0
    mse_offset = int(a.mse_image_ids.max()) + 1 if len(a.mse) else 0
    return LossBreakdown(
        torch.cat((a.ce, b.ce)),
        torch.cat((a.ce_sample_ids, b.ce_sample_ids + ce_offset)),
        torch.cat((a.mse, b.mse)),
        torch.cat((a.mse_image_ids, b.mse_image_ids + mse_offset)),
    )


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_rank_shares_sum_to_the_whole_batch_loss(stage):
    ranks = [_breakdown([3, 9], [64], seed=0), _breakdown([5], [64, 16, 16], seed=1)]
    weights = STAGE_LOSS_WEIGHTS[stage]
    totals = weight_totals(ranks[0]) + weight_totals(ranks[1])
    shares = [loss_share(r, weights, weight_totals(r), totals).loss for r in ranks]
    assert float(sum(shares)) == pytest.approx(float(total_loss(_joined(*ranks), weights)), rel=1e-6)


def test_a_rank_without_images_still_gets_its_share():
    ranks = [_breakdown([4, 4], [], seed=0), _breakdown([2], [64], seed=1)]
    weights = STAGE_LOSS_WEIGHTS[3]
    totals = weight_totals(ranks[0]) + weight_totals(ranks[1])
    shares = [loss_share(r, weights, weight_totals(r), totals).loss for r in ranks]
    assert float(sum(shares)) == pytest.approx(float(total_loss(_joined(*ranks), weights)), rel=1e-6)


def test_learning_rate_warms_up_then_follows_a_cosine_to_its_floor():
    config = TrainConfig(data="d", steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, config) == pytest.approx(0.1)
    assert learning_rate(9, config) == pytest.approx(1.0)
    assert learning_rate(60, config) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(110, config) == pytest.approx(0.1)


def test_ema_tracks_generation_weights_and_sampling_swaps_them_in_and_out():
    torch.manual_seed(0)
    model = NeoUnify(NeoConfig.preset("tiny", num_layers=1))
    ema = GenerationEMA(model, decay=0.5)
    head = model.pixel_head.mlp[0].weight
    before = head.detach().clone()
    with torch.no_grad():
        head.add_(1.0)
    ema.update(model, step=100)  # decay 0.5: halfway
    assert torch.allclose(ema.shadow["pixel_head.mlp.0.weight"], before + 0.5)
    assert "embed_tokens.weight" not in ema.shadow  # understanding weights are not averaged
    with ema.applied(model):
        assert torch.allclose(head, before + 0.5)
    assert torch.allclose(head, before + 1.0)
