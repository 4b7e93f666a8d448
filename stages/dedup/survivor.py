"""Who survives a cluster, why the others go, and what the survivor inherits.

Survivor rule, one total order: the copy from the highest-priority source (larger `source_priority`), then
the larger image (width * height as stored), then the smallest sample_id. Every function here takes the
members of whole clusters (any number of clusters per table) and returns decision rows; they know nothing
about Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stages.dedup.config import DedupConfig
from stages.dedup.minhash import jaccard_of_rows, signatures_from_arrow
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
# json.dumps(..., ensure_ascii=False) builds a new encoder per call: a third of its time per survivor.
_JSON = json.JSONEncoder(ensure_ascii=False)

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
    ordered, starts, sizes = _ranked(members)
    return ordered, list(zip(starts.tolist(), (starts + sizes).tolist()))


def _ranked(members: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Members sorted by cluster, then by the survivor rule; the start and size of each cluster."""
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
    starts = np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]]) if len(cluster) else np.zeros(0, np.int64)
    sizes = np.diff(np.append(starts, len(cluster)))
    return ordered, starts, sizes


@dataclass
class _Clusters:
    """Members of the clusters of two or more, in survivor-rule order: row positions into `ordered`, the
    position of each row's survivor (its cluster's first row) and each row's rank in its cluster."""

    ordered: pa.Table
    rows: np.ndarray
    first: np.ndarray
    rank: np.ndarray
    size: np.ndarray

    @classmethod
    def of(cls, members: pa.Table) -> _Clusters:
        ordered, starts, sizes = _ranked(members)
        multi = sizes >= 2
        starts, sizes = starts[multi], sizes[multi]
        first = np.repeat(starts, sizes)
        rank = np.arange(len(first)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return cls(ordered, first + rank, first, rank, np.repeat(sizes, sizes))

    def column(self, name: str, positions: np.ndarray | None = None) -> pa.Array:
        """`name` at the member rows (or at other positions into `ordered`)."""
        indices = pa.array(self.rows if positions is None else positions, pa.int64())
        return self.ordered[name].take(indices).combine_chunks()


def _where(mask: np.ndarray, values: pa.Array) -> pa.Array:
    """`values` where mask holds, null elsewhere."""
    return pc.if_else(pa.array(mask), values, pa.nulls(len(values), values.type))


def _inherited_captions(clusters: _Clusters, limit: int) -> pa.Array:
    """For each row: on a survivor, the distinct captions of the copies it replaced (not its own), in
    survivor-rule order with their sample_id and source, at most `limit`, as JSON; null elsewhere."""
    out: list[str | None] = [None] * len(clusters.rows)
    if not limit or not len(clusters.rows):
        return pa.array(out, pa.string())
    caption = clusters.column("caption")
    own = clusters.column("caption", clusters.first)
    candidate = (clusters.rank > 0) & caption.is_valid().to_numpy(zero_copy_only=False)
    candidate &= ~pc.fill_null(pc.equal(caption, own), False).to_numpy(zero_copy_only=False)
    positions = np.flatnonzero(candidate)
    if len(positions):
        # First occurrence of each (cluster, caption): rows of a cluster are contiguous and in order.
        found = pa.table({"first": clusters.first[positions], "position": positions, "caption": caption.take(pa.array(positions))})
        firsts = found.group_by(["first", "caption"], use_threads=False).aggregate([("position", "min")])
        positions = np.sort(firsts["position_min"].to_numpy())
        group_first = clusters.first[positions]
        new_group = np.r_[True, group_first[1:] != group_first[:-1]]
        starts = np.flatnonzero(new_group)
        order_in_group = np.arange(len(positions)) - np.repeat(starts, np.diff(np.append(starts, len(positions))))
        positions = positions[order_in_group < limit]
        ids = clusters.column("sample_id", clusters.rows[positions]).to_pylist()
        sources = clusters.column("source", clusters.rows[positions]).to_pylist()
        captions = caption.take(pa.array(positions)).to_pylist()
        survivor_of = (positions - clusters.rank[positions]).tolist()
        inherited: dict[int, list[dict[str, Any]]] = {}
        for survivor, sample_id, source, text in zip(survivor_of, ids, sources, captions):
            inherited.setdefault(survivor, []).append({"sample_id": sample_id, "source": source, "caption": text})
        for survivor, entries in inherited.items():
            out[survivor] = _JSON.encode(entries)
    return pa.array(out, pa.string())


def resolve_duplicate_clusters(members: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Decisions for image clusters (dup_exact / dup_pixels / dup_phash) and text-only clusters (dup_text).

    dup_distance is measured between each dropped copy and its survivor: pHash Hamming distance for images
    (a copy linked through a chain can be further than the radius), estimated Jaccard similarity for text.
    Vectorised over all clusters of the table (only the inherited captions loop, per distinct caption).
    """
    c = _Clusters.of(members)
    copy = c.rank > 0
    survivor_rows = c.rows - c.rank
    cluster_id = c.column("sample_id", survivor_rows)

    def same(name: str) -> np.ndarray:
        return pc.fill_null(pc.equal(c.column(name), c.column(name, survivor_rows)), False).to_numpy(zero_copy_only=False)

    text_only = c.column("text_only").fill_null(False).to_numpy(zero_copy_only=False)
    reason = np.where(text_only, DUP_TEXT, np.where(same("sha256"), DUP_EXACT, np.where(same("pixel_hash"), DUP_PIXELS, DUP_PHASH)))
    phash, survivor_phash = c.column("phash"), c.column("phash", survivor_rows)
    both = (phash.is_valid().to_numpy(zero_copy_only=False) & survivor_phash.is_valid().to_numpy(zero_copy_only=False))
    hamming_distance = hamming(phash.fill_null(0).to_numpy(), survivor_phash.fill_null(0).to_numpy()).astype(np.float64)
    distance = np.zeros(len(c.rows))
    has_distance = copy & (text_only | both)
    if text_only.any():
        minhash = signatures_from_arrow(c.ordered["minhash"], cfg)
        texts = np.flatnonzero(copy & text_only)
        distance[texts] = jaccard_of_rows(minhash, c.rows[texts], survivor_rows[texts])
    distance = np.where(text_only, distance, hamming_distance)
    return pa.table(
        {
            "key": c.column("key"),
            "sample_id": c.column("sample_id"),
            "drop_reason": _where(copy, pa.array(reason, pa.string())),
            "duplicate_of": _where(copy, cluster_id),
            "dup_cluster": cluster_id,
            "dup_distance": _where(has_distance, pa.array(distance, pa.float64())),
            "captions_inherited": _inherited_captions(c, cfg.max_inherited_captions),
            "caption_cluster_size": pa.nulls(len(c.rows), pa.int64()),
        },
        schema=KEYED_DECISION_SCHEMA,
    )


def resolve_caption_clusters(members: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Caption clusters of image-text samples: every member gets the cluster size; beyond `caption_cap`
    members (in survivor-rule order) are dropped as dup_caption_overflow, pointing at the first member."""
    c = _Clusters.of(members)
    survivor_rows = c.rows - c.rank
    first = c.column("sample_id", survivor_rows)
    overflow = c.rank >= cfg.caption_cap if cfg.caption_cap is not None else np.zeros(len(c.rows), bool)
    similarity = np.zeros(len(c.rows))
    if overflow.any():
        minhash = signatures_from_arrow(c.ordered["minhash"], cfg)
        over = np.flatnonzero(overflow)
        similarity[over] = jaccard_of_rows(minhash, c.rows[over], survivor_rows[over])
    return pa.table(
        {
            "key": c.column("key"),
            "sample_id": c.column("sample_id"),
            "drop_reason": _where(overflow, pa.array(np.full(len(c.rows), DUP_CAPTION_OVERFLOW), pa.string())),
            "duplicate_of": _where(overflow, first),
            "dup_cluster": first,
            "dup_distance": _where(overflow, pa.array(similarity, pa.float64())),
            "captions_inherited": pa.nulls(len(c.rows), pa.string()),
            "caption_cluster_size": pa.array(c.size, pa.int64()),
        },
        schema=KEYED_DECISION_SCHEMA,
    )


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
