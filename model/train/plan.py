"""The epoch plan: which sample goes into which batch, as which task, with which noise seed.

An epoch's plan is a pure function of (seed, epoch, shard sizes, batch size, task mix): every bucket's
(shard, index) pairs are permuted, given a task, chunked into same-bucket global batches (the last
one of a bucket may be short), and the batches of all buckets are shuffled together. Rank r takes
`batch[r::world]` of each global batch; loader worker w takes every num_workers-th batch. Coverage is
then exact by construction, and a position (epoch, next batch) is all a checkpoint needs to resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import numpy as np

from model.sequence import Task
from model.train.config import TaskMix

TEXT_BUCKET = "text"  # the bucket of text-only samples in buckets.json


@dataclass(frozen=True)
class PlannedSample:
    bucket: str
    shard: int  # index into the bucket's shard list
    index: int  # sample index within the shard, in tar order
    task: Task
    drop_caption: bool  # text-to-image without its caption (classifier-free guidance)
    seed: int  # seeds this sample's timestep and noise, wherever and whenever it is loaded


@dataclass(frozen=True)
class PlanSettings:
    """What fixes an epoch's plan besides the data: global batch size, task mix and seed."""

    batch_size: int
    tasks: TaskMix
    seed: int


@dataclass(frozen=True)
class DataPosition:
    """The next global batch to train on."""

    epoch: int = 0
    batch: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    @classmethod
    def from_dict(cls, values: Mapping[str, int]) -> DataPosition:
        return cls(epoch=int(values["epoch"]), batch=int(values["batch"]))


def _bucket_batches(
    bucket: str,
    shard_sizes: Sequence[int],
    batch_size: int,
    tasks: TaskMix,
    rng: np.random.Generator,
) -> list[list[PlannedSample]]:
    pairs = [(shard, index) for shard, size in enumerate(shard_sizes) for index in range(size)]
    count = len(pairs)
    order = rng.permutation(count)
    task_draws, dropout_draws = rng.random(count), rng.random(count)
    seeds = rng.integers(0, 2**63 - 1, size=count)
    t2i_share = tasks.t2i / (tasks.t2i + tasks.i2t)
    planned = []
    for position, pair_index in enumerate(order):
        if bucket == TEXT_BUCKET:
            task = Task.TEXT_ONLY
        else:
            task = Task.TEXT_TO_IMAGE if task_draws[position] < t2i_share else Task.IMAGE_TO_TEXT
        drop = task is Task.TEXT_TO_IMAGE and dropout_draws[position] < tasks.caption_dropout
        shard, index = pairs[pair_index]
        planned.append(PlannedSample(bucket, shard, index, task, bool(drop), int(seeds[position])))
    return [planned[start : start + batch_size] for start in range(0, count, batch_size)]


def epoch_plan(
    shard_sizes: Mapping[str, Sequence[int]], settings: PlanSettings, epoch: int
) -> list[list[PlannedSample]]:
    """Global batches of one epoch; `shard_sizes` maps bucket name -> samples per shard."""
    rng = np.random.default_rng([settings.seed, epoch])
    batches = []
    for bucket in sorted(shard_sizes):
        if bucket == TEXT_BUCKET and not settings.tasks.text:
            continue
        sizes = shard_sizes[bucket]
        batches.extend(_bucket_batches(bucket, sizes, settings.batch_size, settings.tasks, rng))
    return [batches[i] for i in rng.permutation(len(batches))]


def rank_share(batch: Sequence[PlannedSample], rank: int, world_size: int) -> list[PlannedSample]:
    """Strided, so ranks differ by at most one sample when a batch does not divide evenly."""
    return list(batch[rank::world_size])


@dataclass(frozen=True)
class PlannedBatch:
    position: DataPosition  # where this batch sits
    next_position: DataPosition  # where training continues after it
    samples: list[PlannedSample]  # the whole global batch


def global_batches(
    shard_sizes: Mapping[str, Sequence[int]], settings: PlanSettings, start: DataPosition
) -> Iterator[PlannedBatch]:
    """Every global batch from `start` on, epoch after epoch, without end."""
    epoch, first = start.epoch, start.batch
    while True:
        plan = epoch_plan(shard_sizes, settings, epoch)
        if not plan:
            raise ValueError("the data holds no samples for the configured tasks")
        for index in range(first, len(plan)):
            following = DataPosition(epoch, index + 1) if index + 1 < len(plan) else DataPosition(epoch + 1, 0)
            yield PlannedBatch(DataPosition(epoch, index), following, plan[index])
        epoch, first = epoch + 1, 0
