"""NEO-unify: one MoT backbone that reads text and pixels and writes text and pixels.

Routing by token role: only the noisy patches of images being generated go through the generation
weights; everything else (text, markers, condition images, clean copies) goes through the
understanding weights. Token embedding and LM head belong to the understanding side.

Internally a packed sequence is reordered into stream order [understanding tokens; generation
tokens] (each part keeps its sequence order): attention is permutation-equivariant once the mask and
RoPE positions travel with the tokens, and stream order makes every per-stream step a contiguous slice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import build_attention
from model.conditioning import NoiseConditioner
from model.config import NeoConfig
from model.flow import add_noise, noise_scale, velocity
from model.image_embed import ImageEmbedder, embed_images, imagenet_normalize
from model.kv_cache import KVCache
from model.losses import LossBreakdown
from model.mask import MaskFields
from model.mot import MoTLayer
from model.pixel_head import PixelHead, patchify
from model.rmsnorm import RMSNorm
from model.rope import Rope3D
from model.sequence import IGNORE_INDEX, PackedBatch, TokenRole


class FlowTokens(NamedTuple):
    """Generation-stream inputs and targets, one row per noisy token in sequence order."""

    embeddings: torch.Tensor  # (Ng, hidden) noisy-patch embeddings + timestep/noise condition
    clean: torch.Tensor  # (Ng, 3 * patch^2) fp32 target patches x
    noisy: torch.Tensor  # (Ng, 3 * patch^2) fp32 input patches z_t
    t: torch.Tensor  # (Ng,) fp32
    image_ids: torch.Tensor  # (Ng,) long


class NeoUnify(nn.Module):
    def __init__(self, config: NeoConfig) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        image_embedder_args = (
            hidden,
            config.embed_channels,
            config.embed_patch,
            config.token_patch,
            config.embed_rope_theta,
        )
        # Understanding side.
        self.embed_tokens = nn.Embedding(config.vocab_size, hidden)
        self.und_image_embed = ImageEmbedder(*image_embedder_args)
        self.und_norm = RMSNorm(hidden, config.rms_norm_eps)
        self.lm_head = nn.Linear(hidden, config.vocab_size, bias=False)
        # Generation side.
        self.gen_image_embed = ImageEmbedder(*image_embedder_args)
        self.noise_conditioner = NoiseConditioner(
            hidden, config.timestep_embed_dim, config.noise_scale_max
        )
        self.gen_norm = RMSNorm(hidden, config.rms_norm_eps)
        self.pixel_head = PixelHead(hidden, config.pixel_head_size, config.token_patch)
        # Shared by both streams.
        self.layers = nn.ModuleList(MoTLayer(config) for _ in range(config.num_layers))
        self.rope = Rope3D(
            config.head_dim, config.rope_theta_t, config.rope_theta_hw, config.spatial_rope
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.init_std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    # Parameter groups ----------------------------------------------------------------------

    def generation_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that only generation-stream (noisy) tokens use."""
        yield from self.gen_image_embed.parameters()
        yield from self.noise_conditioner.parameters()
        yield from self.gen_norm.parameters()
        yield from self.pixel_head.parameters()
        for layer in self.layers:
            yield from layer.generation.parameters()

    def understanding_parameters(self) -> Iterator[nn.Parameter]:
        """All other parameters: text embedding, LM head, understanding embedder, layers and norm.

        Stage 2 freezes exactly these (`requires_grad_(False)`).
        """
        generation = {id(p) for p in self.generation_parameters()}
        return (p for p in self.parameters() if id(p) not in generation)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed_tokens.weight.dtype

    # Training ------------------------------------------------------------------------------

    def forward(self, batch: PackedBatch) -> LossBreakdown:
        """Unreduced per-token CE and velocity MSE of a packed batch (weighting: model.losses)."""
        und_index, gen_index = self._stream_indices(batch)
        order = torch.cat((und_index, gen_index))
        flow = self._embed_generation(batch)
        und_out, gen_out = self.run_backbone(
            self.embed_understanding(batch),
            flow.embeddings,
            batch.positions[:, order],
            batch.mask_fields.select(order),
        )
        ce, ce_sample_ids = self._text_loss(und_out, batch, und_index)
        return LossBreakdown(ce, ce_sample_ids, self._velocity_loss(gen_out, flow), flow.image_ids)

    def understanding_logits(self, batch: PackedBatch) -> torch.Tensor:
        """Uncached next-token logits (Lu, vocab) at every understanding token, in sequence order.

        Noisy tokens are left out: by mask rules 2-3 no understanding token ever sees them.
        """
        und_index, _ = self._stream_indices(batch)
        und_out, _ = self.run_backbone(
            self.embed_understanding(batch),
            self.no_tokens(und_index.device),
            batch.positions[:, und_index],
            batch.mask_fields.select(und_index),
        )
        return self.lm_head(self.und_norm(und_out))

    # Shared by training and inference ------------------------------------------------------

    def run_backbone(
        self,
        und_hidden: torch.Tensor,
        gen_hidden: torch.Tensor,
        positions: torch.Tensor,
        fields: MaskFields,
        cache: KVCache | None = None,
        write_cache: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All MoT layers over tokens in stream order; returns the two streams' last hidden states.

        und_hidden (Lu, hidden), gen_hidden (Lg, hidden); positions (3, Lu + Lg) and fields (Lu + Lg,)
        in the same [und; gen] order. With a cache, queries also attend the cached tokens; with
        `write_cache` this call's keys/values are appended to it (understanding-only calls).
        """
        cos, sin = self.rope(positions)
        key_fields = fields if cache is None else cache.fields.concat(fields)
        attend = build_attention(fields, key_fields, self.config.attention)
        new_kv = []
        for index, layer in enumerate(self.layers):
            past = cache.layer(index) if cache is not None else None
            und_hidden, gen_hidden, kv = layer(und_hidden, gen_hidden, cos, sin, attend, past)
            new_kv.append(kv)
        if write_cache:
            if cache is None:
                raise ValueError("write_cache needs a cache")
            cache.extend(new_kv, fields, next_t=int(positions[0].max()) + 1)
        return und_hidden, gen_hidden

    def embed_text(self, token_ids: torch.Tensor) -> torch.Tensor:
        """(L,) -> (L, hidden)."""
        return self.embed_tokens(token_ids)

    def embed_understanding(self, batch: PackedBatch) -> torch.Tensor:
        """Text/marker embeddings and clean-image patches -> (Lu, hidden), in sequence order."""
        und_index, _ = self._stream_indices(batch)
        roles = batch.roles[und_index]
        hidden = torch.zeros(
            len(und_index), self.config.hidden_size, dtype=self.dtype, device=roles.device
        )
        text_rows = ((roles == TokenRole.TEXT) | (roles == TokenRole.MARKER)).nonzero().squeeze(1)
        text = self.embed_text(batch.input_ids[und_index][text_rows])
        hidden = hidden.index_put((text_rows,), text.to(hidden.dtype))
        image_rows = (roles == TokenRole.CLEAN_IMAGE).nonzero().squeeze(1)
        if len(image_rows):
            image_ids = torch.unique_consecutive(batch.image_ids[und_index][image_rows]).tolist()
            pixels = [imagenet_normalize(batch.images[i]).to(self.dtype) for i in image_ids]
            patches = embed_images(self.und_image_embed, pixels)
            hidden = hidden.index_put((image_rows,), patches.to(hidden.dtype))
        return hidden

    def no_tokens(self, device: torch.device) -> torch.Tensor:
        """(0, hidden): the hidden states of a stream that has no tokens in this call."""
        return torch.zeros(0, self.config.hidden_size, dtype=self.dtype, device=device)

    def embed_noisy_image(self, noisy: torch.Tensor, t: float, sigma: float) -> torch.Tensor:
        """One image being generated: z_t (3, H, W) -> (N, hidden) tokens with the condition added."""
        tokens = self.gen_image_embed(noisy[None].to(self.dtype))[0]
        device = noisy.device
        condition = self.noise_conditioner(
            torch.tensor([t], device=device), torch.tensor([sigma], device=device)
        )
        return (tokens + condition).to(self.dtype)

    def predict_clean_patches(self, gen_hidden: torch.Tensor) -> torch.Tensor:
        """Generation-stream output (Ng, hidden) -> predicted clean patches x_hat (Ng, 3 * patch^2)."""
        return self.pixel_head(self.gen_norm(gen_hidden))

    # Internals -----------------------------------------------------------------------------

    @staticmethod
    def _stream_indices(batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
        noisy = batch.roles == TokenRole.NOISY_IMAGE
        return (~noisy).nonzero().squeeze(1), noisy.nonzero().squeeze(1)

    def _embed_generation(self, batch: PackedBatch) -> FlowTokens:
        """Noise every generated image, embed z_t, add its condition; targets for the v-loss."""
        patch = self.config.token_patch
        device = batch.input_ids.device
        clean, noisy, condition_sigmas, token_counts = [], [], [], []
        for image_id, t, eps in zip(
            batch.noisy_image_ids.tolist(), batch.timesteps, batch.noise, strict=True
        ):
            x = batch.images[image_id].float()
            height, width = x.shape[1:]
            sigma = noise_scale(
                height, width, patch, self.config.noise_base_tokens, self.config.noise_scale_max
            )
            clean.append(x)
            noisy.append(add_noise(x, t, sigma, eps.float()))
            condition_sigmas.append(sigma)
            token_counts.append((height // patch) * (width // patch))
        if not clean:
            empty = torch.zeros(0, self.config.pixels_per_token, device=device)
            return FlowTokens(
                embeddings=self.no_tokens(device),
                clean=empty,
                noisy=empty,
                t=torch.zeros(0, device=device),
                image_ids=torch.zeros(0, dtype=torch.long, device=device),
            )
        counts = torch.tensor(token_counts, device=device)
        t = batch.timesteps.float().to(device)
        condition = self.noise_conditioner(t, torch.tensor(condition_sigmas, device=device))
        tokens = embed_images(self.gen_image_embed, [z.to(self.dtype) for z in noisy])
        return FlowTokens(
            # Under autocast both are bf16; the residual stream keeps the weights' dtype.
            embeddings=(tokens + condition.repeat_interleave(counts, dim=0)).to(self.dtype),
            clean=torch.cat([patchify(x, patch) for x in clean]),
            noisy=torch.cat([patchify(z, patch) for z in noisy]),
            t=t.repeat_interleave(counts),
            image_ids=batch.noisy_image_ids.to(device).repeat_interleave(counts),
        )

    def _text_loss(
        self, und_out: torch.Tensor, batch: PackedBatch, und_index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token CE at supervised positions: (n,), and the sample id of each term: (n,)."""
        labels = batch.labels[und_index]
        rows = (labels != IGNORE_INDEX).nonzero().squeeze(1)
        logits = self.lm_head(self.und_norm(und_out[rows]))
        ce = F.cross_entropy(logits.float(), labels[rows], reduction="none")
        return ce, batch.sample_ids[und_index][rows]

    def _velocity_loss(self, gen_out: torch.Tensor, flow: FlowTokens) -> torch.Tensor:
        """x-prediction converted to velocity, regressed on the true velocity: (Ng,) per-token MSE."""
        if not len(gen_out):
            return flow.t.new_zeros(0)
        t_eps = self.config.t_eps_train
        x_hat = self.predict_clean_patches(gen_out).float()
        t = flow.t[:, None]
        v_hat = velocity(x_hat, flow.noisy, t, t_eps)
        v_true = velocity(flow.clean, flow.noisy, t, t_eps)
        return (v_hat - v_true).pow(2).mean(dim=-1)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(
    config: NeoConfig, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> NeoUnify:
    """Create the model directly on `device` in `dtype`: no fp32 CPU copy of 2x an LLM on the way."""
    with torch.device(device), _default_dtype(dtype):
        return NeoUnify(config)
