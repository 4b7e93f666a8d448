"""Start NEO-unify from a local Qwen3 causal-LM checkpoint (config.json + *.safetensors, maybe sharded).

Qwen3 weights fill the understanding stream; the generation stream starts as a copy or random.
The tensor-name mapping is spelled out in model/QWEN3_MAPPING.md and in `neo_parameter_name`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open

from model.config import NeoConfig
from model.model import NeoUnify, build_model

# Qwen3 decoder-layer tensor -> our StreamBlock tensor.
QWEN3_LAYER_NAMES: dict[str, str] = {
    "input_layernorm.weight": "input_norm.weight",
    "self_attn.q_proj.weight": "q_proj.weight",
    "self_attn.k_proj.weight": "k_proj.weight",
    "self_attn.v_proj.weight": "v_proj.weight",
    "self_attn.o_proj.weight": "o_proj.weight",
    "self_attn.q_norm.weight": "q_norm.weight",
    "self_attn.k_norm.weight": "k_norm.weight",
    "post_attention_layernorm.weight": "post_attn_norm.weight",
    "mlp.gate_proj.weight": "mlp.gate_proj.weight",
    "mlp.up_proj.weight": "mlp.up_proj.weight",
    "mlp.down_proj.weight": "mlp.down_proj.weight",
}
QWEN3_TOP_NAMES: dict[str, str] = {
    "model.embed_tokens.weight": "embed_tokens.weight",
    "model.norm.weight": "und_norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_LAYER_PATTERN = re.compile(r"model\.layers\.(\d+)\.(.+)")


def neo_parameter_name(qwen_name: str, num_prebuffer_layers: int = 0) -> str:
    """Our parameter name for a Qwen3 tensor name; Qwen3 layer i becomes layer i + pre-buffer count."""
    if qwen_name in QWEN3_TOP_NAMES:
        return QWEN3_TOP_NAMES[qwen_name]
    match = _LAYER_PATTERN.fullmatch(qwen_name)
    if match is None or match.group(2) not in QWEN3_LAYER_NAMES:
        raise KeyError(f"no NEO-unify counterpart for Qwen3 tensor {qwen_name!r}")
    layer = int(match.group(1)) + num_prebuffer_layers
    return f"layers.{layer}.understanding.{QWEN3_LAYER_NAMES[match.group(2)]}"


def read_qwen3_config(folder: str | Path) -> dict[str, Any]:
    config = json.loads((Path(folder) / "config.json").read_text())
    if config.get("model_type") != "qwen3":
        raise ValueError(
            f"expected a qwen3 checkpoint, got model_type={config.get('model_type')!r}"
        )
    if config.get("attention_bias"):
        raise ValueError("Qwen3 checkpoints with attention_bias are not supported")
    return config


def _rope_theta(qwen_config: dict[str, Any]) -> float:
    # transformers >= 5 nests it in rope_parameters; older configs keep a top-level rope_theta.
    rope = qwen_config.get("rope_parameters") or qwen_config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"unsupported RoPE scaling {rope.get('rope_type')!r}")
    return float(rope.get("rope_theta", qwen_config.get("rope_theta", 10_000.0)))


def neo_config_from_qwen3(folder: str | Path, **overrides: Any) -> NeoConfig:
    """A NeoConfig with the checkpoint's shapes; T uses the checkpoint's rope_theta.

    `num_prebuffer_layers=k` adds k fresh layers in front of the Qwen3 layers (the 8B recipe: 6).
    """
    qwen = read_qwen3_config(folder)
    prebuffer = int(overrides.pop("num_prebuffer_layers", 0))
    fields = dict(
        vocab_size=qwen["vocab_size"],
        hidden_size=qwen["hidden_size"],
        num_layers=qwen["num_hidden_layers"] + prebuffer,
        num_prebuffer_layers=prebuffer,
        num_heads=qwen["num_attention_heads"],
        num_kv_heads=qwen["num_key_value_heads"],
        head_dim=qwen.get("head_dim", qwen["hidden_size"] // qwen["num_attention_heads"]),
        ffn_size=qwen["intermediate_size"],
        rms_norm_eps=qwen["rms_norm_eps"],
        rope_theta_t=_rope_theta(qwen),
    )
    return NeoConfig(**{**fields, **overrides})


def _safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / shard for shard in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {folder}")
    return files


@torch.no_grad()
def load_qwen3_weights(
    model: NeoUnify,
    folder: str | Path,
    generation_init: Literal["copy", "random"] = "copy",
) -> None:
    """Copy a Qwen3 checkpoint into the understanding stream (every tensor must find its place).

    A tied checkpoint (no lm_head.weight) fills our untied LM head with the embedding matrix.
    `generation_init="copy"` then copies every Qwen3-derived layer and the final norm into the
    generation stream; "random" leaves the generation stream as initialised.
    """
    folder = Path(folder)
    prebuffer = model.config.num_prebuffer_layers
    parameters = dict(model.named_parameters())
    expected = {
        name
        for name in parameters
        if name in QWEN3_TOP_NAMES.values()
        or (
            name.startswith("layers.")
            and ".understanding." in name
            and int(name.split(".")[1]) >= prebuffer
        )
    }
    loaded: set[str] = set()
    for file in _safetensors_files(folder):
        with safe_open(str(file), framework="pt") as shard:
            for qwen_name in shard.keys():
                name = neo_parameter_name(qwen_name, prebuffer)
                tensor = shard.get_tensor(qwen_name)
                if tensor.shape != parameters[name].shape:
                    raise ValueError(
                        f"{qwen_name}: shape {tuple(tensor.shape)} != {tuple(parameters[name].shape)}"
                    )
                parameters[name].copy_(tensor)
                loaded.add(name)
    if "lm_head.weight" not in loaded and read_qwen3_config(folder).get("tie_word_embeddings"):
        model.lm_head.weight.copy_(model.embed_tokens.weight)
        loaded.add("lm_head.weight")
    missing = expected - loaded
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    if generation_init == "copy":
        for layer in model.layers[prebuffer:]:
            layer.generation.load_state_dict(layer.understanding.state_dict())
        model.gen_norm.load_state_dict(model.und_norm.state_dict())


def from_qwen3(
    folder: str | Path,
    *,
    generation_init: Literal["copy", "random"] = "copy",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **config_overrides: Any,
) -> NeoUnify:
    """Build NEO-unify with a Qwen3 checkpoint's shapes and weights (see `neo_config_from_qwen3`)."""
    model = build_model(neo_config_from_qwen3(folder, **config_overrides), device, dtype)
    load_qwen3_weights(model, folder, generation_init)
    return model
