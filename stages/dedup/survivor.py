"""Who survives a cluster, why the others go, and what the survivor inherits.

Survivor rule, one total order: the copy from the highest-priority source (larger `source_priority`), then
the larger image (width * height as stored), then the smallest sample_id. Every function here takes the
members of whole clusters (any number of clusters per table) and returns decision rows; they know nothing
about Ray.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.dedup.config import DedupConfig
from stages.dedup.minhash import jaccard_estimate, signatures_from_arrow
from stages.dedup.signatures import hamming

DUP_EXACT = "dup_exact"
DUP_PIXELS = "dup_pixels"
DUP_PHASH = "dup_phash"
DUP_TEXT = "dup_text"
DUP_CAPTION_OVERFLOW = "dup_caption_overflow"

# What the apply step left-joins on sample_id.
DECISION_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("drop_reason", pa.string()),
        pa.field("duplicate_of", pa.string()),
        pa.field("dup_cluster", pa.string(), nullable=False),
        pa.field("dup_distance", pa.float64()),
        pa.field("captions_inherited", pa.string()),
        pa.field("caption_cluster_size", pa.int64()),
    ]
)
# Inside the job decisions also carry the row key, to merge the duplicate and caption verdicts of a row.
KEYED_DECISION_SCHEMA = DECISION_SCHEMA.insert(0, pa.field("key", pa.int64(), nullable=False))

# The columns a cluster's members must bring (`cluster` is the component label).
MEMBER_SCHEMA = pa.schema(
    [
        pa.field("key", pa.int64(), nullable=False),
        pa.field("sample_id", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("source_priority", pa.int64()),
        pa.field("area", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("pixel_hash", pa.string()),
        pa.field("phash", pa.int64()),
        pa.field("caption", pa.string()),
        pa.field("minhash", pa.binary()),
        pa.field("text_only", pa.bool_()),
        pa.field("cluster", pa.int64(), nullable=False),
    ]
)


def rank_clusters(members: pa.Table) -> tuple[pa.Table, list[tuple[int, int]]]:
    """Members sorted by cluster, then by the survivor rule; and the [start, end) of each cluster."""
    ordered = members.take(
        pc.sort_indices(
            members,
            sort_keys=[
                ("cluster", "ascending"),
                ("source_priority", "descending"),
                ("area", "descending"),
                ("sample_id", "ascending"),
            ],
        )
    )
    cluster = ordered["cluster"].to_numpy()
    starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]]) if len(cluster) else np.zeros(0, int)
    ends = np.append(starts[1:], len(cluster))
    return ordered, list(zip(starts.tolist(), ends.tolist()))


def _rows(table: pa.Table, columns: list[str]) -> dict[str, list[Any]]:
    return {c: table[c].to_pylist() for c in columns}


def _inherited_captions(col: dict[str, list[Any]], survivor: int, dropped: range, limit: int) -> str | None:
    """Distinct captions of the replaced copies, in survivor-rule order, with their provenance."""
    seen = {col["caption"][survivor]}
    inherited = []
    for i in dropped:
        caption = col["caption"][i]
        if caption is None or caption in seen or len(inherited) >= limit:
            continue
        seen.add(caption)
        inherited.append({"sample_id": col["sample_id"][i], "source": col["source"][i], "caption": caption})
    return json.dumps(inherited, ensure_ascii=False) if inherited else None


def _decision(key: int, sample_id: str, cluster: str, **fields: Any) -> dict[str, Any]:
    row = {name: None for name in KEYED_DECISION_SCHEMA.names}
    row.update(key=key, sample_id=sample_id, dup_cluster=cluster, **fields)
    return row


def _image_reason(col: dict[str, list[Any]], i: int, survivor: int) -> str:
    """The strongest evidence between a copy and its survivor: same bytes > same pixels > close pHash."""
    if col["sha256"][i] is not None and col["sha256"][i] == col["sha256"][survivor]:
        return DUP_EXACT
    if col["pixel_hash"][i] is not None and col["pixel_hash"][i] == col["pixel_hash"][survivor]:
        return DUP_PIXELS
    return DUP_PHASH


def resolve_duplicate_clusters(members: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Decisions for image clusters (dup_exact / dup_pixels / dup_phash) and text-only clusters (dup_text).

    dup_distance is measured between each dropped copy and its survivor: pHash Hamming distance for images
    (a copy linked through a chain can be further than the radius), estimated Jaccard similarity for text.
    """
    ordered, clusters = rank_clusters(members)
    col = _rows(ordered, ["key", "sample_id", "source", "caption", "sha256", "pixel_hash", "text_only"])
    phash = ordered["phash"].fill_null(0).to_numpy()
    has_phash = ordered["phash"].is_valid().to_numpy(zero_copy_only=False)
    minhash = signatures_from_arrow(ordered["minhash"], cfg)
    rows = []
    for start, end in clusters:
        if end - start < 2:
            continue
        survivor, copies = start, range(start + 1, end)
        cluster_id = col["sample_id"][survivor]
        rows.append(
            _decision(
                col["key"][survivor],
                cluster_id,
                cluster_id,
                captions_inherited=_inherited_captions(col, survivor, copies, cfg.max_inherited_captions),
            )
        )
        for i in copies:
            if col["text_only"][i]:
                reason = DUP_TEXT
                distance = float(jaccard_estimate(minhash[i : i + 1], minhash[survivor : survivor + 1])[0])
            else:
                reason = _image_reason(col, i, survivor)
                both = has_phash[i] and has_phash[survivor]
                distance = float(hamming(phash[i : i + 1], phash[survivor : survivor + 1])[0]) if both else None
            rows.append(
                _decision(
                    col["key"][i],
                    col["sample_id"][i],
                    cluster_id,
                    drop_reason=reason,
                    duplicate_of=cluster_id,
                    dup_distance=distance,
                )
            )
    return pa.Table.from_pylist(rows, schema=KEYED_DECISION_SCHEMA)


def resolve_caption_clusters(members: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Caption clusters of image-text samples: every member gets the cluster size; beyond `caption_cap`
    members (in survivor-rule order) are dropped as dup_caption_overflow, pointing at the first member."""
    ordered, clusters = rank_clusters(members)
    col = _rows(ordered, ["key", "sample_id"])
    minhash = signatures_from_arrow(ordered["minhash"], cfg)
    cap = cfg.caption_cap
    rows = []
    for start, end in clusters:
        size = end - start
        if size < 2:
            continue
        first = col["sample_id"][start]
        for rank, i in enumerate(range(start, end)):
            fields: dict[str, Any] = {"caption_cluster_size": size}
            if cap is not None and rank >= cap:
                similarity = jaccard_estimate(minhash[i : i + 1], minhash[start : start + 1])[0]
                fields.update(drop_reason=DUP_CAPTION_OVERFLOW, duplicate_of=first, dup_distance=float(similarity))
            rows.append(_decision(col["key"][i], col["sample_id"][i], first, **fields))
    return pa.Table.from_pylist(rows, schema=KEYED_DECISION_SCHEMA)


def merge_decisions(duplicate_rows: pa.Table, caption_rows: pa.Table) -> pa.Table:
    """One row per key. A key in both tables is a duplicate-cluster survivor that is also in a caption
    cluster: it keeps its inherited captions and gains the caption size, and a caption-overflow verdict
    (with its duplicate_of, dup_cluster and distance) replaces its survivor fields."""
    caption_by_key = {row["key"]: row for row in caption_rows.to_pylist()}
    merged = []
    for row in duplicate_rows.to_pylist():
        caption = caption_by_key.pop(row["key"], None)
        if caption is not None:
            row["caption_cluster_size"] = caption["caption_cluster_size"]
            if caption["drop_reason"] is not None:
                for name in ("drop_reason", "duplicate_of", "dup_cluster", "dup_distance"):
                    row[name] = caption[name]
        merged.append(row)
    merged.extend(caption_by_key.values())
    return pa.Table.from_pylist(merged, schema=KEYED_DECISION_SCHEMA)
