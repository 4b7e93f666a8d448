"""Write one WebDataset shard: deterministic names, sorted members, fixed mtime, tmp name then rename.

A shard holds one bucket's samples: `<key>.<ext>` (the image at exactly the bucket size), `<key>.txt` (the
caption) and `<key>.json` (the sample's metadata). A sample whose full-size render fails is dropped here
with a reason rather than lost.
"""

from __future__ import annotations

import io
import json
import math
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import fsspec

from curation import schema as rec
from curation.commit import file_sha256, temporary_name
from curation.stage import Drop

SHARD_STAGE = "shard"
TEXT_BUCKET = "text"
FIXED_MTIME = 0.0
# Columns that go into each sample's .json besides its scores.
JSON_FIELDS = ("sample_id", "source", "source_key", "sha256", "width", "height", "bucket", "caption_original")


@dataclass
class ShardInfo:
    shard: str  # path relative to the output folder
    bucket: str
    samples: int
    bytes: int
    sha256: str


def shard_name(bucket: str, index: int) -> str:
    return f"shards/{bucket}/{index:06d}.tar"


def shards_for_bucket(count: int, bytes_per_sample: float, max_samples: int, max_bytes: int) -> int:
    """How many shards a bucket needs to meet both the sample and the byte target."""
    return max(1, math.ceil(count / max_samples), math.ceil(count * bytes_per_sample / max_bytes))


def sample_json(row: Mapping[str, Any], score_columns: Iterable[str]) -> bytes:
    meta = {k: row.get(k) for k in JSON_FIELDS}
    meta["scores"] = {c: row.get(c) for c in score_columns if row.get(c) is not None}
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode("utf-8")


def write_shard(
    rows: list[dict[str, Any]],
    out_root: str,
    bucket: str,
    index: int,
    render: Callable[[dict[str, Any]], tuple[bytes, str]] | None,
    score_columns: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], ShardInfo | None]:
    """Write the kept rows of one shard; return every row (kept ones with shard/key set) and the shard's info.

    `render(row)` returns (encoded image, extension); None for text-only shards.
    """
    rows = sorted(rows, key=lambda r: r["sample_id"])
    name = shard_name(bucket, index)
    final = posixpath.join(out_root, name)
    tmp = temporary_name(final)
    fs, _ = fsspec.core.url_to_fs(final)
    fs.makedirs(posixpath.dirname(final), exist_ok=True)
    score_columns = list(score_columns)
    written = 0
    with fs.open(tmp, "wb") as stream, tarfile.open(fileobj=stream, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows:
            sample: dict[str, bytes] = {}
            if render is not None:
                try:
                    data, ext = render(row)
                except Drop as d:
                    rec.drop(row, SHARD_STAGE, d.reason, d.value, d.error)
                    continue
                except Exception as e:  # noqa: BLE001 - one bad render drops one sample, not the shard
                    rec.drop(row, SHARD_STAGE, "render_error", error=f"{type(e).__name__}: {e}"[:500])
                    continue
                sample[ext] = data
            row["shard"] = name
            row["key_in_shard"] = row["sample_id"]
            sample["txt"] = (row.get("caption") or "").encode("utf-8")
            sample["json"] = sample_json(row, score_columns)
            add_sample(tar, row["sample_id"], sample)
            written += 1
    if written == 0:
        fs.rm(tmp)
        return rows, None
    digest, size = file_sha256(fs, tmp)
    fs.mv(tmp, final)
    return rows, ShardInfo(name, bucket, written, size, digest)


def add_sample(tar: tarfile.TarFile, key: str, members: Mapping[str, bytes]) -> None:
    """WebDataset's layout (`<key>.<ext>` members in extension order) with nothing that varies between runs:
    written with `tarfile` because importing webdataset in a worker imports torch."""
    for ext in sorted(members):
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(members[ext])
        info.mtime = FIXED_MTIME
        info.mode = 0o444
        tar.addfile(info, io.BytesIO(members[ext]))
