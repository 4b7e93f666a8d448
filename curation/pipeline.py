"""The curation DAG on Ray, in three phases (analyze with Ray Data maps, identify and publish as plain tasks).

1. analyze (streaming, per partition): ingest -> decode + annotate (signatures, quality, safety scores)
   -> filters; every record, kept or dropped, is written to `_work/records/`.
2. identify (global, `curation.dedup_job`): the dedup job reads the records files' signatures in plain Ray
   tasks and writes who is a copy of whom.
3. publish (`curation.publish`, plain Ray tasks over sample_id ranges): apply the dedup decisions, plan
   buckets, write one tar per (bucket, shard) group, then the manifest, sorted by sample_id, with one row
   per input sample.

Rows hold paths and offsets, not pixels, so image bytes cross the object store never: the analysis pass
and the shard writer each read them from the source.
"""

from __future__ import annotations

import json
import posixpath
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
from curation.errors import OutputExistsError
from curation.commit import commit_unit, finished_unit, remove_temporaries
from curation.config import dump_config
from curation.provenance import environment, git_commit, package_version, write_config, write_json
from curation.ray_adapter import map_stage, ray_session
from curation.registry import analysis_annotators, filter_stages, signature_stages
from curation.stage import Stage
from filters.assemble import clip_head_filter
from manifests.inspect import format_summary, inspect_run
from manifests.progress import Progress, parquet_rows, resolve_mode
from curation.publish import Plan, publish, record_ranges
from curation.units import (DONE, RECORDS_DIR, WORK_DIR, PartitionAnalysis, committed_stage_seconds, records_done,
                            records_file)  # fmt: skip
from stages.analyze import AnalyzeStage
from stages.bucket_stage import BucketStage
from stages.dedup_apply import ApplyDedupStage
from stages.ingest import IngestStage
from stages.shards import SHARD_STAGE, TEXT_BUCKET, ShardInfo
from stages.sources import Partition, plan_partitions

DECISIONS_DIR = f"{WORK_DIR}/dedup"
DECISIONS_DONE = f"{WORK_DIR}/dedup{DONE}"
SHARD_INDEX = "shards/index.parquet"
BUCKETS_JSON = "buckets.json"
RUN_JSON = "run.json"


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

    def prepare_output(self, overwrite: bool) -> bool:
        """Make the output folder ready; True when it holds an unfinished run of this config to resume."""
        fs, _ = fsspec.core.url_to_fs(self.out)
        state = self.previous_run(fs)
        if state == "finished" and not overwrite:
            raise OutputExistsError(f"{self.out} already holds a finished run; pass --overwrite to replace it")
        if state == "other" and not overwrite:
            raise OutputExistsError(
                f"{self.out} holds an unfinished run of a different config (see its config.yaml); "
                "pass --overwrite to discard it"
            )
        if state == "resume" and not overwrite:
            remove_temporaries(self.out)
            return True
        for d in ("manifest", "shards", EMBEDDINGS_DIR, WORK_DIR, BUCKETS_JSON, RUN_JSON):
            if fs.exists(self.path(d)):
                fs.rm(self.path(d), recursive=True)
        fs.makedirs(self.out, exist_ok=True)
        return False

    def previous_run(self, fs) -> str | None:
        """None (nothing there), 'finished', 'resume' (unfinished, same config) or 'other'."""
        if not (fs.exists(self.path(RUN_JSON)) or fs.exists(self.path("manifest")) or fs.exists(self.path("shards"))):
            return None
        try:
            with fs.open(self.path(RUN_JSON), "r") as f:
                status = json.load(f).get("status")
            with fs.open(self.path("config.yaml"), "r") as f:
                same_config = f.read() == dump_config(self.cfg)
        except (FileNotFoundError, ValueError):
            return "other"
        if status == "finished":
            return "finished"
        return "resume" if same_config else "other"

    # -- the run ------------------------------------------------------------------------------------
    def run(self, overwrite: bool = False, keep_work: bool = False) -> RunResult:
        partitions = plan_partitions(self.cfg.sources)  # a missing source fails here, before any work
        check_clip(self.cfg.clip)  # and so do missing model weights, unless the stage is optional
        resuming = self.prepare_output(overwrite)
        write_config(self.out, self.cfg)
        started = time.time()
        stages = [self.ingest.name, *[s.name for s in self.analysis], self.apply_dedup.name,
                  *[s.name for s in self.clip_stages], self.bucket.name, SHARD_STAGE]  # fmt: skip
        info = {"version": package_version(), "git_commit": git_commit(), "environment": environment(),
                "started": started, "status": "running", "partitions": len(partitions), "stages": stages,
                "resumed": resuming, "clip": check_clip(self.cfg.clip).summary()}  # fmt: skip
        write_json(self.out, RUN_JSON, info)
        progress = Progress(resolve_mode(self.cfg.ray.progress), log=self.log, total_stages=3)
        try:
            with ray_session(self.cfg.ray):
                with progress.stage("analyze", count_rows=lambda: parquet_rows(self.path(RECORDS_DIR))):
                    self.analyze(partitions)
                with progress.stage("identify"):
                    rows = self.committed_rows(partitions)
                    decision_files = self.identify(rows)
                with progress.stage("publish") as st:
                    shards = self.publish(rows, decision_files)
                    st.rows = sum(i.samples for i in shards)
        except BaseException as e:
            info.update(status="failed", error=f"{type(e).__name__}: {e}"[:2000], stage_seconds=progress.stage_seconds)
            write_json(self.out, RUN_JSON, info)
            raise
        info["stage_cpu_seconds"] = committed_stage_seconds(self.out)
        # A worker that died mid-write left its temporary behind; its task's retry wrote the unit again.
        remove_temporaries(self.out)
        if not keep_work:
            fs, _ = fsspec.core.url_to_fs(self.out)
            fs.rm(self.path(WORK_DIR), recursive=True)
        summary = inspect_run(self.out)
        elapsed = time.time() - started
        info.update(status="finished", finished=time.time(), elapsed_s=elapsed, stage_seconds=progress.stage_seconds,
                    counts={k: summary[k] for k in ("inputs", "kept", "dropped")})  # fmt: skip
        write_json(self.out, RUN_JSON, info)
        summary["run"] = info
        self.log(format_summary(summary))
        return RunResult(self.out, summary, shards, elapsed)

    def analyze(self, partitions: list[Partition]) -> None:
        """Run every partition whose records are not committed yet, one partition per task."""
        pending = [p for p in partitions if finished_unit(self.out, records_done(p.index)) is None]
        if len(pending) < len(partitions):
            self.log(f"resuming: {len(partitions) - len(pending)} of {len(partitions)} partitions already analysed")
        if not pending:
            return
        unit = PartitionAnalysis(self.ingest, self.analysis, self.out, self.cfg.ray.batch_size).bind(self.schema)
        items = [{"partition": json.dumps(p.to_dict())} for p in pending]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        map_stage(ds, unit, batch_size=1).materialize()

    def committed_rows(self, partitions: list[Partition]) -> list[tuple[int, int]]:
        """(partition index, rows) of every committed records file (each one's checksum verified)."""
        return [(p.index, finished_unit(self.out, records_done(p.index))["rows"]) for p in partitions]

    def identify(self, rows: list[tuple[int, int]]) -> list[str]:
        """The global dedup job, committed as one unit: redone whole unless its decisions are intact.
        Returns the decision files (relative to the output folder), sorted by sample_id."""
        d = self.cfg.dedup
        if not (d.exact or d.pixels or d.phash or d.text or d.captions):
            return []
        if (done := finished_unit(self.out, DECISIONS_DONE)) is not None:
            return sorted(done["files"])
        from curation.dedup_job import file_pieces, identify_duplicates, piece_rows

        fs, _ = fsspec.core.url_to_fs(self.out)
        if fs.exists(self.path(DECISIONS_DIR)):
            fs.rm(self.path(DECISIONS_DIR), recursive=True)
        files = [(self.path(records_file(index)), n) for index, n in rows]
        pieces = file_pieces(files, piece_rows(sum(n for _, n in files), d))
        decisions = identify_duplicates(pieces, d)
        decisions.write_parquet(self.path(DECISIONS_DIR))
        files = sorted(posixpath.relpath(f, fs._strip_protocol(self.out))
                       for f in fs.glob(self.path(DECISIONS_DIR, "*.parquet")))  # fmt: skip
        commit_unit(self.out, DECISIONS_DONE, files)
        return files

    def publish(self, rows: list[tuple[int, int]], decision_files: list[str]) -> list[ShardInfo]:
        plan = Plan(out=self.out, schema=self.schema, cfg=self.cfg,
                    ranges=record_ranges(sum(n for _, n in rows), self.cfg.ray.range_rows),
                    stages=[self.apply_dedup, *self.clip_stages, self.bucket], score_columns=self.score_columns,
                    decision_files=decision_files)  # fmt: skip
        infos = publish(plan, rows)
        self.write_indexes(infos)
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
