"""The loader: one bucket shape per batch, every sample once per epoch over ranks and workers, resumable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from model import NeoConfig, Task
from model.train.config import TaskMix, TimestepSettings
from model.train.data import Bucket, TrainBatch, make_loader, read_buckets
from model.train.plan import DataPosition, PlanSettings, epoch_plan
from model.train.shard_index import index_shard
from model.train.tokenizer import ByteTokenizer


def _loader(
    folder: Path,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    start: DataPosition = DataPosition(),
    only_buckets: list[str] | None = None,
    timesteps: TimestepSettings = TimestepSettings(),
):
    return make_loader(
        folder,
        ByteTokenizer(),
        NeoConfig.preset("tiny"),
        PlanSettings(batch_size=4, tasks=TaskMix(), seed=0),
        max_text_tokens=64,
        num_workers=workers,
        rank=rank,
        world_size=world_size,
        start=start,
        only_buckets=only_buckets,
        timesteps=timesteps,
    )


def _epoch(loader, epoch: int = 0) -> list[TrainBatch]:
    """The batches of one epoch (the loader runs on forever)."""
    batches = []
    for batch in loader:
        if batch.position.epoch > epoch:
            return batches
        if batch.position.epoch == epoch:
            batches.append(batch)
    raise AssertionError("unreachable: the loader never ends")


def _keys_of(bucket: Bucket) -> list[str]:
    return [sample.key for shard in bucket.shards for sample in index_shard(shard)]


def test_every_sample_exactly_once_per_epoch_over_two_ranks_and_two_workers(curated):
    all_keys = {key for bucket in read_buckets(curated) for key in _keys_of(bucket)}
    for epoch in (0, 1):
        seen: Counter[str] = Counter()
        for rank in (0, 1):
            batches = _epoch(_loader(curated, rank, 2, workers=2), epoch)
            assert [b.position.batch for b in batches] == list(range(len(batches)))  # plan order kept
            for batch in batches:
                seen.update(batch.keys)
        assert set(seen) == all_keys
        assert max(seen.values()) == 1


def test_a_batch_holds_one_bucket_and_its_tasks(curated):
    for batch in _epoch(_loader(curated)):
        buckets = {key.split("-")[0] for key in batch.keys}
        assert len(buckets) == 1
        shapes = {tuple(image.shape) for image in batch.packed.images}
        if buckets == {"text"}:
            assert shapes == set() and set(batch.tasks) == {Task.TEXT_ONLY}
        else:
            assert len(shapes) == 1 and Task.TEXT_ONLY not in batch.tasks


def test_resuming_at_a_position_replays_the_same_batches(curated):
    straight = _epoch(_loader(curated, workers=2))
    resumed = _epoch(_loader(curated, workers=2, start=DataPosition(0, 3)))
    assert [b.keys for b in resumed] == [b.keys for b in straight[3:]]
    for a, b in zip(resumed, straight[3:]):
        assert a.packed.timesteps.tolist() == b.packed.timesteps.tolist()
        assert all((x == y).all() for x, y in zip(a.packed.noise, b.packed.noise))


def test_task_mix_and_caption_dropout_follow_the_config():
    sizes = {"256x256": [500, 500], "text": [10]}
    generation_only = PlanSettings(8, TaskMix(t2i=1, i2t=0, text=False, caption_dropout=0.5), seed=0)
    only_generation = epoch_plan(sizes, generation_only, epoch=0)
    samples = [s for batch in only_generation for s in batch]
    assert {s.task for s in samples} == {Task.TEXT_TO_IMAGE} and len(samples) == 1000
    dropped = sum(s.drop_caption for s in samples) / len(samples)
    assert 0.4 < dropped < 0.6
    mixed = [s for batch in epoch_plan(sizes, PlanSettings(8, TaskMix(t2i=1, i2t=3), 0), 0) for s in batch]
    share_t2i = sum(s.task is Task.TEXT_TO_IMAGE for s in mixed) / 1000
    assert 0.2 < share_t2i < 0.3
    assert sum(s.task is Task.TEXT_ONLY for s in mixed) == 10


def test_epochs_are_reshuffled_and_seeded():
    sizes = {"256x256": [20, 20]}

    def order(seed: int, epoch: int) -> list[tuple[int, int]]:
        plan = epoch_plan(sizes, PlanSettings(4, TaskMix(), seed), epoch)
        return [(s.shard, s.index) for batch in plan for s in batch]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_training_can_be_limited_to_some_buckets(curated):
    keys = [key for batch in _epoch(_loader(curated, only_buckets=["96x64", "text"])) for key in batch.keys]
    assert {key.split("-")[0] for key in keys} == {"96x64", "text"} and len(keys) == 7 + 6
    with pytest.raises(ValueError, match="no bucket"):
        read_buckets(curated, ["512x512"])


def test_timesteps_follow_the_configured_distribution(curated):
    batches = _epoch(_loader(curated, timesteps=TimestepSettings(mean=2.0, std=1e-6)))
    drawn = torch.cat([b.packed.timesteps for b in batches if b.packed is not None])
    assert len(drawn) > 0
    assert torch.allclose(drawn, torch.sigmoid(torch.tensor(2.0)), atol=1e-5)
