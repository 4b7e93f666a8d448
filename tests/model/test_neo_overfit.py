"""The tiny model memorises one batch of 4 image-caption pairs: both losses fall tenfold."""

from __future__ import annotations

import torch
from neo_helpers import byte_ids

from model import STAGE_LOSS_WEIGHTS, NeoUnify, image_weighted_mse, sample_weighted_ce, total_loss


def _pattern_images() -> list[torch.Tensor]:
    """Four 64x64 images with distinct structure (stripes, blocks, gradients)."""
    ramp = torch.linspace(-1, 1, 64)
    horizontal = ramp[None, None, :].expand(3, 64, 64)
    vertical = ramp[None, :, None].expand(3, 64, 64)
    checker = (
        (torch.arange(64)[:, None] // 16 + torch.arange(64)[None, :] // 16) % 2
    ).float() * 2 - 1
    colours = torch.tensor([0.9, -0.5, 0.1])[:, None, None].expand(3, 64, 64)
    return [
        horizontal.clone(),
        vertical.clone(),
        checker.expand(3, 64, 64).clone(),
        colours.clone(),
    ]


def test_overfits_one_batch(config, builder):
    torch.manual_seed(0)
    model = NeoUnify(config)
    captions = [
        byte_ids(c) for c in ("left to right", "top to bottom", "checkerboard", "flat orange")
    ]
    images = _pattern_images()
    samples = [builder.text_to_image(c, i) for c, i in zip(captions, images, strict=True)]
    samples += [builder.image_to_text(i, c) for c, i in zip(captions, images, strict=True)]
    batch = builder.pack(samples, torch.Generator().manual_seed(0))  # fixed t and noise: one batch
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.0)

    def measure() -> tuple[float, float]:
        with torch.no_grad():
            losses = model(batch)
        return float(sample_weighted_ce(losses.ce, losses.ce_sample_ids)), float(
            image_weighted_mse(losses.mse, losses.mse_image_ids)
        )

    ce_start, mse_start = measure()
    for step in range(300):
        optimizer.zero_grad()
        total_loss(model(batch), STAGE_LOSS_WEIGHTS[3]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 10 == 9:
            ce, mse = measure()
            if ce < ce_start / 10 and mse < mse_start / 10:
                break
    ce, mse = measure()
    assert ce < ce_start / 10, (ce_start, ce)
    assert mse < mse_start / 10, (mse_start, mse)
