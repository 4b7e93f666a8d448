"""Phase 3, publish, as plain Ray tasks over sample_id ranges: no Ray Data shuffle, nothing large in the
object store, and no task that holds more than one range or one shard, whatever the corpus size.

sample_ids are uniform hex digests, so R equal ranges of the id space (`curation.schema.id_range`) are
balanced hash partitions that are also in sort order. R = ceil(records / ray.range_rows).

1. scatter (only when R > 1; a task per group of consecutive records files holding about range_rows
   rows): the group's rows sorted by sample_id, one Parquet row group per range.
2. place (a task per range): the range's rows (a row group of every scattered file), the dedup decisions
   of the range looked up by sample_id, then apply-dedup, CLIP (when on) and bucket planning, batch by
   batch. Kept rows go to a file per bucket, dropped ones to another, each sorted by sample_id in row
   groups of about PLACED_ROW_GROUP rows; the task returns its kept count per bucket.
3. The driver sizes each bucket's shards from those counts. Shard s of a bucket with n shards holds the ids
   of range s of n, so the layout depends on the counts alone.
4. shard (a task per shard, committed as before): the rows of its id range from its bucket's placed files
   of the ranges that overlap it (row-group statistics skip the rest), rendered into the tar.
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
from curation.commit import ParquetStream, commit_unit, finished_unit, write_atomically
from curation.config import PipelineConfig
from curation.grouping import consecutive_groups
from curation.ray_adapter import cluster_gpus
from curation.stage import Stage
from curation.units import (
    DONE, WORK_DIR, read_parquet, records_file, shard_unit, write_shard_unit,
)  # fmt: skip
from manifests.writer import ManifestWriter
from stages.dedup.survivor import DECISION_SCHEMA
from stages.dedup_apply import DECISION_RENAMES
from stages.shards import TEXT_BUCKET, ShardInfo, shards_for_bucket

PUBLISH_DIR = f"{WORK_DIR}/publish"
# Rows per row group of a placed file (a flush writes its buffer: this plus at most one batch): about what
# a shard writer reads beyond its own id range.
PLACED_ROW_GROUP = 1024
# Rows a place task buffers before writing them (a row group per file and flush).
BUFFER_BYTES = 32 * 2**20
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


def publish(plan: Plan, partitions: list[tuple[int, int]]) -> list[ShardInfo]:
    """Run steps 1-5 over the (records file index, rows) `partitions`; returns the shards written (or
    committed by an earlier attempt), in name order."""
    boxed = ray.put(plan)
    pieces: list[list[tuple[str, int | None]]] = [[] for _ in range(plan.ranges)]
    if plan.ranges > 1:
        groups = scatter_groups(partitions, plan.cfg.ray.range_rows)
        for g, row_groups in enumerate(ray.get([_scatter.remote(boxed, g, files) for g, files in enumerate(groups)])):
            for r, row_group in row_groups:
                pieces[r].append((plan.unit("scatter", g) + ".parquet", row_group))
    else:
        pieces[0] = [(records_file(p), None) for p, _ in partitions]
    placed = _run_places(plan, boxed, pieces)
    counts: Counter[str] = Counter()
    for c in placed:
        counts.update(c)
    n_shards = {b: shards_for_bucket(n, _bytes_per_sample(b), plan.cfg.shards.max_samples, plan.cfg.shards.max_bytes)
                for b, n in sorted(counts.items())}  # fmt: skip
    # A shard reads the bucket files its ranges committed: never a leftover of a killed attempt.
    infos = ray.get([_shard.remote(boxed, b, s, n, [placed_file(plan.unit("place", r), b)
                                                 for r in rec.overlapping_ranges(s, n, plan.ranges) if b in placed[r]])
                     for b, n in n_shards.items() for s in range(n)])  # fmt: skip
    _write_manifest(plan, n_shards)
    return sorted((ShardInfo(**i) for i in infos if i is not None), key=lambda i: i.shard)


def _run_places(plan: Plan, boxed: ray.ObjectRef, pieces: list[list[tuple[str, int | None]]]) -> list[dict[str, int]]:
    """The place tasks, in range order. With a model-backed stage (CLIP) each task asks for that stage's GPU
    share when the cluster has GPUs, and at most `clip.actors` run at once: one model copy each."""
    model = [s.resources for s in plan.stages if s.resources.actor]
    if not model:
        return ray.get([_place.remote(boxed, r, pieces[r]) for r in range(plan.ranges)])
    gpus = max(m.num_gpus for m in model) if cluster_gpus() > 0 else 0.0
    # On GPUs a worker ends with its task (max_calls=1, Ray's default for GPU tasks, which options() would
    # not apply): its model copy and GPU memory go with it, and the next task sees the GPU Ray gives it.
    place = _place.options(num_cpus=max(m.num_cpus for m in model), num_gpus=gpus, max_calls=1 if gpus else 0)
    refs: list[ray.ObjectRef] = []
    running: list[ray.ObjectRef] = []
    for r in range(plan.ranges):
        if len(running) >= plan.cfg.clip.actors:
            _, running = ray.wait(running, num_returns=1)
        refs.append(place.remote(boxed, r, pieces[r]))
        running.append(refs[-1])
    return ray.get(refs)


def record_ranges(total_rows: int, range_rows: int) -> int:
    return max(1, math.ceil(total_rows / range_rows))


def scatter_groups(partitions: list[tuple[int, int]], range_rows: int) -> list[list[str]]:
    """Consecutive records files, about `range_rows` rows per group: the ranges then read a row group from
    each of about R files, not from every records file (R x files reads)."""
    return consecutive_groups(((records_file(p), n) for p, n in partitions), range_rows)


# -- 1. scatter -----------------------------------------------------------------------------------------------
@ray.remote(max_retries=-1)
def _scatter(plan: Plan, group: int, files: list[str]) -> list[tuple[int, int]]:
    """Rewrite a group of records files sorted by sample_id, a row group per range; returns the (range,
    row group) pairs."""
    unit = plan.unit("scatter", group)
    if (done := finished_unit(plan.out, unit + DONE)) is not None:
        return [tuple(g) for g in done["row_groups"]]
    table = pa.concat_tables([read_parquet(plan.out, f) for f in files]).sort_by("sample_id")
    ranges = np.array([rec.id_range(s, plan.ranges) for s in table.column("sample_id").to_pylist()], dtype=np.int64)
    starts = np.searchsorted(ranges, np.arange(plan.ranges + 1))
    row_groups: list[tuple[int, int]] = []

    def write(f) -> None:
        with pq.ParquetWriter(f, table.schema, compression="zstd") as w:
            for r in range(plan.ranges):
                if (n := starts[r + 1] - starts[r]) > 0:
                    w.write_table(table.slice(starts[r], n), row_group_size=n)  # one row group per range
                    row_groups.append((r, len(row_groups)))

    write_atomically(posixpath.join(plan.out, unit + ".parquet"), write)
    commit_unit(plan.out, unit + DONE, [unit + ".parquet"], row_groups=row_groups)
    return row_groups


# -- 2. place -------------------------------------------------------------------------------------------------
# Stages set up in this worker process, by plan: a model-backed stage (CLIP) loads once per worker, not per task.
_READY: dict[str, list[Stage]] = {}


@ray.remote(max_retries=-1)
def _place(plan: Plan, r: int, pieces: list[tuple[str, int | None]]) -> dict[str, int]:
    """Range r through apply-dedup, CLIP and bucket planning; returns its kept count per bucket.

    Writes `<unit>/<bucket>.parquet` (kept rows) and `<unit>/dropped.parquet` (dropped rows, without the
    byte references), as the batches come: the task holds the range's input and a few buffered row groups."""
    unit = plan.unit("place", r)
    if (done := finished_unit(plan.out, unit + DONE)) is not None:
        return done["kept"]
    started = time.process_time()
    tables = [_read_piece(plan.out, f, rg) for f, rg in pieces]
    table = pa.concat_tables(tables).sort_by("sample_id") if tables else plan.schema.empty_table()
    del tables
    if plan.decision_files:
        table = _with_decisions(table, _decisions_in_range(plan, r))
    stages = _stages(plan)
    step = max([plan.cfg.ray.batch_size] + [plan.cfg.clip.batch_size for s in stages if s.resources.actor])
    writers = _BucketWriters(plan.out, unit, plan.schema, rec.manifest_schema(plan.schema))
    seconds: Counter[str] = Counter()
    try:
        for i in range(0, table.num_rows, step):
            batch = table.slice(i, step)
            for stage in stages:
                t = time.process_time()
                size = plan.cfg.clip.batch_size if stage.resources.actor else plan.cfg.ray.batch_size
                batch = pa.concat_tables([stage(batch.slice(j, size)) for j in range(0, batch.num_rows, size)])
                seconds[stage.name] += time.process_time() - t
            writers.add(batch)
        files, counts = writers.close()
    finally:
        writers.abort()
    seconds["publish"] = time.process_time() - started - sum(seconds.values())  # reading, sorting, writing
    commit_unit(plan.out, unit + DONE, files, kept=counts,
                stage_seconds={k: round(v, 3) for k, v in sorted(seconds.items())})  # fmt: skip
    return counts


class _BucketWriters:
    """A place unit's output files, written as batches come: one per bucket of kept rows, one of dropped rows.

    Rows wait in a buffer per file so that row groups are not a batch's sliver each; a full buffer, or the
    largest one when all together pass BUFFER_BYTES, is written out as a row group."""

    def __init__(self, out: str, unit: str, schema: pa.Schema, dropped_schema: pa.Schema):
        self.out, self.unit = out, unit
        self.schemas = {"dropped": dropped_schema}
        self.schema = schema
        self.open: dict[str, ParquetStream] = {}
        self.buffers: dict[str, list[pa.Table]] = {}
        self.buffered_rows: Counter[str] = Counter()
        self.buffered_bytes: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def add(self, batch: pa.Table) -> None:
        kept = pc.equal(batch.column("status"), rec.KEPT)
        self.buffer("dropped", batch.filter(pc.invert(kept)).select(self.schemas["dropped"].names))
        kept_rows = batch.filter(kept)
        for bucket in sorted(set(kept_rows.column("bucket").to_pylist())):
            rows = kept_rows.filter(pc.equal(kept_rows.column("bucket"), bucket))
            self.counts[bucket] += rows.num_rows
            self.buffer(bucket, rows)

    def buffer(self, name: str, rows: pa.Table) -> None:
        self.buffers.setdefault(name, []).append(rows)
        self.buffered_rows[name] += rows.num_rows
        self.buffered_bytes[name] += rows.nbytes
        if self.buffered_rows[name] >= PLACED_ROW_GROUP:
            self.flush(name)
        while self.buffered_bytes.total() > BUFFER_BYTES:
            self.flush(max(self.buffered_bytes, key=self.buffered_bytes.__getitem__))

    def flush(self, name: str) -> None:
        schema = self.schemas.get(name, self.schema)
        rows = pa.concat_tables(self.buffers.pop(name, []) or [schema.empty_table()])
        del self.buffered_rows[name], self.buffered_bytes[name]
        if rows.num_rows == 0 and name in self.open:
            return
        if name not in self.open:
            self.open[name] = ParquetStream(posixpath.join(self.out, placed_file(self.unit, name)), schema)
        self.open[name].write(rows)

    def close(self) -> tuple[list[str], dict[str, int]]:
        # Every unit has a dropped file, even an empty one: the manifest reads it.
        for name in sorted({*self.buffers, *({"dropped"} - set(self.open))}):
            self.flush(name)
        for stream in self.open.values():
            stream.close()
        files = [placed_file(self.unit, name) for name in sorted(self.open)]
        self.open.clear()
        return files, dict(sorted(self.counts.items()))

    def abort(self) -> None:
        for stream in self.open.values():
            stream.abort()
        self.open.clear()


def placed_file(unit: str, name: str) -> str:
    return f"{unit}/{name}.parquet"


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
    return _read_where(plan.out, plan.decision_files, _in_id_range(*rec.id_range_bounds(r, plan.ranges)),
                       DECISION_SCHEMA)


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
def _shard(plan: Plan, bucket: str, index: int, n_shards: int, files: list[str]) -> dict[str, Any] | None:
    """Shard `index` of `n_shards` of `bucket`: the rows of id range `index` of `n_shards` in the placed
    `files`, rendered into its tar (a committed unit)."""
    lo, hi = rec.id_range_bounds(index, n_shards)
    rows = lambda: _read_where(plan.out, files, _in_id_range(lo, hi), plan.schema)  # noqa: E731
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
        dropped = read_parquet(plan.out, placed_file(plan.unit("place", r), "dropped")).cast(schema)
        shards = _read_where(plan.out, shard_rows, _in_id_range(lo, hi), schema)
        rows = pa.concat_tables([dropped, shards]).sort_by("sample_id")
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


def _read_where(out: str, files: list[str], where: pc.Expression, schema: pa.Schema) -> pa.Table:
    """The `schema` columns of the rows of `files` (relative to `out`) that match `where`; row groups whose
    statistics rule it out are skipped."""
    if not files:
        return schema.empty_table()
    fs, root = fsspec.core.url_to_fs(out)
    dataset = pads.dataset([posixpath.join(root, f) for f in files], format="parquet", filesystem=fs)
    return dataset.to_table(columns=schema.names, filter=where).cast(schema)


def _bytes_per_sample(bucket: str) -> float:
    if bucket == TEXT_BUCKET:
        return 512.0
    w, h = (int(x) for x in bucket.split("x"))
    return w * h * ENCODED_BYTES_PER_PIXEL
