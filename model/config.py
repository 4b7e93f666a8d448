"""`NeoConfig`: every number that fixes the NEO-unify architecture.

The config is saved inside every checkpoint (see `model.checkpoint`), so a checkpoint alone rebuilds
its model. Presets: `tiny` (tests, demo, CPU), `2b` (Qwen3-1.7B shapes), `8b` (Qwen3-8B shapes plus
six pre-buffer layers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Byte-level vocabulary of the tiny preset: ids 0-255 are bytes, then the specials.
BYTE_IMG_START_ID = 256
BYTE_IMG_END_ID = 257
BYTE_EOS_ID = 258
BYTE_PAD_ID = 259
BYTE_VOCAB_SIZE = 260

# Qwen3 tokenizer ids of the specials NEO reuses.
QWEN_VISION_START_ID = 151652  # <|vision_start|>
QWEN_VISION_END_ID = 151653  # <|vision_end|>
QWEN_IM_END_ID = 151645  # <|im_end|>
QWEN_ENDOFTEXT_ID = 151643  # <|endoftext|>
QWEN_VOCAB_SIZE = 151936


@dataclass(frozen=True)
class NeoConfig:
    """Architecture of one NEO-unify model (both MoT streams share these shapes)."""

    # Backbone (Qwen3 decoder-layer shapes).
    vocab_size: int = QWEN_VOCAB_SIZE
    hidden_size: int = 2048
    num_layers: int = 28
    num_prebuffer_layers: int = 0  # leading layers with no Qwen3 counterpart (8B: 6)
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    ffn_size: int = 6144
    rms_norm_eps: float = 1e-6
    init_std: float = 0.02

    # Native 3-D RoPE. `spatial_rope=False` gives every rotary pair to T (plain 1-D RoPE, the
    # Qwen3-parity mode; see model/rope.py for why 3-D RoPE cannot reduce to Qwen3 exactly).
    rope_theta_t: float = 5_000_000.0
    rope_theta_hw: float = 10_000.0
    spatial_rope: bool = True

    # Encoder-free image embedders and pixel head. One token = one `token_patch` square.
    token_patch: int = 32
    embed_patch: int = 16  # first conv kernel/stride; token_patch / embed_patch = merge factor
    embed_channels: int = 1024  # C1
    embed_rope_theta: float = 10_000.0
    pixel_head_size: int = 4096

    # Flow matching.
    timestep_embed_dim: int = 256
    noise_base_tokens: int = 64  # N_0: image of 64 tokens (256x256) gets sigma_R = 1
    noise_scale_max: float = 8.0  # sigma_max
    t_eps_train: float = 0.05
    t_eps_sample: float = 0.02

    # Special token ids.
    img_start_id: int = QWEN_VISION_START_ID
    img_end_id: int = QWEN_VISION_END_ID
    eos_id: int = QWEN_IM_END_ID
    pad_id: int = QWEN_ENDOFTEXT_ID

    # "sdpa": dense boolean mask (any device). "flex": FlexAttention block mask (compiled on CUDA).
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        if self.spatial_rope and self.head_dim % 8:
            raise ValueError("3-D RoPE needs head_dim divisible by 8 (pairs split T/H/T/W)")
        if self.token_patch % self.embed_patch:
            raise ValueError("token_patch must be a multiple of embed_patch")
        if self.embed_channels % 4:
            raise ValueError("embed_channels must be divisible by 4 (two rotary halves of pairs)")
        if self.num_prebuffer_layers > self.num_layers:
            raise ValueError("num_prebuffer_layers exceeds num_layers")
        if self.attention not in ("sdpa", "flex"):
            raise ValueError(f"unknown attention backend {self.attention!r}")

    @property
    def pixels_per_token(self) -> int:
        """Values the pixel head predicts per token: 3 * token_patch^2 (3072 at 32 px)."""
        return 3 * self.token_patch * self.token_patch

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> NeoConfig:
        """The named preset (`tiny`, `2b`, `8b`) with optional field overrides."""
        try:
            fields = _PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(_PRESETS)}") from None
        return cls(**{**fields, **overrides})

    def replace(self, **changes: Any) -> NeoConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of builtins (safe for `torch.load(weights_only=True)` and JSON)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NeoConfig:
        """Inverse of `to_dict`; unknown keys are an error so a typo never goes unnoticed."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown NeoConfig fields: {sorted(unknown)}")
        return cls(**values)


_BYTE_TOKENS = dict(
    vocab_size=BYTE_VOCAB_SIZE,
    img_start_id=BYTE_IMG_START_ID,
    img_end_id=BYTE_IMG_END_ID,
    eos_id=BYTE_EOS_ID,
    pad_id=BYTE_PAD_ID,
)

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        **_BYTE_TOKENS,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        ffn_size=384,
        embed_channels=64,
        pixel_head_size=256,
    ),
    # Qwen3-1.7B.
    "2b": dict(
        hidden_size=2048,
        num_layers=28,
        num_heads=16,
        num_kv_heads=8,
        head_dim=128,
        ffn_size=6144,
    ),
    # Qwen3-8B's 36 layers behind 6 pre-buffer layers.
    "8b": dict(
        hidden_size=4096,
        num_layers=42,
        num_prebuffer_layers=6,
        num_heads=32,
        num_kv_heads=8,
        head_dim=128,
        ffn_size=12288,
    ),
}

PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
