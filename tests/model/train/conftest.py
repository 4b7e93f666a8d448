"""Fixtures of the trainer tests: small curated folders and a tiny, fast training config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from train_helpers import write_curated


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    """Two 64x64-class image buckets and a text bucket, several shards each, short last shards."""
    folder = tmp_path / "curated"
    write_curated(folder, {(64, 64): 13, (96, 64): 7}, text_samples=6, per_shard=4)
    return folder


def tiny_settings(data: Path, **changes: Any) -> dict[str, Any]:
    """A config dict (as YAML would give it) that trains a very small model quickly on CPU."""
    settings: dict[str, Any] = dict(
        data=str(data),
        model=dict(
            preset="tiny",
            overrides=dict(hidden_size=32, num_heads=2, num_kv_heads=1, head_dim=16, ffn_size=64,
                           embed_channels=16, pixel_head_size=32, num_layers=1),
        ),
        steps=6,
        batch_size=4,
        lr=3e-3,
        warmup_steps=2,
        loader_workers=0,
        cpu_threads=1,
        checkpoint_every=3,
        samples=dict(every=0),
        seed=1,
    )
    settings.update(changes)
    return settings
