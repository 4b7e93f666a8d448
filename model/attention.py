"""Masked attention kernels: SDPA with a dense boolean mask, or FlexAttention with a block mask.

`build_attention` turns query/key `MaskFields` into a callable `attend(q, k, v)`; the MoT layers only
ever see that callable, so the backend choice lives here and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from model.mask import MaskFields, dense_mask, may_attend

# attend(q (Hq, Lq, D), k (Hkv, Lk, D), v (Hkv, Lk, D)) -> (Lq, Hq * D)
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _merge_heads(out: torch.Tensor) -> torch.Tensor:
    """(1, H, L, D) -> (L, H * D)."""
    return out[0].transpose(0, 1).flatten(1)


def sdpa_attention(mask: torch.Tensor) -> Attend:
    """Attention under a dense bool mask (Lq, Lk); GQA heads are shared, not copied."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(
            q[None], k[None], v[None], attn_mask=mask, enable_gqa=q.shape[0] != k.shape[0]
        )
        return _merge_heads(out)

    return attend


@functools.cache
def _compiled_flex_attention() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    # Uncompiled flex attention materialises the full score matrix; compile where it pays off.
    return torch.compile(flex_attention) if torch.cuda.is_available() else flex_attention


def flex_attention(queries: MaskFields, keys: MaskFields) -> Attend:
    """Attention under a FlexAttention block mask built from the same rules as `dense_mask`."""
    from torch.nn.attention.flex_attention import create_block_mask

    def mask_mod(
        _batch: torch.Tensor, _head: torch.Tensor, q_index: torch.Tensor, k_index: torch.Tensor
    ) -> torch.Tensor:
        return may_attend(queries.select(q_index), keys.select(k_index))

    device = queries.t_index.device
    block_mask = create_block_mask(
        mask_mod, None, None, len(queries.t_index), len(keys.t_index), device=str(device)
    )
    kernel = _compiled_flex_attention()

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = kernel(
            q[None], k[None], v[None], block_mask=block_mask, enable_gqa=q.shape[0] != k.shape[0]
        )
        return _merge_heads(out)

    return attend


def build_attention(queries: MaskFields, keys: MaskFields, backend: str) -> Attend:
    if backend == "flex":
        return flex_attention(queries, keys)
    return sdpa_attention(dense_mask(queries, keys))
