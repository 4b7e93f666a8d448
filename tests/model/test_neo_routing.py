"""MoT routing: only noisy patches use the generation weights; freezing one stream isolates it."""

from __future__ import annotations

import torch
from neo_helpers import byte_ids, random_image

from model import STAGE_LOSS_WEIGHTS, total_loss


def _has_gradient(parameter: torch.nn.Parameter) -> bool:
    return parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)


def test_parameter_groups_partition_the_model(tiny_model):
    und = {id(p) for p in tiny_model.understanding_parameters()}
    gen = {id(p) for p in tiny_model.generation_parameters()}
    assert und and gen and not und & gen
    assert und | gen == {id(p) for p in tiny_model.parameters()}
    assert (
        id(tiny_model.embed_tokens.weight) in und and id(tiny_model.pixel_head.mlp[0].weight) in gen
    )


def test_text_and_understanding_batches_leave_generation_without_gradient(tiny_model, builder):
    batch = builder.pack(
        [
            builder.text_only(byte_ids("only words here")),
            builder.image_to_text(random_image(64, 64), byte_ids("a caption")),
        ]
    )
    total_loss(tiny_model(batch), STAGE_LOSS_WEIGHTS[3]).backward()
    assert not any(_has_gradient(p) for p in tiny_model.generation_parameters())
    assert all(p.grad is None for p in tiny_model.generation_parameters())  # never even touched
    assert _has_gradient(tiny_model.layers[0].understanding.q_proj.weight)
    assert _has_gradient(tiny_model.und_image_embed.patch_conv.weight)


def test_generation_loss_with_frozen_understanding_changes_only_generation(tiny_model, builder):
    batch = builder.pack(
        [builder.text_to_image(byte_ids("a red square"), random_image(64, 64), clean_copy=True)],
        torch.Generator().manual_seed(0),
    )
    for parameter in tiny_model.understanding_parameters():
        parameter.requires_grad_(False)
    understanding_before = [p.clone() for p in tiny_model.understanding_parameters()]
    generation_before = [p.clone() for p in tiny_model.generation_parameters()]
    optimizer = torch.optim.AdamW(
        [p for p in tiny_model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.95)
    )
    for _ in range(2):
        optimizer.zero_grad()
        total_loss(tiny_model(batch), STAGE_LOSS_WEIGHTS[2]).backward()
        optimizer.step()
    assert all(
        torch.equal(a, b)
        for a, b in zip(understanding_before, tiny_model.understanding_parameters(), strict=True)
    )
    assert all(
        not torch.equal(a, b)
        for a, b in zip(generation_before, tiny_model.generation_parameters(), strict=True)
    )


def test_noise_never_reaches_the_text_loss(tiny_model, builder):
    """Rules 2-3 in action: resampling the noise changes the MSE but not one CE value."""
    segments = builder.text_to_image(byte_ids("pic"), random_image(64, 64), clean_copy=True)
    segments.append(builder.text_only(byte_ids("after"))[0])  # supervised text after the clean copy
    first = builder.pack([segments], torch.Generator().manual_seed(1))
    second = builder.pack([segments], torch.Generator().manual_seed(2))
    with torch.no_grad():
        losses_first, losses_second = tiny_model(first), tiny_model(second)
    assert losses_first.ce.numel() == 6
    assert torch.equal(losses_first.ce, losses_second.ce)
    assert not torch.allclose(losses_first.mse, losses_second.mse)
