"""Sample grids during training: images drawn from fixed prompts, captions of fixed images.

The preview set is the first samples of the smallest image bucket, so every grid of a run shows the
same prompts and images; prompts can be set in the config instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from model.model import NeoUnify
from model.sequence import SequenceBuilder
from model.train.config import SampleSettings
from model.train.data import Bucket, SampleReader, read_buckets
from model.train.ema import GenerationEMA
from model.train.plan import TEXT_BUCKET
from model.train.plots import image_grid
from model.train.sampling import Inference, caption_pixels, draw_image, image_from_pixels
from model.train.shard_index import index_shard
from model.train.tokenizer import Tokenizer


@dataclass(frozen=True)
class PreviewSet:
    prompts: list[str]
    images: list[torch.Tensor]  # (3, H, W) in [-1, 1], captioned in every grid
    size: tuple[int, int]  # (width, height) images are drawn at


def smallest_image_bucket(buckets: list[Bucket]) -> Bucket:
    images = [b for b in buckets if b.name != TEXT_BUCKET and b.size is not None]
    if not images:
        raise ValueError("the data has no image bucket")
    return min(images, key=lambda b: (b.size[0] * b.size[1], b.name))


def load_preview_set(data_dir: str | Path, settings: SampleSettings) -> PreviewSet:
    bucket = smallest_image_bucket(read_buckets(data_dir))
    shard = bucket.shards[0]
    index = {shard: index_shard(shard)}
    reader = SampleReader([bucket], index)
    count = min(settings.count, len(index[shard]))
    read = [reader.read(bucket.name, 0, i) for i in range(count)]
    prompts = settings.prompts or [caption for _, caption, _ in read]
    return PreviewSet(prompts, [pixels for _, _, pixels in read], bucket.size)


def render_preview(
    model: NeoUnify,
    tokenizer: Tokenizer,
    ema: GenerationEMA,
    preview: PreviewSet,
    settings: SampleSettings,
    path: Path,
) -> None:
    """Row(s) of drawn images under their prompts, then the preview images under generated captions."""
    inference = Inference(model, tokenizer, SequenceBuilder(model.config))
    width, height = preview.size
    device = next(model.parameters()).device
    tiles = []
    with ema.applied(model):
        for i, prompt in enumerate(preview.prompts):
            image = draw_image(
                inference, prompt, width, height, steps=settings.steps, cfg_scale=settings.cfg_scale, seed=i
            )
            tiles.append((image, f"gen: {prompt}"))
    for pixels in preview.images:
        caption = caption_pixels(inference, pixels.to(device), settings.max_caption_tokens)
        tiles.append((image_from_pixels(pixels), f"cap: {caption}"))
    image_grid(tiles, path, columns=max(len(preview.prompts), len(preview.images)))
