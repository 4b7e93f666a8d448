"""The training attention mask: four rules, each a small pure function, combined by AND.

Every rule takes the per-token fields of the queries and of the keys as broadcastable tensors and
returns "may attend". `dense_mask` broadcasts (Lq, 1) against (1, Lk); a FlexAttention `mask_mod`
calls the very same functions on gathered indices (see model/attention.py), so both backends share
one definition.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

NO_IMAGE = -1


class MaskFields(NamedTuple):
    """Per-token facts the mask needs; every field has the same shape (L,) unless broadcast."""

    t_index: torch.Tensor  # T component of the 3-D RoPE position
    sample_id: torch.Tensor  # which packed sample the token belongs to
    image_id: torch.Tensor  # image the token is a patch of, NO_IMAGE for text and markers
    twin_of: torch.Tensor  # for a clean copy of a generated image: its noisy twin's image id
    noisy: torch.Tensor  # bool: token of an image being generated (z_t)

    def select(self, index: torch.Tensor) -> MaskFields:
        return MaskFields(*(field[index] for field in self))

    def concat(self, other: MaskFields) -> MaskFields:
        return MaskFields(*(torch.cat((a, b)) for a, b in zip(self, other, strict=True)))

    def to(self, device: torch.device | str) -> MaskFields:
        return MaskFields(*(field.to(device) for field in self))


def _same_image(q: MaskFields, k: MaskFields) -> torch.Tensor:
    return (q.image_id != NO_IMAGE) & (q.image_id == k.image_id)


def rule_causal_or_same_image(q: MaskFields, k: MaskFields) -> torch.Tensor:
    """Rule 1: T_q >= T_k, or both are patches of one image (text causal, images bidirectional)."""
    return (q.t_index >= k.t_index) | _same_image(q, k)


def rule_noisy_keys_private(q: MaskFields, k: MaskFields) -> torch.Tensor:
    """Rule 2: a noisy key is seen only by queries of the same noisy image."""
    return ~k.noisy | (q.noisy & _same_image(q, k))


def rule_no_clean_twin(q: MaskFields, k: MaskFields) -> torch.Tensor:
    """Rule 3: a noisy block never sees its own clean copy; clean tokens never see noisy ones."""
    sees_own_answer = q.noisy & (k.twin_of != NO_IMAGE) & (k.twin_of == q.image_id)
    clean_sees_noisy = ~q.noisy & k.noisy
    return ~(sees_own_answer | clean_sees_noisy)


def rule_same_sample(q: MaskFields, k: MaskFields) -> torch.Tensor:
    """Rule 4: samples packed into one sequence never see each other."""
    return q.sample_id == k.sample_id


MASK_RULES = (
    rule_causal_or_same_image,
    rule_noisy_keys_private,
    rule_no_clean_twin,
    rule_same_sample,
)


def may_attend(q: MaskFields, k: MaskFields) -> torch.Tensor:
    """AND of the four rules, elementwise over broadcast q/k fields."""
    allowed = MASK_RULES[0](q, k)
    for rule in MASK_RULES[1:]:
        allowed = allowed & rule(q, k)
    return allowed


def dense_mask(queries: MaskFields, keys: MaskFields) -> torch.Tensor:
    """(Lq,) and (Lk,) fields -> bool (Lq, Lk), True where the query may attend the key."""
    q = MaskFields(*(field[:, None] for field in queries))
    k = MaskFields(*(field[None, :] for field in keys))
    return may_attend(q, k)
