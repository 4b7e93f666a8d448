"""KV cache for inference: per-layer post-RoPE keys/values plus the mask fields of cached tokens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.mask import MaskFields


@dataclass
class KVCache:
    keys: list[torch.Tensor]  # per layer (Hkv, L, D)
    values: list[torch.Tensor]  # per layer (Hkv, L, D)
    fields: MaskFields  # (L,) each: the cached tokens, for masking new queries against them
    next_t: int  # T position of the next token appended after the cached ones

    @classmethod
    def empty(
        cls,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> KVCache:
        def nothing(dtype: torch.dtype) -> torch.Tensor:
            return torch.empty(0, dtype=dtype, device=device)

        kv = [
            torch.empty(num_kv_heads, 0, head_dim, device=device, dtype=dtype)
            for _ in range(num_layers)
        ]
        fields = MaskFields(
            t_index=nothing(torch.long),
            sample_id=nothing(torch.long),
            image_id=nothing(torch.long),
            twin_of=nothing(torch.long),
            noisy=nothing(torch.bool),
        )
        return cls(keys=kv, values=list(kv), fields=fields, next_t=0)

    def __len__(self) -> int:
        return self.fields.t_index.shape[0]

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.keys[index], self.values[index]

    def extend(
        self, layer_kv: Sequence[tuple[torch.Tensor, torch.Tensor]], fields: MaskFields, next_t: int
    ) -> None:
        """Append one (keys, values) per layer for tokens described by `fields` (never noisy ones)."""
        if bool(fields.noisy.any()):
            raise ValueError("noisy tokens are never cached: denoising steps only read the prefix")
        for i, (k, v) in enumerate(layer_kv):
            self.keys[i] = torch.cat((self.keys[i], k), dim=1)
            self.values[i] = torch.cat((self.values[i], v), dim=1)
        self.fields = self.fields.concat(fields)
        self.next_t = next_t
