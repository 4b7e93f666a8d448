"""3-D RoPE: pair layout, exact agreement with Qwen3's rotary where it must agree, relativity."""

from __future__ import annotations

import torch
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3RotaryEmbedding, apply_rotary_pos_emb

from model.image_embed import rotate_grid_features
from model.rope import AXIS_H, AXIS_T, AXIS_W, Rope3D, apply_rope, rope_pair_table

HEAD_DIM, THETA = 32, 1_000_000.0


def _qwen_rotation(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Qwen3's own rotary on x (heads, L, D) at 1-D positions (L,)."""
    config = Qwen3Config(head_dim=HEAD_DIM, hidden_size=64, num_attention_heads=2, rope_theta=THETA)
    cos, sin = Qwen3RotaryEmbedding(config)(x, positions[None])
    rotated, _ = apply_rotary_pos_emb(x[None], x[None], cos, sin)
    return rotated[0]


def _text_positions(length: int) -> torch.Tensor:
    t = torch.arange(length)
    return torch.stack((t, torch.zeros_like(t), torch.zeros_like(t)))


def test_pair_layout_splits_head_half_quarter_quarter():
    axis, inv_freq = rope_pair_table(128, 5e6, 1e4, spatial=True)
    assert axis[:8].tolist() == [AXIS_T, AXIS_H, AXIS_T, AXIS_W] * 2
    assert [(axis == a).sum().item() * 2 for a in (AXIS_T, AXIS_H, AXIS_W)] == [64, 32, 32]
    # T gets NEO's ladder over 64 dims (theta_T), H and W NEO's ladder over 32 dims (theta_HW)
    assert torch.allclose(inv_freq[axis == AXIS_T], 1 / 5e6 ** (torch.arange(0, 64, 2) / 64))
    assert torch.allclose(inv_freq[axis == AXIS_H], 1 / 1e4 ** (torch.arange(0, 32, 2) / 32))
    assert torch.equal(inv_freq[axis == AXIS_H], inv_freq[axis == AXIS_W])


def test_one_dimensional_mode_is_exactly_qwen3_rope():
    x = torch.randn(2, 50, HEAD_DIM)
    cos, sin = Rope3D(HEAD_DIM, THETA, 1e4, spatial=False)(_text_positions(50))
    assert torch.equal(apply_rope(x, cos, sin), _qwen_rotation(x, torch.arange(50)))


def test_three_d_text_rotation_matches_qwen3_on_the_t_half_only():
    x = torch.randn(2, 50, HEAD_DIM)
    cos, sin = Rope3D(HEAD_DIM, THETA, 1e4, spatial=True)(_text_positions(50))
    ours, qwen = apply_rope(x, cos, sin), _qwen_rotation(x, torch.arange(50))
    axis, _ = rope_pair_table(HEAD_DIM, THETA, 1e4, spatial=True)
    t_dims = torch.cat((axis, axis)) == AXIS_T
    assert torch.equal(ours[..., t_dims], qwen[..., t_dims])
    # H = W = 0 for text: the spatial quarter-pairs are not rotated at all (Qwen3 would rotate them)
    assert torch.equal(ours[..., ~t_dims], x[..., ~t_dims])
    assert not torch.allclose(qwen[..., ~t_dims], x[..., ~t_dims])


def test_attention_scores_depend_only_on_relative_positions():
    rope = Rope3D(HEAD_DIM, 5e6, 1e4, spatial=True)
    q, k = torch.randn(1, 1, HEAD_DIM), torch.randn(1, 1, HEAD_DIM)

    def score(q_pos: list[int], k_pos: list[int]) -> torch.Tensor:
        cos, sin = rope(torch.tensor([q_pos, k_pos]).T)
        return (apply_rope(q, cos[:1], sin[:1]) * apply_rope(k, cos[1:], sin[1:])).sum()

    base = score([7, 2, 3], [7, 0, 1])
    assert torch.allclose(base, score([9, 5, 4], [9, 3, 2]), atol=1e-5)  # same offsets, shifted
    assert not torch.allclose(base, score([7, 2, 3], [7, 1, 1]), atol=1e-3)  # H offset changed


def test_image_embedder_rotation_by_column_then_row():
    features = torch.randn(
        1, 8, 3, 4
    )  # C1 = 8: channels 0-3 turn with the column, 4-7 with the row
    rotated = rotate_grid_features(features, theta=10_000.0)
    assert torch.allclose(rotated[..., 0, 0], features[..., 0, 0])  # origin: no rotation
    assert torch.allclose(
        rotated.norm(dim=1), features.norm(dim=1), atol=1e-6
    )  # rotations keep norms
    # First row, later column: only the column half moves; first column, later row: only the row half.
    assert torch.allclose(rotated[0, 4:, 0, 2], features[0, 4:, 0, 2])
    assert not torch.allclose(rotated[0, :4, 0, 2], features[0, :4, 0, 2])
    assert torch.allclose(rotated[0, :4, 2, 0], features[0, :4, 2, 0])
    assert not torch.allclose(rotated[0, 4:, 2, 0], features[0, 4:, 2, 0])
