"""The training loader: curated shards -> packed batches of one bucket shape, in epoch-plan order.

Reading: `buckets.json` lists each bucket's shards; every shard is indexed once (member offsets,
model/train/shard_index.py) when the loader is made; a worker then seeks straight to the samples its
plan names and decodes them with webdataset's `Decoder` (image -> uint8 tensor, .txt -> str).
Streaming whole shards through webdataset's pipeline would make a resumable, exactly-once order
depend on shard boundaries and shuffle buffers; seeking keeps the order a pure function of the plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.config import NeoConfig
from model.flow import sample_timesteps
from model.sequence import PackedBatch, Segment, SequenceBuilder, Task
from model.train.config import TimestepSettings
from model.train.plan import (
    TEXT_BUCKET,
    DataPosition,
    PlanSettings,
    PlannedBatch,
    PlannedSample,
    global_batches,
    rank_share,
)
from model.train.shard_index import SampleMembers, index_shard, read_sample
from model.train.tokenizer import Tokenizer

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class Bucket:
    name: str  # "256x256", or "text" for text-only samples
    size: tuple[int, int] | None  # (width, height); None for text
    shards: list[Path]


def read_buckets(data_dir: str | Path, only: Sequence[str] | None = None) -> list[Bucket]:
    """The buckets of a curated output folder, from its buckets.json; `only` names the ones to keep."""
    data_dir = Path(data_dir)
    listing = json.loads((data_dir / "buckets.json").read_text())["buckets"]
    if only is not None:
        missing = set(only) - set(listing)
        if missing:
            raise ValueError(f"{data_dir}: no bucket {sorted(missing)}; it has {sorted(listing)}")
        listing = {name: listing[name] for name in only}
    buckets = []
    for name, info in sorted(listing.items()):
        size = None if name == TEXT_BUCKET else (int(info["width"]), int(info["height"]))
        buckets.append(Bucket(name, size, [data_dir / shard for shard in info["shards"]]))
    return buckets


@dataclass
class TrainBatch:
    """One rank's share of one global batch, packed, plus where it sits in the plan."""

    packed: PackedBatch | None  # None when this rank's share is empty (a short last batch)
    keys: list[str]  # sample keys, in packing order
    tasks: list[Task]
    position: DataPosition
    next_position: DataPosition


class SampleReader:
    """Reads and decodes planned samples; keeps the shard files it has opened."""

    def __init__(self, buckets: Sequence[Bucket], index: dict[Path, list[SampleMembers]]) -> None:
        self.buckets = {bucket.name: bucket for bucket in buckets}
        self.index = index
        self.decoder = wds.Decoder([wds.imagehandler("torchrgb8")])
        self.files: dict[Path, BinaryIO] = {}

    def read(self, bucket_name: str, shard: int, index: int) -> tuple[str, str, torch.Tensor | None]:
        """(key, caption, pixels (3, H, W) in [-1, 1] or None for text) of one sample of a bucket."""
        bucket = self.buckets[bucket_name]
        path = bucket.shards[shard]
        if path not in self.files:
            self.files[path] = open(path, "rb")
        members = self.index[path][index]
        sample = self.decoder(read_sample(self.files[path], members, str(path)))
        caption = sample.get("txt", "")
        if bucket.size is None:
            return members.key, caption, None
        image = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
        if image is None:
            raise ValueError(f"{path}: sample {members.key} has no image")
        height, width = image.shape[1:]
        if (width, height) != bucket.size:
            raise ValueError(f"{path}: {members.key} is {width}x{height}, bucket {bucket.name}")
        return members.key, caption, image.float() / 127.5 - 1


def with_sample_noise(
    packed: PackedBatch, samples: Sequence[PlannedSample], timesteps: TimestepSettings
) -> PackedBatch:
    """Replace the batch's timesteps and noise with draws seeded by each sample's own seed.

    `SequenceBuilder.pack` draws them from one generator for the whole batch, so a sample's noise
    would depend on its batch-mates and on how ranks split the batch; per-sample seeds make one
    process and N data-parallel processes (and a resumed run) see identical noise.
    """
    generated = [sample for sample in samples if sample.task is Task.TEXT_TO_IMAGE]
    image_ids = packed.noisy_image_ids.tolist()
    if len(generated) != len(image_ids):
        raise ValueError("expected one generated image per text-to-image sample")
    drawn_t, noise = [], []
    for sample, image_id in zip(generated, image_ids):
        generator = torch.Generator().manual_seed(sample.seed)
        drawn_t.append(sample_timesteps(1, generator, timesteps.mean, timesteps.std))
        noise.append(torch.randn(packed.images[image_id].shape, generator=generator))
    return replace(packed, timesteps=torch.cat(drawn_t) if drawn_t else torch.zeros(0), noise=noise)


class BatchAssembler:
    """Planned samples -> `TrainBatch` (reading, tokenizing, laying out, packing)."""

    def __init__(
        self,
        reader: SampleReader,
        tokenizer: Tokenizer,
        model_config: NeoConfig,
        max_text_tokens: int,
        timesteps: TimestepSettings,
    ) -> None:
        self.reader = reader
        self.tokenizer = tokenizer
        self.builder = SequenceBuilder(model_config)
        self.max_text_tokens = max_text_tokens
        self.timesteps = timesteps

    def segments(self, planned: PlannedSample, caption: str, pixels: torch.Tensor | None) -> list[Segment]:
        ids = self.tokenizer.encode(caption)[: self.max_text_tokens]
        if planned.task is Task.TEXT_TO_IMAGE:
            return self.builder.text_to_image(ids, pixels, drop_caption=planned.drop_caption)
        return self.builder.sample(planned.task, ids, pixels)

    def assemble(self, share: Sequence[PlannedSample], planned: PlannedBatch) -> TrainBatch:
        keys, samples = [], []
        for sample in share:
            key, caption, pixels = self.reader.read(sample.bucket, sample.shard, sample.index)
            keys.append(key)
            samples.append(self.segments(sample, caption, pixels))
        packed = None
        if samples:
            # pack's own draws are replaced right away; a fixed generator leaves the global RNG alone.
            packed = with_sample_noise(self.builder.pack(samples, torch.Generator()), share, self.timesteps)
        return TrainBatch(packed, keys, [s.task for s in share], planned.position, planned.next_position)


class PlannedShardDataset(IterableDataset):
    """This rank's batches from `start` on; worker w of W yields every W-th of them, in order.

    DataLoader asks its workers round-robin, so the batches come out in plan order.
    """

    def __init__(
        self,
        buckets: Sequence[Bucket],
        index: dict[Path, list[SampleMembers]],
        tokenizer: Tokenizer,
        model_config: NeoConfig,
        max_text_tokens: int,
        timesteps: TimestepSettings,
        plan: PlanSettings,
        rank: int,
        world_size: int,
        start: DataPosition,
    ) -> None:
        self.buckets = list(buckets)
        self.index = index
        self.tokenizer = tokenizer
        self.model_config = model_config
        self.max_text_tokens = max_text_tokens
        self.timesteps = timesteps
        self.plan = plan
        self.rank = rank
        self.world_size = world_size
        self.start = start

    def shard_sizes(self) -> dict[str, list[int]]:
        return {b.name: [len(self.index[path]) for path in b.shards] for b in self.buckets}

    def __iter__(self) -> Iterator[TrainBatch]:
        worker = get_worker_info()
        worker_id, num_workers = (0, 1) if worker is None else (worker.id, worker.num_workers)
        reader = SampleReader(self.buckets, self.index)
        assembler = BatchAssembler(
            reader, self.tokenizer, self.model_config, self.max_text_tokens, self.timesteps
        )
        stream = global_batches(self.shard_sizes(), self.plan, self.start)
        for count, planned in enumerate(stream):
            if count % num_workers == worker_id:
                share = rank_share(planned.samples, self.rank, self.world_size)
                yield assembler.assemble(share, planned)


def index_buckets(buckets: Sequence[Bucket]) -> dict[Path, list[SampleMembers]]:
    return {path: index_shard(path) for bucket in buckets for path in bucket.shards}


def _unchanged(batch: TrainBatch) -> TrainBatch:
    return batch


def make_loader(
    data_dir: str | Path,
    tokenizer: Tokenizer,
    model_config: NeoConfig,
    plan: PlanSettings,
    *,
    max_text_tokens: int,
    num_workers: int,
    timesteps: TimestepSettings = TimestepSettings(),
    rank: int = 0,
    world_size: int = 1,
    start: DataPosition = DataPosition(),
    only_buckets: Sequence[str] | None = None,
) -> DataLoader:
    """An endless loader of this rank's `TrainBatch`es, epoch after epoch, from `start`."""
    buckets = read_buckets(data_dir, only_buckets)
    dataset = PlannedShardDataset(
        buckets,
        index_buckets(buckets),
        tokenizer,
        model_config,
        max_text_tokens,
        timesteps,
        plan,
        rank,
        world_size,
        start,
    )
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_unchanged)
