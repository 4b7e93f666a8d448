"""The global dedup 'identify' job on Ray: records in, one decision row per clustered sample out.

Data flow (M = rows, E = duplicate edges, E << M):
Records come as pieces (`Piece`): groups of records files, read inside the tasks, or blocks of a Ray
dataset.
1. Band pass: one Ray task per piece turns every kept row's signatures into a few band rows
   (stages.dedup.identify.BAND_SCHEMA: bucket id, signature, row key, space, band; 26 bytes each), sorted
   by bucket id. They are the only per-row output, and the only large one, in the object store.
2. Band exchange, a hash-partitioned group-by on the bucket id: P Ray tasks, task p takes from every
   band block (zero-copy from the object store, one slice of the sorted block) the rows whose bucket id
   lies in its range (bucket ids are uniformly mixed 64-bit values, so ranges are hash partitions) and
   finds its pairs with the sort-based, capped search (stages.dedup.candidates). pHash pairs are verified
   there.
3. The edges (not the rows), distinct per partition, come to the driver for connected components:
   ~60 bytes per edge.
4. Member pass: one Ray task per piece keeps only rows that are cluster members (the driver's
   sorted nodes and labels are broadcast: per-edge size), as attribute rows with their cluster and a
   cluster partition. Q Ray tasks, one per cluster partition, verify the MinHash candidates on the
   members' full signatures (clusters re-split accordingly) and apply the survivor rule; each returns its
   decisions sorted by sample_id, with a sample of its sample_ids and the keys it dropped.
5. Caption clusters repeat 4 for image-text samples, leaving out copies that step 4 dropped (their keys
   come to the driver: fewer than the edge endpoints), so a caption counts distinct images.
6. Range exchange on sample_id: R tasks (R from the number of decisions, range boundaries from the
   samples) each take their range of every decision table, merge the two verdicts of a row and sort; the
   output dataset is their blocks in range order, so it is sorted by sample_id.

No process holds all signatures: a piece, a band partition (`rows_per_partition` band rows), the
members of the clusters of one partition, and per-edge structures (driver and broadcasts) only.
Why Ray tasks for the exchanges rather than Ray Data group-bys: a Ray Data group-by (Ray 2.60) is a
sorting hash shuffle (repartition(keys, sort=True), then map_groups) that copies every row into shuffle
shards, runs its map side in a dedicated pool of extra worker processes (a runtime env of its own,
~110-200 MB each) and costs seconds of planning per execution; the exchanges here read each band row in
place (zero-copy from the object store), in the worker processes the record passes already use. The
record passes are plain tasks too: Ray Data's streaming executor ran about one of their tasks at a time
on 2 CPUs (its resource reservation), and below its floor of 200 read blocks split every file after
reading, which stopped the map from fusing into the read. Records files never pass through the object
store.
Output is sorted by sample_id and identical for any number of blocks, workers or partitions: every step
works on sets (edges, clusters) and breaks ties by sample_id.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from curation.grouping import consecutive_groups
from stages.dedup.banding import IMAGE_SPACES, MINHASH_SPACES, Space
from stages.dedup.components import EdgeList, components
from stages.dedup.config import DedupConfig
from stages.dedup.identify import (
    RECORD_COLUMNS,
    band_block,
    bucket_bounds,
    cluster_members,
    edges_in_partition,
    bucket_range,
    partition_of,
    signature_columns,
    sorted_by_bucket,
    verify_minhash_clusters,
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
# Rows per slice in the record passes: bounds a task's working set (a slice's signatures and band keys)
# whatever the size of its piece.
MAP_SLICE_ROWS = 32_768
# Sample_ids each decision table contributes per rows_per_partition rows, for the range boundaries.
_SAMPLES_PER_PARTITION = 64


@dataclass
class DedupStats:
    band_rows: int = 0  # band keys of all kept rows' signatures
    partitions: int = 0  # band partitions (tasks of the band exchange)
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


# A piece of the records, what one task of a record pass reads: Parquet files (full fsspec URLs), or an
# Arrow block already in Ray's object store.
Piece = list[str] | ray.ObjectRef


def file_pieces(files: list[tuple[str, int]], rows_per_piece: int) -> list[Piece]:
    """Consecutive records files (URL, rows), about `rows_per_piece` rows per piece."""
    return list(consecutive_groups(files, rows_per_piece))


def piece_rows(total_rows: int, cfg: DedupConfig) -> int:
    """Rows per piece: at most rows_per_partition, and at least 4 pieces per CPU when there are enough
    rows, so the record passes keep every CPU busy to the end."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    return max(1, min(cfg.rows_per_partition, math.ceil(total_rows / (4 * cpus))))


def dataset_pieces(records: ray.data.Dataset) -> list[Piece]:
    """A Ray dataset's blocks as pieces (it is executed and its blocks stay in the object store)."""
    return list(records.to_arrow_refs())


def identify_duplicates(records: list[Piece], cfg: DedupConfig) -> ray.data.Dataset:
    """The decisions (DECISION_SCHEMA, sorted by sample_id) for the apply step to left-join on sample_id."""
    return identify(records, cfg).decisions


def identify(records: list[Piece], cfg: DedupConfig) -> DedupResult:
    """Cluster the kept records by every enabled signature and decide who survives; see the module doc."""
    stats = DedupStats()
    phases = _Phases(stats)
    edges = _band_edges(records, cfg, stats)
    phases.done("edges")
    if edges is None:
        return DedupResult(_empty_decisions(), stats)

    duplicates = _resolve(
        records, edges.within([*IMAGE_SPACES, Space.TEXT]), edges.within([Space.TEXT]), resolve_duplicate_clusters, cfg
    )
    dropped = np.concatenate([np.zeros(0, np.int64), *(meta["dropped"] for meta in duplicates.meta)])
    phases.done("duplicate_clusters")
    caption_edges = edges.within([Space.CAPTION]).without_nodes(dropped)
    captions = _resolve(records, caption_edges, caption_edges, resolve_caption_clusters, cfg)
    phases.done("caption_clusters")
    decisions, counts = _sorted_decisions(duplicates, captions, cfg)
    stats.decisions = counts
    phases.done("merge_and_sort")
    log.info("dedup identify: %s", stats)
    return DedupResult(decisions, stats)


def _datasets() -> ModuleType:
    """ray.data, imported where a dataset is made (on the driver): the import costs a process ~0.3 s, and
    the workers running this module's tasks never need it."""
    import ray.data

    return ray.data


def _empty_decisions() -> ray.data.Dataset:
    return _datasets().from_arrow(DECISION_SCHEMA.empty_table()).materialize()


def _partitions(rows: int, cfg: DedupConfig) -> int:
    return max(1, math.ceil(rows / cfg.rows_per_partition))


def _read_piece(piece: pa.Table | list[str], columns: list[str]) -> pa.Table:
    """The piece's records, only `columns` (a piece passed as an ObjectRef arrives as its table)."""
    if isinstance(piece, pa.Table):
        return piece.select(columns)
    tables = []
    for url in piece:
        fs, path = fsspec.core.url_to_fs(url)
        with fs.open(path, "rb") as f:
            tables.append(pq.read_table(f, columns=columns))
    return pa.concat_tables(tables)


# -- band exchange ------------------------------------------------------------------------------------------
def _band_edges(records: list[Piece], cfg: DedupConfig, stats: DedupStats) -> EdgeList | None:
    """Steps 1-3: band rows, then one task per bucket range; the distinct edges, or None without band rows."""
    wanted = ["sample_id", "status"] + (["width"] if cfg.text or cfg.captions else [])
    found = [_band_piece.remote(piece, wanted + signature_columns(cfg), cfg) for piece in records]
    blocks = [block for block, _ in found]
    stats.band_rows = sum(ray.get([rows for _, rows in found]))
    if stats.band_rows == 0:
        return None
    stats.partitions = _partitions(stats.band_rows, cfg)
    bounds = bucket_bounds(stats.partitions)
    found = ray.get(
        [_band_partition.remote(bounds[p], bounds[p + 1], cfg, *blocks) for p in range(stats.partitions)]
    )
    del blocks
    stats.pathological_buckets = sum(f["pathological_buckets"] for f in found)
    stats.largest_bucket = max(f["largest_bucket"] for f in found)
    edges = EdgeList.distinct(*(np.concatenate([f[name] for f in found]) for name in ("a", "b", "space")))
    stats.edges = {Space(s).name.lower(): n for s, n in edges.counts().items()}
    stats.minhash_candidates = sum(stats.edges.get(s.name.lower(), 0) for s in MINHASH_SPACES)
    return edges


def _released(table: pa.Table) -> pa.Table:
    """`table`, after asking the Arrow memory pool to hand its free pages back to the OS. Ray's workers are
    long-lived and Arrow's default pool (mimalloc) keeps the job's high-water mark: the tasks that can end
    the job (band exchange, survivor rule, decision ranges) call this at their end so that what runs next
    in those workers starts lean. Not at the start of a task or after each piece of a record pass: the
    next task would fault the same pages back in (zeroing them took up to 40% of a survivor-rule task)."""
    pa.default_memory_pool().release_unused()
    return table


def _in_slices(records: pa.Table, fn: Callable[[pa.Table], pa.Table]) -> pa.Table:
    """fn over slices of at most MAP_SLICE_ROWS rows of a block, each within one chunk (one records file),
    so that no column is copied to join chunks; the outputs as one table (chunked, not copied)."""
    out = [fn(pa.Table.from_batches([batch])) for batch in records.to_batches(max_chunksize=MAP_SLICE_ROWS)]
    return pa.concat_tables(out) if out else fn(records)


@ray.remote(num_returns=2)
def _band_piece(piece: pa.Table | list[str], columns: list[str], cfg: DedupConfig) -> tuple[pa.Table, int]:
    bands = _in_slices(_read_piece(piece, columns), lambda part: band_block(part, cfg))
    # Sorted once here, every exchange task takes its bucket range as a slice, without a scan.
    return sorted_by_bucket(bands), bands.num_rows


@ray.remote
def _band_partition(lo: int, hi: int, cfg: DedupConfig, *blocks: pa.Table) -> dict:
    """The edges among the band rows whose bucket id is in [lo, hi), from every (bucket-sorted) band block."""
    parts = []
    for block in blocks:
        rows = bucket_range(block["bucket"].to_numpy(), lo, hi)
        if rows.stop > rows.start:
            parts.append(block.slice(rows.start, rows.stop - rows.start))
    empty = np.zeros(0, np.int64)
    if not parts:
        return {"a": empty, "b": empty, "space": empty.astype(np.int8), "pathological_buckets": 0, "largest_bucket": 0}
    # Released here too: a job whose rows have no duplicates ends with these tasks.
    found = _released(edges_in_partition(pa.concat_tables(parts), cfg))
    partition_stats = found.filter(pc.is_null(found["a"]))
    found = found.filter(pc.is_valid(found["a"]))
    edges = EdgeList.distinct(*(found[name].to_numpy() for name in ("a", "b", "space")))
    return {
        "a": edges.a,
        "b": edges.b,
        "space": edges.space,
        "pathological_buckets": int(pc.sum(partition_stats["pathological_buckets"]).as_py()),
        "largest_bucket": int(pc.max(partition_stats["largest_bucket"]).as_py()),
    }


# -- clusters -----------------------------------------------------------------------------------------------
@dataclass
class _Resolved:
    """Decision tables (KEYED_DECISION_SCHEMA, each sorted by sample_id) left in the object store, and what
    each task told the driver: its row count, a sample of its sample_ids, the keys it dropped."""

    tables: list[ray.ObjectRef] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)


@ray.remote
def _members_piece(
    piece: pa.Table | list[str],
    columns: list[str],
    cfg: DedupConfig,
    nodes: np.ndarray,
    labels: np.ndarray,
    partitions: int,
) -> pa.Table:
    return _in_slices(_read_piece(piece, columns), lambda part: cluster_members(part, cfg, nodes, labels, partitions))


def _resolve(
    records: list[Piece], edges: EdgeList, unverified: EdgeList, resolver: Resolver, cfg: DedupConfig
) -> _Resolved:
    """Connected components of the edges on the driver, then the resolver over each cluster's members,
    once the `unverified` (MinHash) edges among them are checked on the full signatures."""
    nodes, labels = components(edges.a, edges.b)
    if not len(nodes):
        return _Resolved()
    # At least one partition per CPU: the survivor rule is the heaviest per-member step, and the output
    # does not depend on the number of partitions.
    partitions = max(_partitions(len(nodes), cfg), int(ray.cluster_resources().get("CPU", 1)))
    columns = RECORD_COLUMNS + signature_columns(cfg)
    nodes_ref, labels_ref = ray.put(nodes), ray.put(labels)
    blocks = [_members_piece.remote(piece, columns, cfg, nodes_ref, labels_ref, partitions) for piece in records]
    step = max(1, cfg.rows_per_partition // _SAMPLES_PER_PARTITION)
    resolved = _Resolved()
    for q, (left, right) in enumerate(_edges_by_partition(unverified, nodes, labels, partitions)):
        table, meta = _resolve_partition.remote(q, resolver, cfg, left, right, step, *blocks)
        resolved.tables.append(table)
        resolved.meta.append(meta)
    resolved.meta = ray.get(resolved.meta)
    return resolved


def _edges_by_partition(
    edges: EdgeList, nodes: np.ndarray, labels: np.ndarray, partitions: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The edges' endpoints split by the cluster partition they fall in (both endpoints of an edge share a
    cluster), so each partition task gets its own edges rather than every task all of them."""
    position = np.minimum(np.searchsorted(nodes, edges.a), max(len(nodes) - 1, 0))
    if len(edges.a) and (nodes[position] != edges.a).any():
        raise ValueError("an unverified edge's endpoint is not among the clustered nodes")
    part = partition_of(labels[position], partitions)
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(partitions + 1))
    return [(edges.a[order[lo:hi]], edges.b[order[lo:hi]]) for lo, hi in zip(bounds[:-1], bounds[1:])]


@ray.remote(num_returns=2)
def _resolve_partition(
    part: int,
    resolver: Resolver,
    cfg: DedupConfig,
    left: np.ndarray,
    right: np.ndarray,
    step: int,
    *blocks: pa.Table,
) -> tuple[pa.Table, dict]:
    pieces = [block.filter(pc.equal(block["part"], part)) for block in blocks if block.num_rows]
    pieces = [piece.select(MEMBER_SCHEMA.names) for piece in pieces if piece.num_rows]
    if pieces:
        members = verify_minhash_clusters(pa.concat_tables(pieces), left, right, cfg)
        decisions = resolver(members.cast(MEMBER_SCHEMA), cfg).sort_by("sample_id")
    else:
        decisions = KEYED_DECISION_SCHEMA.empty_table()
    dropped = decisions.filter(pc.is_valid(decisions["drop_reason"]))["key"].to_numpy()
    samples = decisions["sample_id"].take(pa.array(np.arange(0, decisions.num_rows, step))).to_pylist()
    return _released(decisions), {"rows": decisions.num_rows, "samples": samples, "dropped": dropped}


# -- merge and sort -----------------------------------------------------------------------------------------
def _sorted_decisions(duplicates: _Resolved, captions: _Resolved, cfg: DedupConfig) -> tuple[ray.data.Dataset, dict]:
    """Step 6: the decisions as one dataset sorted by sample_id, and the rows per drop_reason."""
    rows = sum(m["rows"] for m in duplicates.meta + captions.meta)
    if rows == 0:
        return _empty_decisions(), {}
    ranges = _partitions(rows, cfg)
    samples = sorted(s for m in duplicates.meta + captions.meta for s in m["samples"])
    cuts = sorted({samples[r * len(samples) // ranges] for r in range(1, ranges)})
    bounds = [None, *cuts, None]
    tables = [*duplicates.tables, *captions.tables]
    out = [
        _decision_range.remote(bounds[r], bounds[r + 1], len(duplicates.tables), *tables)
        for r in range(len(bounds) - 1)
    ]
    counts: Counter = Counter()
    for c in ray.get([meta for _, meta in out]):
        counts.update(c)
    return _datasets().from_arrow_refs([table for table, _ in out]), dict(counts)


@ray.remote(num_returns=2)
def _decision_range(lo: str | None, hi: str | None, duplicate_tables: int, *tables: pa.Table) -> tuple[pa.Table, dict]:
    """Decision rows with lo <= sample_id < hi (None: unbounded), both verdicts of a row merged, sorted."""

    def in_range(table: pa.Table) -> pa.Table:
        mask = None
        if lo is not None:
            mask = pc.greater_equal(table["sample_id"], lo)
        if hi is not None:
            upper = pc.less(table["sample_id"], hi)
            mask = upper if mask is None else pc.and_(mask, upper)
        return table if mask is None else table.filter(mask)

    def gathered(group: tuple[pa.Table, ...]) -> pa.Table:
        pieces = [in_range(t) for t in group if t.num_rows]
        pieces = [p for p in pieces if p.num_rows]
        return pa.concat_tables(pieces) if pieces else KEYED_DECISION_SCHEMA.empty_table()

    duplicate_rows, caption_rows = gathered(tables[:duplicate_tables]), gathered(tables[duplicate_tables:])
    if duplicate_rows.num_rows and caption_rows.num_rows:
        keyed = merge_decisions(duplicate_rows, caption_rows)
    else:
        keyed = duplicate_rows if duplicate_rows.num_rows else caption_rows
    decisions = keyed.select(DECISION_SCHEMA.names).cast(DECISION_SCHEMA).sort_by("sample_id")
    counts = Counter(r or "kept" for r in decisions["drop_reason"].to_pylist())
    return _released(decisions), dict(counts)
