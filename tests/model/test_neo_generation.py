"""Inference: the KV cache changes nothing but speed; the image sampler is seedable."""

from __future__ import annotations

import torch
from neo_helpers import byte_ids, random_image

from model import (
    Image,
    Text,
    decode_step,
    generate_image,
    generate_text,
    predicted_velocity,
    prefill,
)
from model.generate import pick_token
from model.pixel_head import patchify


def test_kv_cached_decoding_equals_uncached_forward(tiny_model, builder):
    tiny_model.eval()
    prompt = [Image(random_image(64, 32)), Text(byte_ids("what is it?"))]
    generated = generate_text(tiny_model, builder, prompt, max_new_tokens=8)
    assert 1 <= len(generated) <= 8

    # Replay step by step with the cache, then score prompt + continuation in one uncached pass.
    cache, logits = prefill(tiny_model, builder.pack([prompt]))
    cached_logits = [logits]
    for token in generated[:-1]:
        cached_logits.append(decode_step(tiny_model, cache, token))
    full = builder.pack([[*prompt, Text(generated[:-1])]])
    with torch.no_grad():
        uncached = tiny_model.understanding_logits(full)[-len(generated) :]
    assert torch.allclose(torch.stack(cached_logits), uncached, atol=1e-5)
    assert uncached.argmax(-1).tolist() == generated
    assert len(cache) == len(full)


def test_top_p_sampling_is_seedable_and_tiny_p_is_greedy():
    logits = torch.randn(50)
    draws = [pick_token(logits, 0.9, 1.0, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert draws[0] == draws[1]
    assert pick_token(logits, 1e-6, 1.0, torch.Generator().manual_seed(1)) == int(logits.argmax())
    many = {pick_token(logits, 0.95, 1.0, torch.Generator().manual_seed(s)) for s in range(30)}
    assert len(many) > 1


def test_image_sampler_is_deterministic_under_a_seed(tiny_model, builder):
    def sample(seed: int, cfg_scale: float = 4.0) -> torch.Tensor:
        return generate_image(
            tiny_model,
            builder,
            byte_ids("a cat"),
            64,
            96,
            steps=4,
            cfg_scale=cfg_scale,
            generator=torch.Generator().manual_seed(seed),
        )

    first, again, other = sample(0), sample(0), sample(1)
    assert first.shape == (3, 64, 96) and first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
    assert not torch.allclose(
        first, sample(0, cfg_scale=1.0)
    )  # guidance uses the unconditional cache


def test_denoising_step_reads_the_cache_and_matches_training(tiny_model, builder):
    """The cached generation-only step predicts what the packed training forward predicts."""
    tiny_model.eval()
    caption, image, t = byte_ids("a dog"), random_image(64, 64), 0.3
    batch = builder.pack([builder.text_to_image(caption, image)], torch.Generator().manual_seed(0))
    batch.timesteps = torch.tensor([t])
    with torch.no_grad():
        training_mse = tiny_model(batch).mse

    cache, _ = prefill(tiny_model, builder.pack([builder.image_generation_prompt(caption)]))
    length_before = len(cache)
    sigma = 0.25  # 64x64: sqrt(4 / 64)
    noisy = t * image + (1 - t) * sigma * batch.noise[0]
    with torch.no_grad():
        v_hat = predicted_velocity(tiny_model, noisy, t, sigma, cache)
    assert len(cache) == length_before  # denoising never writes to the cache
    # Same prediction -> same per-token MSE (after undoing the train/sample t_eps difference).
    v_true = (image - noisy) / (1 - t)
    inference_mse = patchify((v_hat - v_true).pow(2), 32).mean(-1)
    assert torch.allclose(inference_mse, training_mse, rtol=1e-4, atol=1e-6)
