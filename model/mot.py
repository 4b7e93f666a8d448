"""Mixture-of-Transformers layer: two full Qwen3 decoder-layer weight sets, one joint attention.

Per layer, each stream computes q/k/v for its own tokens with its own weights; the streams' q/k/v are
concatenated [understanding; generation] and go through ONE masked attention; each stream then applies
its own o-proj and MLP to its slice. Sequences are unbatched: one packed sequence of L tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.attention import Attend
from model.config import NeoConfig
from model.rmsnorm import RMSNorm
from model.rope import apply_rope


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, ffn_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, ffn_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, ffn_size, bias=False)
        self.down_proj = nn.Linear(ffn_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class StreamBlock(nn.Module):
    """One stream's weights of a MoT layer: exactly a Qwen3 decoder layer's parameters."""

    def __init__(self, config: NeoConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        q_size = config.num_heads * config.head_dim
        kv_size = config.num_kv_heads * config.head_dim
        self.input_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.q_proj = nn.Linear(config.hidden_size, q_size, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, kv_size, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, kv_size, bias=False)
        self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps)
        self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps)
        self.o_proj = nn.Linear(q_size, config.hidden_size, bias=False)
        self.post_attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.ffn_size)

    def project_qkv(
        self, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """hidden (L, hidden), cos/sin (L, D) -> q (Hq, L, D), k (Hkv, L, D), v (Hkv, L, D)."""
        x = self.input_norm(hidden)
        length = x.shape[0]
        q = self.q_proj(x).view(length, self.num_heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(x).view(length, self.num_kv_heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(x).view(length, self.num_kv_heads, self.head_dim).transpose(0, 1)
        q = apply_rope(self.q_norm(q), cos, sin)
        k = apply_rope(self.k_norm(k), cos, sin)
        return q, k, v

    def finish(self, hidden: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Residual o-proj then residual MLP: (L, hidden), (L, Hq * D) -> (L, hidden)."""
        hidden = hidden + self.o_proj(attended)
        return hidden + self.mlp(self.post_attn_norm(hidden))


class MoTLayer(nn.Module):
    def __init__(self, config: NeoConfig) -> None:
        super().__init__()
        self.understanding = StreamBlock(config)
        self.generation = StreamBlock(config)

    def forward(
        self,
        und_hidden: torch.Tensor,
        gen_hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        attend: Attend,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One joint-attention layer over [past; understanding; generation].

        und_hidden (Lu, hidden), gen_hidden (Lg, hidden); cos/sin (Lu + Lg, D) in the same order;
        past: cached (keys, values) prepended to this call's keys, or None.
        `attend` must be built for queries [und; gen] and keys [past; und; gen].
        Returns new und_hidden, new gen_hidden and this call's own (keys, values) (Hkv, Lu + Lg, D).
        A stream with no tokens is skipped entirely, so its parameters get no gradient.
        """
        num_und = und_hidden.shape[0]
        active = [
            (block, hidden, start)
            for block, hidden, start in (
                (self.understanding, und_hidden, 0),
                (self.generation, gen_hidden, num_und),
            )
            if hidden.shape[0]
        ]
        projected = [
            block.project_qkv(
                hidden, cos[start : start + len(hidden)], sin[start : start + len(hidden)]
            )
            for block, hidden, start in active
        ]
        q, k, v = (torch.cat(parts, dim=1) for parts in zip(*projected, strict=True))
        keys, values = k, v
        if past is not None:
            keys, values = torch.cat((past[0], k), dim=1), torch.cat((past[1], v), dim=1)
        attended = attend(q, keys, values)

        finished = {
            block: block.finish(hidden, attended[start : start + len(hidden)])
            for block, hidden, start in active
        }
        und_out = finished.get(self.understanding, und_hidden)
        gen_out = finished.get(self.generation, gen_hidden)
        return und_out, gen_out, (k, v)
