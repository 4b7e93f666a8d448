"""Inference from a training checkpoint: load it, draw an image from a prompt, caption an image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.checkpoint import load_checkpoint
from model.generate import generate_image, generate_text
from model.model import NeoUnify
from model.sequence import Image as ImageSegment
from model.sequence import SequenceBuilder
from model.train.config import TrainConfig
from model.train.tokenizer import Tokenizer, check_tokenizer, load_tokenizer


@dataclass
class Inference:
    model: NeoUnify
    tokenizer: Tokenizer
    builder: SequenceBuilder


def load_inference(checkpoint: str | Path, device: str = "cpu", use_ema: bool = True) -> Inference:
    """The checkpoint's model (with its EMA generation weights unless use_ema is False) and tokenizer."""
    model, extra = load_checkpoint(checkpoint, map_location=device)
    train_config = extra.get("train_config")
    tokenizer = load_tokenizer(TrainConfig.model_validate(train_config).tokenizer_path if train_config else None)
    check_tokenizer(model.config, tokenizer)
    if use_ema and extra.get("ema"):
        parameters = dict(model.named_parameters())
        with torch.no_grad():
            for name, average in extra["ema"].items():
                parameters[name].copy_(average)
    model.eval()
    return Inference(model, tokenizer, SequenceBuilder(model.config))


def pixels_from_image(image: Image.Image) -> torch.Tensor:
    """PIL image -> (3, H, W) float in [-1, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def image_from_pixels(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> PIL RGB image."""
    array = ((pixels.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return Image.fromarray(array.permute(1, 2, 0).numpy())


def fit_to_patch_grid(image: Image.Image, patch: int, max_side: int = 1024) -> Image.Image:
    """Resize so both sides are multiples of the token patch (nearest), the long side <= max_side."""
    scale = min(1.0, max_side / max(image.size))
    width, height = (max(patch, round(side * scale / patch) * patch) for side in image.size)
    if (width, height) == image.size:
        return image
    return image.resize((width, height), Image.Resampling.BICUBIC)


def parse_size(text: str, patch: int = 32) -> tuple[int, int]:
    """"WxH" -> (width, height); both sides must be positive multiples of the patch."""
    try:
        width, height = (int(side) for side in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 256x256, got {text!r}") from None
    if width <= 0 or height <= 0 or width % patch or height % patch:
        raise ValueError(f"image sides must be positive multiples of {patch}, got {text}")
    return width, height


def draw_image(
    inference: Inference,
    prompt: str,
    width: int,
    height: int,
    *,
    steps: int = 50,
    cfg_scale: float = 4.0,
    seed: int = 0,
) -> Image.Image:
    pixels = generate_image(
        inference.model,
        inference.builder,
        inference.tokenizer.encode(prompt),
        height,
        width,
        steps=steps,
        cfg_scale=cfg_scale,
        generator=torch.Generator().manual_seed(seed),
    )
    return image_from_pixels(pixels)


def caption_pixels(inference: Inference, pixels: torch.Tensor, max_tokens: int = 128) -> str:
    """Greedy caption of (3, H, W) pixels in [-1, 1] (sides multiples of the patch)."""
    ids = generate_text(inference.model, inference.builder, [ImageSegment(pixels)], max_tokens)
    return inference.tokenizer.decode([i for i in ids if i != inference.tokenizer.eos_id])


def caption_image(inference: Inference, image: Image.Image, max_tokens: int = 128) -> str:
    fitted = fit_to_patch_grid(image.convert("RGB"), inference.model.config.token_patch)
    return caption_pixels(inference, pixels_from_image(fitted), max_tokens)
