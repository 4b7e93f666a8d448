"""Inference: KV-cached text generation and image generation with the shifted Euler sampler.

Both run on one sample. The prompt (text and clean images) runs understanding-only once and fills a
KV cache. Text decoding appends one token per step to that cache. Each denoising step runs the
generation stream over the image block only, attending [prefix KV; block] without writing to the
cache; the conditional and unconditional (CFG) prompts keep separate caches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.flow import noise_scale, shifted_timesteps, velocity
from model.kv_cache import KVCache
from model.mask import NO_IMAGE, MaskFields
from model.model import NeoUnify
from model.pixel_head import unpatchify
from model.sequence import PackedBatch, Segment, SequenceBuilder, TokenRole, image_grid_positions


def _device(model: NeoUnify) -> torch.device:
    return model.embed_tokens.weight.device


@torch.no_grad()
def prefill(model: NeoUnify, prompt: PackedBatch) -> tuple[KVCache, torch.Tensor]:
    """Cache a one-sample, understanding-only prompt; returns (cache, next-token logits (vocab,))."""
    if prompt.num_samples != 1 or bool((prompt.roles == TokenRole.NOISY_IMAGE).any()):
        raise ValueError("a prompt is one sample of text and clean images")
    config = model.config
    cache = KVCache.empty(
        config.num_layers, config.num_kv_heads, config.head_dim, _device(model), model.dtype
    )
    und_out, _ = model.run_backbone(
        model.embed_understanding(prompt),
        model.no_tokens(_device(model)),
        prompt.positions,
        prompt.mask_fields,
        cache,
        write_cache=True,
    )
    return cache, model.lm_head(model.und_norm(und_out[-1]))


@torch.no_grad()
def decode_step(model: NeoUnify, cache: KVCache, token_id: int) -> torch.Tensor:
    """Append one text token at T = cache.next_t; returns the next-token logits (vocab,)."""
    device = _device(model)
    t_index = torch.tensor([cache.next_t], device=device)
    positions = torch.stack((t_index, torch.zeros_like(t_index), torch.zeros_like(t_index)))
    fields = MaskFields(
        t_index=t_index,
        sample_id=torch.zeros_like(t_index),
        image_id=torch.full_like(t_index, NO_IMAGE),
        twin_of=torch.full_like(t_index, NO_IMAGE),
        noisy=torch.zeros(1, dtype=torch.bool, device=device),
    )
    und_out, _ = model.run_backbone(
        model.embed_text(torch.tensor([token_id], device=device)),
        model.no_tokens(device),
        positions,
        fields,
        cache,
        write_cache=True,
    )
    return model.lm_head(model.und_norm(und_out[-1]))


def pick_token(
    logits: torch.Tensor,
    top_p: float | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> int:
    """Greedy when top_p is None, else nucleus sampling: the smallest set of most likely tokens
    whose probability reaches top_p, renormalised. Sampling runs on CPU so a CPU generator works."""
    if top_p is None:
        return int(logits.argmax())
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    sorted_probs, sorted_ids = probs.sort(descending=True)
    mass_before = sorted_probs.cumsum(0) - sorted_probs
    sorted_probs = torch.where(mass_before < top_p, sorted_probs, torch.zeros_like(sorted_probs))
    choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1, generator=generator)
    return int(sorted_ids[choice])


@torch.no_grad()
def generate_text(
    model: NeoUnify,
    builder: SequenceBuilder,
    prompt: Sequence[Segment],
    max_new_tokens: int,
    *,
    top_p: float | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `prompt` (e.g. `[Image(pixels), Text(question_ids)]`) until <eos> or the budget.

    Returns the new token ids (ending with <eos> when one was produced). Greedy unless top_p is set.
    """
    cache, logits = prefill(model, builder.pack([prompt]).to(_device(model)))
    new_tokens: list[int] = []
    for _ in range(max_new_tokens):
        token = pick_token(logits, top_p, temperature, generator)
        new_tokens.append(token)
        if token == model.config.eos_id:
            break
        logits = decode_step(model, cache, token)
    return new_tokens


def predicted_velocity(
    model: NeoUnify, noisy: torch.Tensor, t: float, sigma: float, prefix: KVCache
) -> torch.Tensor:
    """Velocity (3, H, W) the model implies for z_t (3, H, W) after `prefix` (cache read, not written).

    The building block of any sampler: `generate_image` runs it per step and per CFG branch.
    """
    config = model.config
    patch = config.token_patch
    height, width = noisy.shape[1:]
    positions = image_grid_positions(height // patch, width // patch, prefix.next_t).to(
        noisy.device
    )
    count = positions.shape[1]
    fresh_image_id = int(prefix.fields.image_id.max()) + 1 if len(prefix) else 0
    fields = MaskFields(
        t_index=positions[0],
        sample_id=torch.zeros_like(positions[0]),
        image_id=torch.full_like(positions[0], fresh_image_id),
        twin_of=torch.full_like(positions[0], NO_IMAGE),
        noisy=torch.ones(count, dtype=torch.bool, device=noisy.device),
    )
    _, gen_out = model.run_backbone(
        model.no_tokens(noisy.device),
        model.embed_noisy_image(noisy, t, sigma),
        positions,
        fields,
        prefix,
    )
    clean = unpatchify(model.predict_clean_patches(gen_out).float(), height, width, patch)
    return velocity(clean, noisy, t, config.t_eps_sample)


@torch.no_grad()
def generate_image(
    model: NeoUnify,
    builder: SequenceBuilder,
    caption_ids: Sequence[int],
    height: int,
    width: int,
    *,
    steps: int = 50,
    cfg_scale: float = 4.0,
    shift: float = 3.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Text-to-image: Euler from t = 0 (noise) to 1 over shifted times, with classifier-free guidance.

    Sides must be multiples of the token patch (32). The unconditional prompt is the caption-dropped
    training sample (`<img>` alone). Same generator state -> same image. Returns (3, H, W) in [-1, 1].
    """
    config = model.config
    patch = config.token_patch
    if height % patch or width % patch:
        raise ValueError(f"image sides must be multiples of {patch}, got {height}x{width}")
    device = _device(model)

    def cached_prompt(ids: Sequence[int]) -> KVCache:
        return prefill(model, builder.pack([builder.image_generation_prompt(ids)]).to(device))[0]

    conditional = cached_prompt(caption_ids)
    unconditional = cached_prompt([]) if cfg_scale != 1.0 else None
    sigma = noise_scale(height, width, patch, config.noise_base_tokens, config.noise_scale_max)
    noisy = sigma * torch.randn(3, height, width, generator=generator).to(device)
    times = shifted_timesteps(steps, shift).tolist()
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        v = predicted_velocity(model, noisy, t, sigma, conditional)
        if unconditional is not None:
            v_uncond = predicted_velocity(model, noisy, t, sigma, unconditional)
            v = v_uncond + cfg_scale * (v - v_uncond)
        noisy = noisy + (t_next - t) * v
    return noisy.clamp(-1, 1)
