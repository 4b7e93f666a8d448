"""Presets have the intended shapes; checkpoints carry their config and reload exactly."""

from __future__ import annotations

import pytest
import torch
from neo_helpers import byte_ids, random_image

from model import NeoConfig, NeoUnify, build_model, load_checkpoint, save_checkpoint


def _meta_model(config: NeoConfig) -> NeoUnify:
    return build_model(config, device="meta")  # shapes only, no memory


def _qwen3_layer_params(hidden: int, heads: int, kv_heads: int, head_dim: int, ffn: int) -> int:
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads) + 2 * head_dim
    return attention + 3 * hidden * ffn + 2 * hidden


@pytest.mark.parametrize(
    ("preset", "qwen_layers", "shape"),
    [("2b", 28, (2048, 16, 8, 128, 6144)), ("8b", 36, (4096, 32, 8, 128, 12288))],
)
def test_large_presets_match_qwen3_shapes(preset, qwen_layers, shape):
    config = NeoConfig.preset(preset)
    assert config.num_layers - config.num_prebuffer_layers == qwen_layers
    assert config.vocab_size == 151936
    model = _meta_model(config)
    per_layer = sum(p.numel() for p in model.layers[0].understanding.parameters())
    assert per_layer == _qwen3_layer_params(*shape)
    assert sum(p.numel() for p in model.layers[0].generation.parameters()) == per_layer


def test_8b_has_42_layers_with_6_prebuffer():
    config = NeoConfig.preset("8b")
    assert (config.num_layers, config.num_prebuffer_layers, config.embed_channels) == (42, 6, 1024)


def test_config_round_trip_and_validation():
    config = NeoConfig.preset("tiny", hidden_size=96)
    assert NeoConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown NeoConfig fields"):
        NeoConfig.from_dict({**config.to_dict(), "hiden_size": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        NeoConfig.preset("70b")
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        NeoConfig.preset("tiny", num_kv_heads=3)


def test_checkpoint_round_trip(tmp_path, builder):
    torch.manual_seed(0)
    model = NeoUnify(NeoConfig.preset("tiny", num_layers=1))
    path = tmp_path / "ckpt" / "step_10.pt"
    save_checkpoint(path, model, extra={"step": 10})
    restored, extra = load_checkpoint(path)
    assert restored.config == model.config and extra == {"step": 10}
    batch = builder.pack([builder.image_to_text(random_image(32, 32), byte_ids("hi"))])
    with torch.no_grad():
        assert torch.equal(model(batch).ce, restored(batch).ce)
    assert not list(tmp_path.glob("ckpt/*.tmp"))


def test_checkpoint_keeps_dtype(tmp_path):
    model = build_model(NeoConfig.preset("tiny", num_layers=1), dtype=torch.bfloat16)
    save_checkpoint(tmp_path / "bf16.pt", model)
    restored, _ = load_checkpoint(tmp_path / "bf16.pt")
    assert restored.dtype == torch.bfloat16 and restored.rope.inv_freq.dtype == torch.float32
