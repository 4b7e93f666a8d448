"""The curation DAG on Ray Data, in three phases.

1. analyze (streaming, per partition): ingest -> decode + annotate (signatures, quality, safety scores)
   -> filters; every record, kept or dropped, is written to `_work/records/`.
2. identify (global): the dedup job reads the records' signatures and writes who is a copy of whom.
3. publish: apply the dedup decisions, plan buckets, write one tar per (bucket, shard) group, then the
   manifest, sorted by sample_id, with one row per input sample.

Rows hold paths and offsets, not pixels, so image bytes cross the object store never: the analysis pass
and the shard writer each read them from the source.
"""

from __future__ import annotations

import json
import posixpath
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from annotators.clip import ClipStage
from annotators.clip_config import check_clip
from annotators.embeddings import EMBEDDINGS_DIR
from curation import schema as rec
from curation.config import PipelineConfig
from curation.provenance import environment, git_commit, package_version, write_config, write_json
from curation.ray_adapter import map_stage, ray_session
from curation.registry import analysis_annotators, filter_stages, signature_stages
from curation.stage import Stage
from filters.assemble import clip_head_filter
from manifests.inspect import format_summary, inspect_run
from manifests.progress import Progress, parquet_rows, resolve_mode
from manifests.writer import write_manifest
from stages.analyze import AnalyzeStage
from stages.bucket_stage import BucketRenderer, BucketStage
from stages.dedup_apply import DECISION_RENAMES, ApplyDedupStage
from stages.ingest import IngestStage
from stages.shards import SHARD_STAGE, TEXT_BUCKET, ShardInfo, shard_index, shards_for_bucket, write_shard
from stages.sources import plan_partitions

WORK_DIR = "_work"
RECORDS_DIR = f"{WORK_DIR}/records"
DECISIONS_DIR = f"{WORK_DIR}/dedup"
SHARD_INDEX = "shards/index.parquet"
BUCKETS_JSON = "buckets.json"
SHARD_COLUMN = "_shard_index"
# A rough JPEG/WebP size per pixel, only to size shards before they are written.
ENCODED_BYTES_PER_PIXEL = 0.35


class OutputExistsError(RuntimeError):
    pass


@dataclass
class RunResult:
    out: str
    summary: dict[str, Any]
    shards: list[ShardInfo] = field(default_factory=list)
    elapsed_s: float = 0.0


def build_analysis_stages(cfg: PipelineConfig) -> list[Stage]:
    """Stages of phase 1 after ingest: decode and annotate, decide, then caption signatures."""
    return [AnalyzeStage(cfg.decode, analysis_annotators(cfg)), *filter_stages(cfg), *signature_stages(cfg)]


class Pipeline:
    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.out = cfg.output
        self.log = log
        self.ingest = IngestStage(cfg.sources)
        self.analysis = build_analysis_stages(cfg)
        self.apply_dedup = ApplyDedupStage()
        # CLIP runs after dedup so no duplicate is embedded; its head thresholds right after it.
        self.clip_stages: list[Stage] = []
        if cfg.clip.enabled:
            heads = cfg.filters.safety.clip_heads
            self.clip_stages.append(ClipStage(cfg.clip, cfg.decode, self.path(EMBEDDINGS_DIR), heads=heads))
            if head_filter := clip_head_filter(cfg.filters):
                self.clip_stages.append(head_filter)
        self.bucket = BucketStage(cfg.bucketing)
        stages: list[Stage] = [self.ingest, *self.analysis, self.apply_dedup, *self.clip_stages, self.bucket]
        extra: dict[str, pa.DataType] = {}
        for s in stages:
            cols = getattr(s, "extra_columns", None) or s.output_columns
            extra.update(cols)
        self.schema = rec.record_schema(extra)
        for s in stages:
            s.bind(self.schema)
        # Namespaced numbers go into each sample's .json; signatures and provenance stay in the manifest.
        self.score_columns = sorted(c for c, t in extra.items() if "." in c and pa.types.is_floating(t))

    # -- driver-side layout -------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return posixpath.join(self.out, *parts)

    def prepare_output(self, overwrite: bool) -> None:
        fs, _ = fsspec.core.url_to_fs(self.out)
        if fs.exists(self.path("manifest")) or fs.exists(self.path("shards")):
            if not overwrite:
                raise OutputExistsError(f"{self.out} already holds a run; pass --overwrite to replace it")
            for d in ("manifest", "shards", EMBEDDINGS_DIR, WORK_DIR, BUCKETS_JSON, "run.json"):
                if fs.exists(self.path(d)):
                    fs.rm(self.path(d), recursive=True)
        fs.makedirs(self.out, exist_ok=True)
        if fs.exists(self.path(WORK_DIR)):
            fs.rm(self.path(WORK_DIR), recursive=True)

    # -- the run ------------------------------------------------------------------------------------
    def run(self, overwrite: bool = False, keep_work: bool = False) -> RunResult:
        partitions = plan_partitions(self.cfg.sources)  # a missing source fails here, before any work
        check_clip(self.cfg.clip)  # and so do missing model weights, unless the stage is optional
        self.prepare_output(overwrite)
        write_config(self.out, self.cfg)
        started = time.time()
        stages = [self.ingest.name, *[s.name for s in self.analysis], self.apply_dedup.name,
                  *[s.name for s in self.clip_stages], self.bucket.name, SHARD_STAGE]  # fmt: skip
        info = {"version": package_version(), "git_commit": git_commit(), "environment": environment(),
                "started": started, "status": "running", "partitions": len(partitions), "stages": stages,
                "clip": check_clip(self.cfg.clip).summary()}  # fmt: skip
        write_json(self.out, "run.json", info)
        progress = Progress(resolve_mode(self.cfg.ray.progress), log=self.log, total_stages=3)
        try:
            with ray_session(self.cfg.ray):
                with progress.stage("analyze", count_rows=lambda: parquet_rows(self.path(RECORDS_DIR))):
                    self.analyze(partitions)
                with progress.stage("identify"):
                    has_decisions = self.identify()
                with progress.stage("publish") as st:
                    shards = self.publish(has_decisions)
                    st.rows = sum(i.samples for i in shards)
        except BaseException as e:
            info.update(status="failed", error=f"{type(e).__name__}: {e}"[:2000], stage_seconds=progress.stage_seconds)
            write_json(self.out, "run.json", info)
            raise
        if not keep_work:
            fs, _ = fsspec.core.url_to_fs(self.out)
            fs.rm(self.path(WORK_DIR), recursive=True)
        summary = inspect_run(self.out)
        elapsed = time.time() - started
        info.update(status="finished", finished=time.time(), elapsed_s=elapsed, stage_seconds=progress.stage_seconds,
                    counts={k: summary[k] for k in ("inputs", "kept", "dropped")})  # fmt: skip
        write_json(self.out, "run.json", info)
        summary["run"] = info
        self.log(format_summary(summary))
        return RunResult(self.out, summary, shards, elapsed)

    def analyze(self, partitions) -> None:
        items = [{"partition": json.dumps(p.to_dict())} for p in partitions]
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        ds = map_stage(ds, self.ingest, batch_size=1)
        for stage in self.analysis:
            ds = map_stage(ds, stage, self.cfg.ray.batch_size)
        ds.write_parquet(self.path(RECORDS_DIR))

    def records(self) -> ray.data.Dataset:
        return ray.data.read_parquet(self.path(RECORDS_DIR), schema=self.schema)

    def identify(self) -> bool:
        d = self.cfg.dedup
        if not (d.exact or d.pixels or d.phash or d.text or d.captions):
            return False
        from curation.dedup_job import identify_duplicates

        decisions = identify_duplicates(self.records(), self.cfg.dedup)
        decisions.write_parquet(self.path(DECISIONS_DIR))
        fs, _ = fsspec.core.url_to_fs(self.out)
        return bool(fs.glob(self.path(DECISIONS_DIR, "*.parquet")))

    def publish(self, has_decisions: bool) -> list[ShardInfo]:
        ds = self.records()
        if has_decisions:
            decisions = ray.data.read_parquet(self.path(DECISIONS_DIR)).rename_columns(DECISION_RENAMES)
            # The records carry empty dedup columns (one schema for every phase); the decisions fill them.
            ds = ds.drop_columns(list(self.apply_dedup.output_columns)).join(
                decisions, join_type="left_outer", on=("sample_id",), num_partitions=self.shuffle_partitions()
            )
        ds = map_stage(ds, self.apply_dedup, self.cfg.ray.batch_size)
        for stage in self.clip_stages:
            ds = map_stage(ds, stage, self.cfg.clip.batch_size, actors=self.cfg.clip.actors)
        ds = map_stage(ds, self.bucket, self.cfg.ray.batch_size).materialize()
        kept = ds.filter(expr=f"status == '{rec.KEPT}'")
        dropped = ds.filter(expr=f"status != '{rec.KEPT}'")
        written, infos = self.write_shards(kept)
        manifest_schema = rec.manifest_schema(self.schema)
        rows = (dropped.union(written) if written is not None else dropped).select_columns(manifest_schema.names)
        rows = rows.sort("sample_id")
        write_manifest(self.out, manifest_schema, rows.iter_batches(batch_format="pyarrow", batch_size=8192))
        self.write_indexes(infos)
        return infos

    def shuffle_partitions(self) -> int:
        return max(2, int(ray.cluster_resources().get("CPU", 2)))

    def write_shards(self, kept: ray.data.Dataset) -> tuple[ray.data.Dataset | None, list[ShardInfo]]:
        """Write every kept sample into its bucket's shards; None when nothing was kept."""
        counts = {r["bucket"]: r["count()"] for r in kept.groupby("bucket").count().take_all()}
        if not counts:
            return None, []
        n_shards = {b: shards_for_bucket(n, _bytes_per_sample(b), self.cfg.shards.max_samples, self.cfg.shards.max_bytes)
                    for b, n in counts.items()}  # fmt: skip
        assigned = kept.map_batches(_assign_shards, fn_args=(n_shards,), batch_format="pyarrow")
        groups = assigned.groupby(["bucket", SHARD_COLUMN], num_partitions=self.shuffle_partitions())
        written = groups.map_groups(_write_shard_group, batch_format="pyarrow",
                                    fn_args=(self.out, self.schema, self.score_columns, self.cfg)).materialize()  # fmt: skip
        return written, self.read_shard_infos()

    def read_shard_infos(self) -> list[ShardInfo]:
        fs, _ = fsspec.core.url_to_fs(self.out)
        infos = []
        for f in sorted(fs.glob(self.path("shards", "*", "*.info.json"))):
            with fs.open(f, "r") as fh:
                infos.append(ShardInfo(**json.load(fh)))
        return infos

    def write_indexes(self, infos: list[ShardInfo]) -> None:
        fs, _ = fsspec.core.url_to_fs(self.out)
        table = pa.Table.from_pylist([vars(i) for i in infos], schema=pa.schema(
            [("shard", pa.string()), ("bucket", pa.string()), ("samples", pa.int64()), ("bytes", pa.int64()),
             ("sha256", pa.string())]))  # fmt: skip
        fs.makedirs(self.path("shards"), exist_ok=True)
        with fs.open(self.path(SHARD_INDEX), "wb") as f:
            pq.write_table(table, f)
        buckets: dict[str, dict[str, Any]] = {}
        for i in infos:
            b = buckets.setdefault(i.bucket, {"samples": 0, "bytes": 0, "shards": []})
            if i.bucket != TEXT_BUCKET:
                w, h = (int(x) for x in i.bucket.split("x"))
                b.update(width=w, height=h)
            b["samples"] += i.samples
            b["bytes"] += i.bytes
            b["shards"].append(i.shard)
        write_json(self.out, BUCKETS_JSON, {"buckets": dict(sorted(buckets.items()))})


def _bytes_per_sample(bucket: str) -> float:
    if bucket == TEXT_BUCKET:
        return 512.0
    w, h = (int(x) for x in bucket.split("x"))
    return w * h * ENCODED_BYTES_PER_PIXEL


def _assign_shards(batch: pa.Table, n_shards: dict[str, int]) -> pa.Table:
    ids = batch.column("sample_id").to_pylist()
    buckets = batch.column("bucket").to_pylist()
    idx = [shard_index(i, n_shards[b]) for i, b in zip(ids, buckets)]
    return batch.append_column(SHARD_COLUMN, pa.array(idx, pa.int32()))


def _write_shard_group(
    group: pa.Table, out: str, schema: pa.Schema, score_columns: list[str], cfg: PipelineConfig
) -> pa.Table:
    """Write the tar of one (bucket, shard) group and its info record; return the group's rows."""
    rows = group.drop_columns([SHARD_COLUMN]).to_pylist()
    bucket = rows[0]["bucket"]
    index = group.column(SHARD_COLUMN)[0].as_py()
    render = None if bucket == TEXT_BUCKET else BucketRenderer(cfg.bucketing, cfg.decode)
    rows, info = write_shard(rows, out, bucket, index, render, score_columns)
    if info is not None:
        write_json(out, info.shard.replace(".tar", ".info.json"), vars(info))
    return rec.to_table(rows, schema)
