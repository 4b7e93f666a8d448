"""Phase 3, publish, as plain Ray tasks over sample_id ranges: no Ray Data shuffle, nothing large in the
object store, and no task that holds more than one range or one shard, whatever the corpus size.

sample_ids are uniform hex digests, so R equal ranges of the id space (`curation.schema.id_range`) are
balanced hash partitions that are also in sort order. R = ceil(records / ray.range_rows).

1. scatter (a task per records file, only when R > 1): the file's rows sorted by sample_id, one Parquet row
   group per range.
2. place (a task per range): the range's rows from every records file, the dedup decisions of the range
   looked up by sample_id, then apply-dedup, CLIP (when on) and bucket planning. Kept rows are written
   sorted by (bucket, sample_id) in small row groups, dropped ones sorted by sample_id; the task returns its
   kept count per bucket.
3. The driver sizes each bucket's shards from those counts. Shard s of a bucket with n shards holds the ids
   of range s of n (`stages.shards.shard_index`), so the layout depends on the counts alone.
4. shard (a task per shard, committed as before): its bucket's rows of its id range, read from the placed
   files that overlap it (row-group statistics skip the rest), rendered into the tar.
5. manifest: the driver, range by range in order, sorts the range's dropped rows with the rows the shard
   units returned for it and appends them to the manifest writer.

Scatter and place units are committed like the analysis and shard units, so a resumed run skips them (and
CLIP does not embed a range twice). The outputs do not depend on R: it sizes tasks, not the layout.
"""

from __future__ import annotations

import math
import posixpath
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import ray

from curation import schema as rec
from curation.commit import commit_unit, finished_unit, write_atomically
from curation.config import PipelineConfig
from curation.stage import Stage
from curation.units import (
    DONE, WORK_DIR, read_parquet, records_file, shard_unit, write_parquet_atomically, write_shard_unit,
)  # fmt: skip
from manifests.writer import ManifestWriter
from stages.dedup_apply import DECISION_RENAMES
from stages.shards import TEXT_BUCKET, ShardInfo, shards_for_bucket

PUBLISH_DIR = f"{WORK_DIR}/publish"
# Kept rows per row group of a placed file: what a shard writer reads beyond its own id range, at most.
PLACED_ROW_GROUP = 1024
# A rough JPEG/WebP size per pixel, only to size shards before they are written.
ENCODED_BYTES_PER_PIXEL = 0.35


@dataclass(frozen=True)
class Plan:
    """What every publish task needs to know; sent to each task once, through the object store."""

    out: str
    schema: pa.Schema
    cfg: PipelineConfig
    ranges: int
    stages: list[Stage]  # apply-dedup, CLIP (when on), bucket planning
    score_columns: list[str]
    decision_files: list[str]
    # Names this plan in the workers' cache of set-up stages.
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def unit(self, kind: str, index: int) -> str:
        return f"{PUBLISH_DIR}/{kind}-r{self.ranges}-{index:05d}"


def publish(plan: Plan, partitions: list[int]) -> list[ShardInfo]:
    """Run steps 1-5; returns the shards written (or committed by an earlier attempt), in name order."""
    boxed = ray.put(plan)
    pieces: list[list[tuple[str, int | None]]] = [[] for _ in range(plan.ranges)]
    if plan.ranges > 1:
        for p, groups in zip(partitions, ray.get([_scatter.remote(boxed, p) for p in partitions])):
            for r, row_group in groups:
                pieces[r].append((plan.unit("scatter", p) + ".parquet", row_group))
    else:
        pieces[0] = [(records_file(p), None) for p in partitions]
    placed = ray.get([_place.remote(boxed, r, pieces[r]) for r in range(plan.ranges)])
    counts: Counter[str] = Counter()
    for c in placed:
        counts.update(c)
    n_shards = {b: shards_for_bucket(n, _bytes_per_sample(b), plan.cfg.shards.max_samples, plan.cfg.shards.max_bytes)
                for b, n in sorted(counts.items())}  # fmt: skip
    units = [(b, s, n) for b, n in n_shards.items() for s in range(n)]
    infos = ray.get([_shard.remote(boxed, b, s, n) for b, s, n in units])
    _write_manifest(plan, n_shards)
    return sorted((ShardInfo(**i) for i in infos if i is not None), key=lambda i: i.shard)


def record_ranges(total_rows: int, range_rows: int) -> int:
    return max(1, math.ceil(total_rows / range_rows))


# -- 1. scatter -----------------------------------------------------------------------------------------------
@ray.remote(max_retries=-1)
def _scatter(plan: Plan, partition: int) -> list[tuple[int, int]]:
    """Rewrite one records file sorted by sample_id, a row group per range; returns (range, row group) pairs."""
    unit = plan.unit("scatter", partition)
    if (done := finished_unit(plan.out, unit + DONE)) is not None:
        return [tuple(g) for g in done["groups"]]
    table = read_parquet(plan.out, records_file(partition))
    table = table.sort_by("sample_id")
    ranges = np.array([rec.id_range(s, plan.ranges) for s in table.column("sample_id").to_pylist()], dtype=np.int64)
    starts = np.searchsorted(ranges, np.arange(plan.ranges + 1))
    groups: list[tuple[int, int]] = []

    def write(f) -> None:
        with pq.ParquetWriter(f, table.schema, compression="zstd") as w:
            for r in range(plan.ranges):
                if starts[r + 1] > starts[r]:
                    w.write_table(table.slice(starts[r], starts[r + 1] - starts[r]))
                    groups.append((r, len(groups)))

    write_atomically(posixpath.join(plan.out, unit + ".parquet"), write)
    commit_unit(plan.out, unit + DONE, [unit + ".parquet"], groups=groups)
    return groups


# -- 2. place -------------------------------------------------------------------------------------------------
# Stages set up in this worker process, by plan: a model-backed stage (CLIP) loads once per worker, not per task.
_READY: dict[str, list[Stage]] = {}


@ray.remote(max_retries=-1)
def _place(plan: Plan, r: int, pieces: list[tuple[str, int | None]]) -> dict[str, int]:
    """Range r through apply-dedup, CLIP and bucket planning; returns its kept count per bucket."""
    unit = plan.unit("place", r)
    if (done := finished_unit(plan.out, unit + DONE)) is not None:
        return done["kept"]
    started = time.process_time()
    tables = [_read_piece(plan.out, f, rg) for f, rg in pieces]
    table = pa.concat_tables(tables).sort_by("sample_id") if tables else plan.schema.empty_table()
    if plan.decision_files:
        table = _with_decisions(table, _decisions_in_range(plan, r))
    seconds: Counter[str] = Counter()
    for stage in _stages(plan):
        t = time.process_time()
        size = plan.cfg.clip.batch_size if stage.resources.actor else plan.cfg.ray.batch_size
        table = pa.concat_tables([stage(table.slice(i, size)) for i in range(0, table.num_rows, size)] or
                                 [plan.schema.empty_table()])  # fmt: skip
        seconds[stage.name] += time.process_time() - t
    kept_mask = pc.equal(table.column("status"), rec.KEPT)
    kept = table.filter(kept_mask).sort_by([("bucket", "ascending"), ("sample_id", "ascending")])
    dropped = table.filter(pc.invert(kept_mask))
    write_atomically(posixpath.join(plan.out, unit + ".kept.parquet"),
                     lambda f: pq.write_table(kept, f, compression="zstd", row_group_size=PLACED_ROW_GROUP))  # fmt: skip
    write_parquet_atomically(plan.out, unit + ".dropped.parquet", dropped)
    counts = dict(sorted(Counter(kept.column("bucket").to_pylist()).items()))
    seconds["publish"] = time.process_time() - started - sum(seconds.values())  # reading, sorting, writing
    commit_unit(plan.out, unit + DONE, [unit + ".kept.parquet", unit + ".dropped.parquet"], kept=counts,
                stage_seconds={k: round(v, 3) for k, v in sorted(seconds.items())})  # fmt: skip
    return counts


def _read_piece(out: str, rel: str, row_group: int | None) -> pa.Table:
    if row_group is None:
        return read_parquet(out, rel)
    fs, _ = fsspec.core.url_to_fs(out)
    with fs.open(posixpath.join(out, rel), "rb") as f:
        return pq.ParquetFile(f).read_row_group(row_group)


def _stages(plan: Plan) -> list[Stage]:
    if plan.token not in _READY:
        _READY.clear()
        for s in plan.stages:
            s.ensure_setup()
        _READY[plan.token] = plan.stages
    return _READY[plan.token]


def _decisions_in_range(plan: Plan, r: int) -> pa.Table:
    """The dedup decisions of range r (the decision files are sorted by sample_id: statistics prune them)."""
    return _read_where(plan.out, plan.decision_files, _in_id_range(*rec.id_range_bounds(r, plan.ranges)))


def _with_decisions(table: pa.Table, decisions: pa.Table) -> pa.Table:
    """The records with their dedup columns taken from the decisions (a left join on sample_id, in order)."""
    decisions = decisions.rename_columns([DECISION_RENAMES.get(c, c) for c in decisions.column_names])
    at = pc.index_in(table.column("sample_id"), value_set=decisions.column("sample_id"))
    for name in decisions.column_names:
        if name == "sample_id":
            continue
        column = decisions.column(name).take(at)
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


# -- 4. shards ------------------------------------------------------------------------------------------------
@ray.remote(max_retries=-1)
def _shard(plan: Plan, bucket: str, index: int, n_shards: int) -> dict[str, Any] | None:
    """Shard `index` of `bucket`: the kept rows of its id range, rendered into its tar (a committed unit)."""
    lo, hi = rec.id_range_bounds(index, n_shards)
    files = [plan.unit("place", r) + ".kept.parquet" for r in rec.overlapping_ranges(index, n_shards, plan.ranges)]
    rows = lambda: _read_where(plan.out, files, (pc.field("bucket") == bucket) & _in_id_range(lo, hi))  # noqa: E731
    info = write_shard_unit(rows, bucket, index, plan.out, plan.schema, plan.score_columns, plan.cfg)
    return None if info is None else vars(info)


# -- 5. manifest ----------------------------------------------------------------------------------------------
def _write_manifest(plan: Plan, n_shards: dict[str, int]) -> list[str]:
    """The manifest, range by range in sample_id order: each range's dropped rows and shard rows, sorted."""
    fs, _ = fsspec.core.url_to_fs(plan.out)
    if fs.exists(posixpath.join(plan.out, "manifest")):  # parts of a killed run's manifest: all are redone
        fs.rm(posixpath.join(plan.out, "manifest"), recursive=True)
    schema = rec.manifest_schema(plan.schema)
    writer = ManifestWriter(plan.out, schema)
    for r in range(plan.ranges):
        lo, hi = rec.id_range_bounds(r, plan.ranges)
        shard_rows = [shard_unit(b, s) + ".parquet" for b, n in n_shards.items()
                      for s in rec.overlapping_ranges(r, plan.ranges, n)]  # fmt: skip
        parts = [read_parquet(plan.out, plan.unit("place", r) + ".dropped.parquet")]
        if shard_rows:
            parts.append(_read_where(plan.out, shard_rows, _in_id_range(lo, hi)))
        rows = pa.concat_tables([p.select(schema.names).cast(schema) for p in parts]).sort_by("sample_id")
        writer.add(rows)
    return writer.close()


# -- reading --------------------------------------------------------------------------------------------------
def _in_id_range(lo: str | None, hi: str | None) -> pc.Expression:
    expr = pc.scalar(True)
    if lo is not None:
        expr = expr & (pc.field("sample_id") >= lo)
    if hi is not None:
        expr = expr & (pc.field("sample_id") < hi)
    return expr


def _read_where(out: str, files: list[str], where: pc.Expression) -> pa.Table:
    """Rows of `files` (relative to `out`) that match `where`; row groups whose statistics rule it out are skipped."""
    fs, root = fsspec.core.url_to_fs(out)
    dataset = pads.dataset([posixpath.join(root, f) for f in files], format="parquet", filesystem=fs)
    return dataset.to_table(filter=where)


def _bytes_per_sample(bucket: str) -> float:
    if bucket == TEXT_BUCKET:
        return 512.0
    w, h = (int(x) for x in bucket.split("x"))
    return w * h * ENCODED_BYTES_PER_PIXEL
