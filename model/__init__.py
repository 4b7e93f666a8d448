"""NEO-unify in PyTorch: an encoder-free Mixture-of-Transformers that reads and writes text and pixels.

Files, top to bottom: config -> rmsnorm, rope, mask, attention -> image_embed, conditioning, pixel_head
-> mot (layer) -> sequence (packed layout) -> model -> losses, flow -> kv_cache, generate -> checkpoint,
qwen3 (loading). Typical training step:

    builder = SequenceBuilder(config)
    batch = builder.pack([builder.text_to_image(ids, pixels), builder.image_to_text(pixels, ids)], gen)
    loss = total_loss(model(batch), STAGE_LOSS_WEIGHTS[stage])
"""

from model.checkpoint import load_checkpoint, save_checkpoint
from model.config import PRESET_NAMES, NeoConfig
from model.flow import noise_scale, sample_timesteps, shifted_timesteps
from model.generate import decode_step, generate_image, generate_text, predicted_velocity, prefill
from model.kv_cache import KVCache
from model.losses import (
    STAGE_LOSS_WEIGHTS,
    LossBreakdown,
    LossWeights,
    image_weighted_mse,
    sample_weighted_ce,
    total_loss,
)
from model.mask import MaskFields, dense_mask
from model.model import NeoUnify, build_model
from model.qwen3 import from_qwen3, load_qwen3_weights, neo_config_from_qwen3
from model.sequence import (
    IGNORE_INDEX,
    CleanCopy,
    Image,
    PackedBatch,
    SequenceBuilder,
    Task,
    Text,
    TokenRole,
)

__all__ = [
    "IGNORE_INDEX",
    "PRESET_NAMES",
    "STAGE_LOSS_WEIGHTS",
    "CleanCopy",
    "Image",
    "KVCache",
    "LossBreakdown",
    "LossWeights",
    "MaskFields",
    "NeoConfig",
    "NeoUnify",
    "PackedBatch",
    "SequenceBuilder",
    "Task",
    "Text",
    "TokenRole",
    "build_model",
    "decode_step",
    "dense_mask",
    "from_qwen3",
    "generate_image",
    "generate_text",
    "image_weighted_mse",
    "load_checkpoint",
    "load_qwen3_weights",
    "neo_config_from_qwen3",
    "noise_scale",
    "predicted_velocity",
    "prefill",
    "sample_timesteps",
    "sample_weighted_ce",
    "save_checkpoint",
    "shifted_timesteps",
    "total_loss",
]
