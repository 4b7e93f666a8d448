"""The training attention mask: its four rules on hand-built packed sequences."""

from __future__ import annotations

import torch
from neo_helpers import byte_ids, random_image

from model import CleanCopy, Image, SequenceBuilder, Text, TokenRole, dense_mask
from model.mask import (
    MaskFields,
    rule_causal_or_same_image,
    rule_no_clean_twin,
    rule_noisy_keys_private,
    rule_same_sample,
)


def _two_sample_batch(builder: SequenceBuilder):
    """Sample 0: `ab <img>[noisy 2x2]</img> <img>[clean copy]</img> cd`;
    sample 1: `<img>[clean 2x1]</img> xyz`."""
    image = random_image(64, 64)
    sample0 = [Text(byte_ids("ab")), Image(image, noisy=True), CleanCopy(), Text(byte_ids("cd"))]
    sample1 = [Image(random_image(64, 32, seed=1)), Text(byte_ids("xyz"), supervised=True)]
    return builder.pack([sample0, sample1])


def _reference_mask(batch) -> torch.Tensor:
    """The spec's four rules, written out token by token in plain Python."""
    tokens = [
        dict(
            t=int(batch.positions[0, i]),
            sample=int(batch.sample_ids[i]),
            image=int(batch.image_ids[i]),
            twin=int(batch.twin_of[i]),
            noisy=int(batch.roles[i]) == TokenRole.NOISY_IMAGE,
        )
        for i in range(len(batch))
    ]
    size = len(tokens)
    mask = torch.zeros(size, size, dtype=torch.bool)
    for i, q in enumerate(tokens):
        for j, k in enumerate(tokens):
            same_image = q["image"] >= 0 and q["image"] == k["image"]
            rule1 = q["t"] >= k["t"] or same_image
            rule2 = not k["noisy"] or (q["noisy"] and same_image)
            rule3 = not (q["noisy"] and k["twin"] == q["image"]) and not (
                not q["noisy"] and k["noisy"]
            )
            rule4 = q["sample"] == k["sample"]
            mask[i, j] = rule1 and rule2 and rule3 and rule4
    return mask


def _where(batch, role: TokenRole, sample: int) -> torch.Tensor:
    return ((batch.roles == role) & (batch.sample_ids == sample)).nonzero().squeeze(1)


def test_mask_equals_rule_by_rule_reference(builder):
    batch = _two_sample_batch(builder)
    assert torch.equal(dense_mask(batch.mask_fields, batch.mask_fields), _reference_mask(batch))


def test_every_token_sees_itself(builder):
    batch = _two_sample_batch(builder)
    assert dense_mask(batch.mask_fields, batch.mask_fields).diagonal().all()


def test_rule1_text_is_causal_images_are_bidirectional(builder):
    batch = _two_sample_batch(builder)
    mask = dense_mask(batch.mask_fields, batch.mask_fields)
    text = _where(batch, TokenRole.TEXT, 1)  # "xyz"
    assert mask[text[1], text[0]] and not mask[text[0], text[1]]
    clean = _where(batch, TokenRole.CLEAN_IMAGE, 1)
    assert mask[clean[0], clean[-1]] and mask[clean[-1], clean[0]]
    noisy = _where(batch, TokenRole.NOISY_IMAGE, 0)
    assert mask[noisy[0]][noisy].all() and mask[noisy[-1]][noisy].all()
    # Text after an image sees the clean patches; the clean patches do not see that text.
    assert mask[text[0]][clean].all() and not mask[clean][:, text].any()


def test_rule2_noisy_keys_are_seen_only_by_their_own_image(builder):
    batch = _two_sample_batch(builder)
    mask = dense_mask(batch.mask_fields, batch.mask_fields)
    noisy = batch.roles == TokenRole.NOISY_IMAGE
    assert not mask[~noisy][:, noisy].any()
    assert mask[noisy][:, noisy].all()  # one noisy image here: the block sees all of itself


def test_rule3_noisy_block_never_sees_its_clean_twin(builder):
    batch = _two_sample_batch(builder)
    mask = dense_mask(batch.mask_fields, batch.mask_fields)
    noisy = _where(batch, TokenRole.NOISY_IMAGE, 0)
    twin = _where(batch, TokenRole.CLEAN_IMAGE, 0)
    assert torch.equal(batch.positions[:, noisy], batch.positions[:, twin])  # same T/H/W
    assert not mask[noisy][:, twin].any()
    # Rule 3 alone forbids it: rules 1, 2 and 4 would let the block see its answer.
    q, k = batch.mask_fields.select(noisy[:1]), batch.mask_fields.select(twin[:1])
    assert rule_causal_or_same_image(q, k) & rule_noisy_keys_private(q, k) & rule_same_sample(q, k)
    assert not rule_no_clean_twin(q, k)
    # The block still sees its condition: the caption and its <img> marker.
    caption_and_marker = (batch.sample_ids == 0) & (
        batch.positions[0] < batch.positions[0, noisy[0]]
    )
    assert mask[noisy][:, caption_and_marker].all()


def test_rule3_clean_copy_and_following_text_see_no_noise(builder):
    batch = _two_sample_batch(builder)
    mask = dense_mask(batch.mask_fields, batch.mask_fields)
    noisy = _where(batch, TokenRole.NOISY_IMAGE, 0)
    twin = _where(batch, TokenRole.CLEAN_IMAGE, 0)
    after_text = _where(batch, TokenRole.TEXT, 0)[-2:]  # "cd"
    assert not mask[twin][:, noisy].any() and not mask[after_text][:, noisy].any()
    assert mask[after_text][
        :, twin
    ].all()  # later text reads the generated image via its clean copy


def test_rule4_packed_samples_are_isolated(builder):
    batch = _two_sample_batch(builder)
    mask = dense_mask(batch.mask_fields, batch.mask_fields)
    first, second = batch.sample_ids == 0, batch.sample_ids == 1
    assert not mask[first][:, second].any() and not mask[second][:, first].any()
    # Both samples start at T = 0, so without rule 4 sample 1 would read sample 0's first tokens.
    assert rule_causal_or_same_image(
        batch.mask_fields.select(second.nonzero()[-1]), batch.mask_fields.select(first.nonzero()[0])
    )


def test_rules_on_single_token_pairs():
    def token(
        t: int, sample: int = 0, image: int = -1, twin: int = -1, noisy: bool = False
    ) -> MaskFields:
        return MaskFields(*(torch.tensor([v]) for v in (t, sample, image, twin, noisy)))

    text_early, text_late = token(0), token(5)
    patch_a, patch_b = token(3, image=0, noisy=True), token(3, image=0, noisy=True)
    other_noisy = token(1, image=1, noisy=True)
    assert rule_causal_or_same_image(text_late, text_early) and not rule_causal_or_same_image(
        text_early, text_late
    )
    assert rule_noisy_keys_private(patch_a, patch_b) and not rule_noisy_keys_private(
        patch_a, other_noisy
    )
    assert not rule_noisy_keys_private(text_late, patch_a)
    assert not rule_same_sample(token(0, sample=0), token(0, sample=1))
