"""Helpers for the trainer tests: tiny curated folders written with webdataset's TarWriter."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import webdataset as wds
import yaml
from PIL import Image

from model.train.shapes import COLOURS, SHAPES, ShapeScene, render_scene


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def write_curated(
    folder: Path,
    image_buckets: dict[tuple[int, int], int],
    text_samples: int = 0,
    per_shard: int = 5,
    seed: int = 0,
) -> list[str]:
    """A `curation run`-shaped folder: shards/WxH/NNNNNN.tar per bucket plus buckets.json.

    Images are shapes scenes (so captions mean something); returns every sample key.
    """
    rng = np.random.default_rng(seed)
    listing: dict[str, dict] = {}
    keys: list[str] = []
    buckets: list[tuple[str, tuple[int, int] | None, int]] = [
        (f"{w}x{h}", (w, h), n) for (w, h), n in image_buckets.items()
    ]
    if text_samples:
        buckets.append(("text", None, text_samples))
    for name, size, count in buckets:
        shards = []
        for start in range(0, count, per_shard):
            shard = f"shards/{name}/{start // per_shard:06d}.tar"
            (folder / shard).parent.mkdir(parents=True, exist_ok=True)
            with wds.TarWriter(str(folder / shard)) as tar:
                for i in range(start, min(start + per_shard, count)):
                    key = f"{name}-{i:05d}"
                    scene = ShapeScene(
                        list(COLOURS)[i % len(COLOURS)], SHAPES[i % len(SHAPES)], "large", (1, 1), "beige"
                    )
                    sample = {"__key__": key, "txt": scene.caption, "json": json.dumps({"sample_id": key})}
                    if size is not None:
                        sample["jpg"] = jpeg_bytes(render_scene(scene, *size, rng))
                    tar.write(sample)
                    keys.append(key)
            shards.append(shard)
        entry = {"samples": count, "bytes": 0, "shards": shards}
        if size is not None:
            entry.update(width=size[0], height=size[1])
        listing[name] = entry
    (folder / "buckets.json").write_text(json.dumps({"buckets": listing}))
    return keys


def write_config(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def read_metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def losses(records: Sequence[dict]) -> list[float]:
    return [record["loss"] for record in records]
