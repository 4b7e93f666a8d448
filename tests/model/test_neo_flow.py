"""Flow-matching pieces and loss weighting: pure functions checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from model import (
    STAGE_LOSS_WEIGHTS,
    LossBreakdown,
    image_weighted_mse,
    noise_scale,
    sample_timesteps,
    sample_weighted_ce,
    shifted_timesteps,
    total_loss,
)
from model.flow import add_noise, velocity
from model.pixel_head import patchify, unpatchify


@pytest.mark.parametrize(
    ("height", "width", "sigma"),
    [
        (256, 256, 1.0),
        (512, 512, 2.0),
        (256, 1024, 2.0),
        (64, 64, 0.25),
        (2048, 2048, 8.0),
        (4096, 4096, 8.0),
        (4096, 2048, 8.0),
    ],
)
def test_noise_scale_is_sqrt_of_tokens_over_64_clamped_at_8(height, width, sigma):
    assert noise_scale(height, width) == pytest.approx(sigma)


def test_noise_scale_just_below_the_clamp():
    assert noise_scale(2016, 2048) == pytest.approx(math.sqrt(63 * 64 / 64))


def test_timesteps_are_logit_normal_and_seedable():
    t = sample_timesteps(20_000, torch.Generator().manual_seed(0))
    assert ((t > 0) & (t < 1)).all()
    assert float(t.median()) == pytest.approx(1 / (1 + math.exp(0.8)), abs=0.01)
    logits = torch.log(t / (1 - t))
    assert float(logits.std()) == pytest.approx(0.8, abs=0.02)
    assert torch.equal(
        sample_timesteps(5, torch.Generator().manual_seed(3)),
        sample_timesteps(5, torch.Generator().manual_seed(3)),
    )


def test_noising_endpoints_and_velocity_floor():
    x, eps = torch.full((3, 4, 4), 0.5), torch.ones(3, 4, 4)
    assert torch.equal(add_noise(x, 1.0, 2.0, eps), x)
    assert torch.equal(add_noise(x, 0.0, 2.0, eps), 2 * eps)
    z = add_noise(x, 0.25, 2.0, eps)
    assert torch.allclose(velocity(x, z, 0.25, 0.05), (x - z) / 0.75)
    assert torch.allclose(
        velocity(x, z, torch.tensor(0.99), 0.05), (x - z) / 0.05
    )  # floor, not 0.01


def test_shifted_schedule():
    times = shifted_timesteps(4, shift=3.0)
    assert times[0] == 0 and times[-1] == 1 and (times.diff() > 0).all()
    sigma = 0.5  # uniform grid midpoint t = 0.5
    assert float(times[2]) == pytest.approx(1 - 3 * sigma / (1 + 2 * sigma))
    assert torch.allclose(shifted_timesteps(4, shift=1.0), torch.linspace(0, 1, 5))


def test_patch_layout_is_row_col_channel():
    image = torch.arange(3 * 64 * 96, dtype=torch.float32).reshape(3, 64, 96)
    tokens = patchify(image, 32)
    assert tokens.shape == (6, 3072)
    # token 4 = grid row 1, col 1; value index (r * 32 + c) * 3 + ch
    assert tokens[4, (5 * 32 + 7) * 3 + 2] == image[2, 32 + 5, 32 + 7]
    assert torch.equal(unpatchify(tokens, 64, 96, 32), image)


def test_ce_weighting_is_one_over_sqrt_label_count_per_sample():
    ce = torch.tensor([1.0, 2.0, 2.0, 2.0, 2.0])
    samples = torch.tensor([0, 1, 1, 1, 1])
    # token weights: 1 for sample 0, 1/2 for each of sample 1's four tokens
    assert float(sample_weighted_ce(ce, samples)) == pytest.approx(
        (1 * 1 + 4 * 0.5 * 2) / (1 + 4 * 0.5)
    )


def test_mse_weighting_grows_with_sqrt_of_image_tokens():
    mse = torch.tensor([1.0] + [3.0] * 16)
    images = torch.tensor([0] + [1] * 16)
    # image means 1 and 3 weighted sqrt(1) and sqrt(16)
    assert float(image_weighted_mse(mse, images)) == pytest.approx((1 * 1 + 4 * 3) / 5)


def test_stage_weights_and_skipped_terms():
    assert [(w.ce, w.mse) for w in STAGE_LOSS_WEIGHTS.values()] == [
        (1, 0),
        (0, 1),
        (0.1, 1),
        (0.1, 1),
    ]
    losses = LossBreakdown(
        ce=torch.tensor([2.0]),
        ce_sample_ids=torch.tensor([0]),
        mse=torch.tensor([float("nan")]),
        mse_image_ids=torch.tensor([0]),
    )
    assert (
        float(total_loss(losses, STAGE_LOSS_WEIGHTS[1])) == 2.0
    )  # a 0 weight skips even a NaN term
    losses = losses._replace(mse=torch.tensor([4.0]))
    assert float(total_loss(losses, STAGE_LOSS_WEIGHTS[3])) == pytest.approx(0.1 * 2 + 4)
    empty = LossBreakdown(
        torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.tensor([4.0]), torch.tensor([0])
    )
    assert float(total_loss(empty, STAGE_LOSS_WEIGHTS[3])) == 4.0
