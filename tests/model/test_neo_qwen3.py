"""Loading a Qwen3 checkpoint: text logits match transformers' Qwen3ForCausalLM in fp32."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from model import SequenceBuilder, Text, from_qwen3, neo_config_from_qwen3
from model.qwen3 import neo_parameter_name


def _save_random_qwen3(
    folder: Path, tie_embeddings: bool, max_shard_size: str | None = None
) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie_embeddings,
    )
    torch.manual_seed(0)
    qwen = Qwen3ForCausalLM(config).eval()
    with torch.no_grad():  # non-trivial norms, so a swapped q_norm/k_norm could not hide
        for name, parameter in qwen.named_parameters():
            parameter.copy_(
                1 + 0.2 * torch.randn_like(parameter)
                if "norm" in name
                else 0.1 * torch.randn_like(parameter)
            )
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    qwen.save_pretrained(folder, **kwargs)
    return qwen


@pytest.mark.parametrize(("tie_embeddings", "max_shard_size"), [(False, "40KB"), (True, None)])
def test_text_logits_match_transformers(tmp_path, tie_embeddings, max_shard_size):
    qwen = _save_random_qwen3(tmp_path, tie_embeddings, max_shard_size)
    if max_shard_size:
        assert (tmp_path / "model.safetensors.index.json").exists()
    # 1-D RoPE mode: the only mode in which text RoPE can equal Qwen3's (see model/rope.py).
    model = from_qwen3(tmp_path, spatial_rope=False).eval()
    assert model.config.rope_theta_t == 1_000_000.0  # T uses the checkpoint's theta

    ids = torch.randint(0, 300, (40,), generator=torch.Generator().manual_seed(1))
    batch = SequenceBuilder(model.config).pack([[Text(ids.tolist())]])
    with torch.no_grad():
        ours = model.understanding_logits(batch)
        reference = qwen(ids[None]).logits[0]
    assert (ours - reference).abs().max() < 1e-4


def test_generation_stream_copy_or_random(tmp_path):
    _save_random_qwen3(tmp_path, tie_embeddings=False)
    copied = from_qwen3(tmp_path, generation_init="copy")
    layer = copied.layers[1]
    assert torch.equal(layer.generation.mlp.up_proj.weight, layer.understanding.mlp.up_proj.weight)
    assert torch.equal(copied.gen_norm.weight, copied.und_norm.weight)
    fresh = from_qwen3(tmp_path, generation_init="random")
    assert torch.equal(
        fresh.layers[1].understanding.q_proj.weight, layer.understanding.q_proj.weight
    )
    assert not torch.allclose(
        fresh.layers[1].generation.q_proj.weight, layer.understanding.q_proj.weight
    )


def test_prebuffer_layers_sit_in_front(tmp_path):
    _save_random_qwen3(tmp_path, tie_embeddings=False)
    config = neo_config_from_qwen3(tmp_path, num_prebuffer_layers=2)
    assert config.num_layers == 5 and config.num_prebuffer_layers == 2
    assert (
        neo_parameter_name("model.layers.0.self_attn.q_norm.weight", 6)
        == "layers.6.understanding.q_norm.weight"
    )
    model = from_qwen3(tmp_path, num_prebuffer_layers=2)
    qwen = Qwen3ForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(
        model.layers[2].understanding.k_proj.weight, qwen.model.layers[0].self_attn.k_proj.weight
    )


def test_unknown_tensor_names_are_rejected():
    with pytest.raises(KeyError, match="visual.patch_embed"):
        neo_parameter_name("visual.patch_embed.proj.weight")
