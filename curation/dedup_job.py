"""The global dedup 'identify' job on Ray Data: records in, one decision row per clustered sample out.

Data flow (M = rows, E = duplicate edges, E << M):
1. attributes: kept rows, projected to ids, survivor-rule facts and signatures (a map that each pass below
   re-runs over the records, so no pass holds the signatures of every row in the object store).
2. band rows -> group-by partition -> edges: every signature becomes a few band keys; a Ray Data group-by on
   a partition id derived from the key brings equal keys together, and each partition finds its pairs with a
   sort-based, capped search (stages.dedup.candidates). pHash pairs are verified there.
3. The edges (not the rows) come to the driver for connected components: memory ~60 bytes per edge.
4. Cluster labels and the MinHash candidate edges are broadcast to a map over the attributes (no shuffle
   of the rows), members are grouped by cluster; there MinHash candidates are verified on the members' full
   signatures (clusters re-split accordingly) and the survivor rule turns each cluster into decisions.
5. Caption clusters repeat 3-4 for image-text samples, leaving out copies that step 4 dropped (their keys
   come to the driver: fewer than the edge endpoints), so a caption counts distinct images. The two
   verdicts of a row are merged by a last group-by on the row key.

No process holds all signatures: blocks, partitions (`rows_per_partition`), the members of one candidate
cluster, and per-edge structures (driver and broadcasts) only.
Output is sorted by sample_id and identical for any number of blocks or workers: every step works on sets
(edges, clusters) and breaks ties by sample_id.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data

from stages.dedup.banding import IMAGE_SPACES, MINHASH_SPACES, Space
from stages.dedup.components import EdgeList, components
from stages.dedup.config import DedupConfig
from stages.dedup.identify import (
    EDGE_SCHEMA,
    RECORD_COLUMNS,
    attach_clusters,
    attributes,
    band_rows,
    edges_in_partition,
    signature_columns,
    verify_minhash_clusters,
    with_partition,
)
from stages.dedup.survivor import (
    DECISION_SCHEMA,
    KEYED_DECISION_SCHEMA,
    MEMBER_SCHEMA,
    merge_decisions,
    resolve_caption_clusters,
    resolve_duplicate_clusters,
)

log = logging.getLogger(__name__)

Resolver = Callable[[pa.Table, DedupConfig], pa.Table]
_DUPLICATES, _CAPTIONS = 0, 1  # which resolver produced a decision row, for the merge


@dataclass
class DedupStats:
    band_rows: int = 0  # band keys of all kept rows' signatures
    partitions: int = 0
    minhash_candidates: int = 0  # distinct band-matched caption pairs, before Jaccard verification
    edges: dict[str, int] = field(default_factory=dict)  # distinct per space (MinHash ones: candidates)
    pathological_buckets: int = 0  # buckets searched by a window because they overflowed band_bucket_cap
    largest_bucket: int = 0  # band rows in the largest bucket
    decisions: dict[str, int] = field(default_factory=dict)  # rows per drop_reason ("kept" for the others)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase


class _Phases:
    """Wall time of each phase into DedupStats.seconds."""

    def __init__(self, stats: DedupStats) -> None:
        self.stats, self.start = stats, time.perf_counter()

    def done(self, phase: str) -> None:
        now = time.perf_counter()
        self.stats.seconds[phase] = round(now - self.start, 3)
        self.start = now


@dataclass
class DedupResult:
    decisions: ray.data.Dataset  # DECISION_SCHEMA, sorted by sample_id, materialised
    stats: DedupStats


def identify_duplicates(records: ray.data.Dataset, cfg: DedupConfig) -> ray.data.Dataset:
    """The decisions (DECISION_SCHEMA, sorted by sample_id) for the apply step to left-join on sample_id."""
    return identify(records, cfg).decisions


def identify(records: ray.data.Dataset, cfg: DedupConfig) -> DedupResult:
    """Cluster the kept records by every enabled signature and decide who survives; see the module doc."""
    stats = DedupStats()
    phases = _Phases(stats)
    # Lazy on purpose: each pass re-reads the records rather than holding every signature in the object store.
    attrs = records.select_columns(RECORD_COLUMNS + signature_columns(cfg)).map_batches(
        attributes, batch_format="pyarrow", fn_kwargs={"cfg": cfg}
    )
    bands = attrs.map_batches(band_rows, batch_format="pyarrow", fn_kwargs={"cfg": cfg}).materialize()
    stats.band_rows = bands.count()
    if stats.band_rows == 0:  # no kept row has a signature (a shuffle of nothing fails in Ray Data)
        return DedupResult(ray.data.from_arrow(DECISION_SCHEMA.empty_table()).materialize(), stats)
    stats.partitions = _partitions(stats.band_rows, cfg)
    phases.done("band_rows")
    found = (
        bands.map_batches(
            with_partition, batch_format="pyarrow", fn_kwargs={"column": "bucket", "partitions": stats.partitions}
        )
        .groupby("part", num_partitions=stats.partitions)
        .map_groups(edges_in_partition, batch_format="pyarrow", fn_kwargs={"cfg": cfg})
        .materialize()
    )
    found_edges = _to_driver(found, EDGE_SCHEMA)
    partition_stats = found_edges.filter(pc.is_null(found_edges["a"]))
    stats.pathological_buckets = int(pc.sum(partition_stats["pathological_buckets"]).as_py())
    stats.largest_bucket = int(pc.max(partition_stats["largest_bucket"]).as_py())
    found_edges = found_edges.filter(pc.is_valid(found_edges["a"]))
    edges = EdgeList.distinct(*(found_edges[name].to_numpy() for name in ("a", "b", "space")))
    stats.edges = {Space(s).name.lower(): n for s, n in edges.counts().items()}
    stats.minhash_candidates = sum(stats.edges.get(s.name.lower(), 0) for s in MINHASH_SPACES)
    phases.done("edges")

    duplicate_rows = _resolve(
        attrs, edges.within([*IMAGE_SPACES, Space.TEXT]), edges.within([Space.TEXT]), resolve_duplicate_clusters, cfg
    )
    dropped = _KEY_SCHEMA.empty_table()
    if duplicate_rows is not None:
        dropped = _to_driver(duplicate_rows, _KEY_SCHEMA, _dropped_keys)
    phases.done("duplicate_clusters")
    caption_edges = edges.within([Space.CAPTION]).without_nodes(dropped["key"].to_numpy())
    caption_rows = _resolve(attrs, caption_edges, caption_edges, resolve_caption_clusters, cfg)
    phases.done("caption_clusters")
    keyed = _merged(duplicate_rows, caption_rows, stats.partitions)
    if keyed is None:
        return DedupResult(ray.data.from_arrow(DECISION_SCHEMA.empty_table()).materialize(), stats)
    decisions = keyed.map_batches(_public_columns, batch_format="pyarrow").sort("sample_id").materialize()
    reasons = _to_driver(decisions, pa.schema([DECISION_SCHEMA.field("drop_reason")]))
    stats.decisions = dict(Counter(r or "kept" for r in reasons["drop_reason"].to_pylist()))
    phases.done("merge_and_sort")
    log.info("dedup identify: %s", stats)
    return DedupResult(decisions, stats)


_KEY_SCHEMA = pa.schema([("key", pa.int64())])


def _partitions(rows: int, cfg: DedupConfig) -> int:
    return max(1, math.ceil(rows / cfg.rows_per_partition))


def _to_driver(
    ds: ray.data.Dataset, schema: pa.Schema, reduce: Callable[[pa.Table], pa.Table] | None = None
) -> pa.Table:
    """Stream a materialised dataset's blocks to the driver, keeping `schema`'s columns of what `reduce`
    leaves: what stays (edges, dropped keys, reasons) is small by construction; no new Ray tasks run."""
    tables = []
    for block in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        block = reduce(block) if reduce is not None else block
        if block.num_rows:
            tables.append(block.select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _attach(attrs: pa.Table, nodes: ray.ObjectRef, labels: ray.ObjectRef, partitions: int) -> pa.Table:
    return attach_clusters(attrs, ray.get(nodes), ray.get(labels), partitions)


def _resolve_partition(
    members: pa.Table, resolver: Resolver, cfg: DedupConfig, left: ray.ObjectRef, right: ray.ObjectRef
) -> pa.Table:
    members = verify_minhash_clusters(members.select(MEMBER_SCHEMA.names), ray.get(left), ray.get(right), cfg)
    return resolver(members.cast(MEMBER_SCHEMA), cfg)


def _resolve(
    attrs: ray.data.Dataset, edges: EdgeList, unverified: EdgeList, resolver: Resolver, cfg: DedupConfig
) -> ray.data.Dataset | None:
    """Connected components of the edges on the driver, then the resolver over each cluster's members,
    once the `unverified` (MinHash) edges among them are checked on the full signatures. None when there
    is no edge (Ray Data turns empty blocks schema-less, which later shuffles reject)."""
    nodes, labels = components(edges.a, edges.b)
    if not len(nodes):
        return None
    partitions = _partitions(len(nodes), cfg)
    return (
        attrs.map_batches(
            _attach,
            batch_format="pyarrow",
            fn_kwargs={"nodes": ray.put(nodes), "labels": ray.put(labels), "partitions": partitions},
        )
        .groupby("part", num_partitions=partitions)
        .map_groups(
            _resolve_partition,
            batch_format="pyarrow",
            fn_kwargs={"resolver": resolver, "cfg": cfg, "left": ray.put(unverified.a), "right": ray.put(unverified.b)},
        )
        .materialize()
    )


def _dropped_keys(decisions: pa.Table) -> pa.Table:
    return decisions.filter(pc.is_valid(decisions["drop_reason"])).select(["key"])


def _tag(decisions: pa.Table, origin: int, partitions: int) -> pa.Table:
    """Mark which resolver a row came from, and spread rows by key so both verdicts of a row meet."""
    tagged = decisions.append_column("origin", pa.array(np.full(decisions.num_rows, origin, np.int8)))
    return with_partition(tagged, "key", partitions)


def _merged(
    duplicate_rows: ray.data.Dataset | None, caption_rows: ray.data.Dataset | None, partitions: int
) -> ray.data.Dataset | None:
    """One keyed row per sample: a group-by on the key when both resolvers produced rows."""
    if duplicate_rows is None:
        return caption_rows
    if caption_rows is None:
        return duplicate_rows
    return (
        duplicate_rows.map_batches(_tag, batch_format="pyarrow", fn_kwargs={"origin": _DUPLICATES, "partitions": partitions})
        .union(caption_rows.map_batches(_tag, batch_format="pyarrow", fn_kwargs={"origin": _CAPTIONS, "partitions": partitions}))
        .groupby("part", num_partitions=partitions)
        .map_groups(_merge_partition, batch_format="pyarrow")
    )


def _public_columns(decisions: pa.Table) -> pa.Table:
    return decisions.select(DECISION_SCHEMA.names).cast(DECISION_SCHEMA)


def _merge_partition(decisions: pa.Table) -> pa.Table:
    origin = decisions["origin"].to_numpy()
    keyed = decisions.select(KEYED_DECISION_SCHEMA.names)
    return merge_decisions(keyed.filter(pa.array(origin == _DUPLICATES)), keyed.filter(pa.array(origin == _CAPTIONS)))
