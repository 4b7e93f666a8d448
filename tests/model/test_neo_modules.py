"""Image embedder token layout and the FlexAttention backend."""

from __future__ import annotations

import warnings

import torch
from neo_helpers import byte_ids, random_image

from model import NeoUnify
from model.image_embed import ImageEmbedder


def test_image_tokens_are_row_major_one_per_32px_patch():
    torch.manual_seed(0)
    embedder = ImageEmbedder(
        hidden_size=16, channels=8, embed_patch=16, token_patch=32, rope_theta=1e4
    )
    image = random_image(64, 96)
    tokens = embedder(image[None])[0]
    assert tokens.shape == (6, 16)
    edited = image.clone()
    edited[:, 32:64, 64:96] = 0  # grid row 1, col 2 -> token 5
    changed = (embedder(edited[None])[0] - tokens).abs().sum(-1) > 0
    assert changed.tolist() == [False] * 5 + [True]


def test_image_tokens_know_their_position():
    torch.manual_seed(0)
    embedder = ImageEmbedder(
        hidden_size=16, channels=8, embed_patch=16, token_patch=32, rope_theta=1e4
    )
    tile = random_image(32, 32)
    tokens = embedder(tile.repeat(1, 1, 2)[None])[0]  # the same patch twice, side by side
    assert not torch.allclose(tokens[0], tokens[1])


def test_flex_attention_matches_sdpa(config, builder):
    torch.manual_seed(0)
    sdpa_model = NeoUnify(config)
    flex_model = NeoUnify(config.replace(attention="flex"))
    flex_model.load_state_dict(sdpa_model.state_dict())
    batch = builder.pack(
        [
            builder.text_to_image(byte_ids("a b"), random_image(64, 64), clean_copy=True),
            builder.image_to_text(random_image(32, 64), byte_ids("c")),
        ],
        torch.Generator().manual_seed(0),
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncompiled flex attention on CPU warns about speed
        expected, actual = sdpa_model(batch), flex_model(batch)
    assert torch.allclose(expected.ce, actual.ce, atol=1e-5)
    assert torch.allclose(expected.mse, actual.mse, atol=1e-5)
