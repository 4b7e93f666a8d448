"""The pipeline's units of work, each committed exactly once (`curation.commit`), so a rerun skips them.

- analysis: one input partition through ingest and every analysis stage -> one records file;
- shard: one (bucket, shard) group -> its tar and the rows the manifest gets for it;
- publish's scatter and place units (`curation.publish`).

Each runs inside one worker call, so a unit is never split across tasks and a retried task (a worker that
died) redoes the whole unit under a fresh temporary name.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections import Counter
from typing import Callable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curation import schema as rec
from curation.commit import commit_unit, finished_unit, write_atomically
from curation.config import PipelineConfig
from curation.stage import Resources, Stage
from stages.bucket_stage import BucketRenderer
from stages.ingest import IngestStage
from stages.shards import SHARD_STAGE, TEXT_BUCKET, ShardInfo, write_shard
from stages.sources import Partition

WORK_DIR = "_work"
RECORDS_DIR = f"{WORK_DIR}/records"
SHARD_UNITS_DIR = f"{WORK_DIR}/shards"
DONE = ".done.json"


def records_file(index: int) -> str:
    return f"{RECORDS_DIR}/part-{index:05d}.parquet"


def records_done(index: int) -> str:
    return records_file(index) + DONE


def shard_unit(bucket: str, index: int) -> str:
    return f"{SHARD_UNITS_DIR}/{bucket}/{index:06d}"


def write_parquet_atomically(out_root: str, rel: str, table: pa.Table) -> None:
    write_atomically(posixpath.join(out_root, rel), lambda f: pq.write_table(table, f, compression="zstd"))


def read_parquet(out_root: str, rel: str) -> pa.Table:
    fs, _ = fsspec.core.url_to_fs(out_root)
    with fs.open(posixpath.join(out_root, rel), "rb") as f:
        return pq.read_table(f)


class PartitionAnalysis(Stage):
    """Phase 1's unit: partition descriptions in, one summary row per committed partition out."""

    name = "analysis"

    def __init__(self, ingest: IngestStage, stages: list[Stage], out_root: str, batch_size: int):
        super().__init__()
        self.ingest = ingest
        self.stages = stages
        self.out_root = out_root
        self.batch_size = batch_size
        inner = [ingest, *stages]
        self.resources = Resources(
            num_cpus=max(s.resources.num_cpus for s in inner),
            num_gpus=max(s.resources.num_gpus for s in inner),
            actor=any(s.resources.actor for s in inner),
        )

    def bind(self, schema: pa.Schema) -> "PartitionAnalysis":
        for s in [self.ingest, *self.stages]:
            s.bind(schema)
        return super().bind(schema)

    def setup(self) -> None:
        for s in [self.ingest, *self.stages]:
            s.ensure_setup()

    def process(self, batch: pa.Table) -> pa.Table:
        summaries = [self.run_partition(desc) for desc in batch.column("partition").to_pylist()]
        return pa.Table.from_pylist(summaries, schema=pa.schema([("partition", pa.int64()), ("rows", pa.int64())]))

    def run_partition(self, desc: str) -> dict[str, int]:
        index = Partition(**json.loads(desc)).index
        # A worker that died after committing has its task retried: the unit is already there.
        if (done := finished_unit(self.out_root, records_done(index))) is not None:
            return {"partition": index, "rows": done["rows"]}
        seconds: Counter[str] = Counter()
        started = time.process_time()
        records = self.ingest(pa.table({"partition": [desc]}))
        seconds[self.ingest.name] += time.process_time() - started
        chunks = []
        for chunk in records.to_batches(max_chunksize=self.batch_size):
            table = pa.Table.from_batches([chunk], schema=records.schema)
            for stage in self.stages:
                started = time.process_time()
                table = stage(table)
                seconds[stage.name] += time.process_time() - started
            chunks.append(table)
        assert self.schema is not None
        table = pa.concat_tables(chunks) if chunks else self.schema.empty_table()
        write_parquet_atomically(self.out_root, records_file(index), table)
        by_source = Counter(table.column("source").to_pylist())
        commit_unit(self.out_root, records_done(index), [records_file(index)], rows=table.num_rows,
                    sources=dict(sorted(by_source.items())), stage_seconds=dict(sorted(seconds.items())))  # fmt: skip
        return {"partition": index, "rows": table.num_rows}


def write_shard_unit(
    rows: Callable[[], pa.Table], bucket: str, index: int, out_root: str, schema: pa.Schema,
    score_columns: list[str], cfg: PipelineConfig,
) -> ShardInfo | None:
    """Phase 3's unit: the tar of one (bucket, shard) group and the manifest rows of its samples, in
    `shard_unit(...).parquet`; `rows()` reads the group, only when the unit is not committed yet. Returns
    the tar's info, None when no sample of the group made it into a tar."""
    unit = shard_unit(bucket, index)
    rows_file, done = f"{unit}.parquet", f"{unit}{DONE}"
    if (committed := finished_unit(out_root, done)) is not None:
        return ShardInfo(**committed["shard"]) if committed.get("shard") else None
    started = time.process_time()
    render = None if bucket == TEXT_BUCKET else BucketRenderer(cfg.bucketing, cfg.decode)
    written, info = write_shard(rows().to_pylist(), out_root, bucket, index, render, score_columns)
    write_parquet_atomically(out_root, rows_file, rec.to_table(written, schema))
    files = [rows_file] + ([info.shard] if info is not None else [])
    commit_unit(out_root, done, files, shard=vars(info) if info is not None else None,
                stage_seconds={SHARD_STAGE: time.process_time() - started})  # fmt: skip
    return info


def committed_stage_seconds(out_root: str) -> dict[str, float]:
    """CPU seconds per stage (the worker process's, its model threads included), summed over the units."""
    fs, _ = fsspec.core.url_to_fs(out_root)
    total: Counter[str] = Counter()
    for path in fs.glob(posixpath.join(out_root, WORK_DIR, "**", f"*{DONE}")):
        with fs.open(path, "r") as f:
            total.update(json.load(f).get("stage_seconds", {}))
    return {k: round(v, 3) for k, v in sorted(total.items())}
