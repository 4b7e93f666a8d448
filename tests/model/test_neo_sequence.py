"""Sequence builder: layouts of the three tasks and the 3-D RoPE index rules."""

from __future__ import annotations

import pytest
import torch
from neo_helpers import byte_ids, random_image

from model import IGNORE_INDEX, CleanCopy, Image, Task, Text, TokenRole
from model.mask import NO_IMAGE


def test_text_to_image_positions(builder, config):
    caption = byte_ids("cat")
    batch = builder.pack([builder.text_to_image(caption, random_image(64, 96))])  # 2 x 3 token grid
    t, h, w = batch.positions
    # caption: T advances by one, H = W = 0
    assert (
        t[:3].tolist() == [0, 1, 2] and h[:3].tolist() == [0, 0, 0] and w[:3].tolist() == [0, 0, 0]
    )
    # <img> takes the next T; all six patches share T(<img>) + 1 with row/col on the 32-px grid
    assert batch.input_ids[3] == config.img_start_id and t[3] == 3
    patches = batch.roles == TokenRole.NOISY_IMAGE
    assert patches.sum() == 6 and (t[patches] == 4).all()
    assert h[patches].tolist() == [0, 0, 0, 1, 1, 1] and w[patches].tolist() == [0, 1, 2, 0, 1, 2]
    # </img> takes the next T after the image
    assert batch.input_ids[-1] == config.img_end_id and t[-1] == 5 and h[-1] == 0 and w[-1] == 0
    assert (batch.labels == IGNORE_INDEX).all()  # the caption is the condition, not a target
    assert batch.roles[3] == TokenRole.MARKER and batch.roles[-1] == TokenRole.MARKER


def test_clean_copy_reuses_the_noisy_positions(builder):
    image = random_image(64, 64)
    segments = builder.text_to_image(byte_ids("ab"), image, clean_copy=True)
    batch = builder.pack([segments])
    noisy = (batch.roles == TokenRole.NOISY_IMAGE).nonzero().squeeze(1)
    clean = (batch.roles == TokenRole.CLEAN_IMAGE).nonzero().squeeze(1)
    assert torch.equal(batch.positions[:, noisy], batch.positions[:, clean])
    # the copy's markers replay the noisy bracket's markers too
    assert torch.equal(batch.positions[:, noisy[0] - 1], batch.positions[:, clean[0] - 1])
    assert torch.equal(batch.positions[:, noisy[-1] + 1], batch.positions[:, clean[-1] + 1])
    assert (batch.twin_of[clean] == batch.image_ids[noisy[0]]).all()
    assert (batch.twin_of[noisy] == NO_IMAGE).all()
    assert batch.images[int(batch.image_ids[clean[0]])] is image


def test_text_after_a_clean_copy_continues_after_the_bracket(builder):
    batch = builder.pack(
        [[Text([1]), Image(random_image(32, 32), noisy=True), CleanCopy(), Text([2, 3])]]
    )
    # T: text 0, <img> 1, patch 2, </img> 3, copy replays 1-3, next text 4 and 5
    assert batch.positions[0].tolist() == [0, 1, 2, 3, 1, 2, 3, 4, 5]


def test_image_to_text_layout_and_labels(builder, config):
    caption = byte_ids("dog")
    batch = builder.pack([builder.image_to_text(random_image(64, 64), caption)])
    t = batch.positions[0]
    assert batch.input_ids[0] == config.img_start_id and t[0] == 0
    patches = batch.roles == TokenRole.CLEAN_IMAGE
    assert (t[patches] == 1).all() and patches.sum() == 4
    end = 5  # </img>
    assert batch.input_ids[end] == config.img_end_id and t[end] == 2
    assert t[end + 1 :].tolist() == [3, 4, 5, 6]  # "dog" <eos>
    # each label is the next supervised token: </img> predicts 'd', ..., 'g' predicts <eos>
    expected = [IGNORE_INDEX] * end + [*caption, config.eos_id, IGNORE_INDEX]
    assert batch.labels.tolist() == expected


def test_text_only_layout(builder, config):
    ids = byte_ids("hello")
    batch = builder.pack([builder.text_only(ids)])
    assert batch.positions[0].tolist() == list(range(6))
    assert (batch.positions[1:] == 0).all()
    assert batch.labels.tolist() == [*ids[1:], config.eos_id, IGNORE_INDEX]


def test_packing_restarts_positions_and_numbers_images(builder):
    samples = [
        builder.sample(Task.TEXT_TO_IMAGE, byte_ids("a"), random_image(32, 32)),
        builder.sample(Task.IMAGE_TO_TEXT, byte_ids("b"), random_image(64, 32)),
        builder.sample(Task.TEXT_ONLY, byte_ids("c"), None),
    ]
    generator = torch.Generator().manual_seed(0)
    batch = builder.pack(samples, generator)
    for sample in range(3):
        assert batch.positions[0, batch.sample_ids == sample][0] == 0
    assert batch.num_samples == 3
    image_tokens = batch.image_ids[batch.image_ids != NO_IMAGE]
    assert torch.unique_consecutive(image_tokens).tolist() == [0, 1]
    assert batch.noisy_image_ids.tolist() == [0]
    assert batch.timesteps.shape == (1,) and 0 < float(batch.timesteps[0]) < 1
    assert batch.noise[0].shape == (3, 32, 32)


def test_cfg_dropout_removes_the_caption(builder):
    batch = builder.pack(
        [builder.text_to_image(byte_ids("gone"), random_image(32, 32), drop_caption=True)]
    )
    assert batch.roles.tolist() == [TokenRole.MARKER, TokenRole.NOISY_IMAGE, TokenRole.MARKER]


def test_image_sides_must_be_multiples_of_32(builder):
    with pytest.raises(ValueError, match="multiples of 32"):
        builder.pack([builder.image_to_text(random_image(48, 64), [1])])
