"""Fixtures for the inspection and report tests: a demo-like run folder built without Ray, and headless Chromium.

`demo_like_run` runs the real ingest, decode, bucketing and shard-writer stages in-process on the generated
demo corpus, and stands in for the Ray-only parts with simple, visible rules: scores derived from the
sample_id, drops by the `filters:` thresholds the run's config.yaml declares, exact duplicates grouped by
sha256 (highest source priority survives), one re-captioned sample. It also writes a training run and a
calibration folder, so every section of the report has something to show.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from PIL import Image, ImageDraw

from curation import schema as rec
from curation.config import PipelineConfig, dump_config, parse_config
from curation.demo_corpus import generate
from curation.provenance import write_json
from manifests.writer import ManifestWriter
from stages.analyze import AnalyzeStage
from stages.bucket_stage import BucketRenderer, BucketStage
from stages.dedup_apply import ApplyDedupStage
from stages.ingest import IngestStage
from stages.shards import write_shard
from stages.sources import plan_partitions

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
SCORES = {"quality.sharpness": pa.float64(), "safety.nsfw": pa.float64(), "clip.sim": pa.float64()}
FILTERS = {"image": {"sharpness": {"min_sharpness": 30.0}}, "safety": {"nsfw": {"max_score": 0.8}}}
STAGES = ["ingest", "decode", "safety_scores", "image_quality", "dedup", "bucket", "shard"]


# ---- headless Chromium ------------------------------------------------------------------------------------


@dataclass
class Browser:
    binary: str

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state leaks between runs
            return subprocess.run(
                [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )

    def dump_dom(self, page: Path) -> str:
        """The DOM after the page's load event (and so after its status script ran)."""
        return self._run("--dump-dom", page.resolve().as_uri()).stdout

    def screenshot(self, page: Path, png: Path, size: tuple[int, int] = (1400, 3000)) -> None:
        self._run(f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", page.resolve().as_uri())


@pytest.fixture(scope="session")
def browser() -> Browser:
    """Headless Chromium; installed with apt-get (Debian's `chromium`) when missing. A failed install fails
    the tests that need it, with apt's own message."""
    if not Path(CHROMIUM).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as e:
                pytest.fail(f"cannot install chromium: {' '.join(cmd)}: {e}")
            if done.returncode != 0:
                pytest.fail(
                    f"cannot install chromium: {' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}"
                )
    return Browser(shutil.which("chromium") or CHROMIUM)


# ---- a demo-like run ------------------------------------------------------------------------------------


def _score(sample_id: str, lo: float, hi: float, salt: int) -> float:
    """A stable pseudo-random score in [lo, hi) from the sample_id."""
    return lo + (hi - lo) * (int(sample_id[salt : salt + 6], 16) / 16**6)


def _add_scores(row: dict[str, Any]) -> None:
    if row["status"] != rec.KEPT or row.get("width") is None:
        return
    row["quality.sharpness"] = _score(row["sample_id"], 0, 400, 0)
    row["safety.nsfw"] = _score(row["sample_id"], 0, 1, 6)
    row["clip.sim"] = _score(row["sample_id"], 0.1, 0.4, 12)
    if row["safety.nsfw"] > FILTERS["safety"]["nsfw"]["max_score"]:
        rec.drop(row, "safety_scores", "image_nsfw", row["safety.nsfw"])
    elif row["quality.sharpness"] < FILTERS["image"]["sharpness"]["min_sharpness"]:
        rec.drop(row, "image_quality", "image_blurry", row["quality.sharpness"])


def _mark_exact_duplicates(rows: list[dict[str, Any]]) -> None:
    """Kept rows with the same bytes form a cluster; the highest source priority survives (the dedup rule)."""
    by_hash: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["status"] == rec.KEPT and r.get("sha256"):
            by_hash.setdefault(r["sha256"], []).append(r)
    for members in by_hash.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: (-r["source_priority"], r["sample_id"]))
        survivor = members[0]["sample_id"]
        for r in members:
            r["dup_cluster"] = survivor
            if r["sample_id"] != survivor:
                r["dup_reason"], r["dup_of"], r["dup_distance"] = "dup_exact", survivor, 0.0
                ApplyDedupStage().apply(r)


def _recaption(rows: list[dict[str, Any]]) -> None:
    r = next(r for r in rows if r["status"] == rec.KEPT and r.get("caption"))
    r["caption"] = f"A detailed photograph: {r['caption_original']}, soft evening light."
    r["caption_candidates"] = json.dumps(
        [{"caption": r["caption"], "clip.sim": 0.34}, {"caption": "a picture", "clip.sim": 0.12}]
    )


def _write_training(out: Path) -> None:
    (out / "train" / "samples").mkdir(parents=True)
    lines = [
        json.dumps(
            {"step": s, "loss": 2.0 / (1 + s / 40), "loss/flow": 1.5 / (1 + s / 30), "lr": 1e-4 * min(1, s / 50)}
        )
        for s in range(0, 400, 10)
    ]
    (out / "train" / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 400, "lo')  # a run mid-write
    for step in (100, 200):
        grid = Image.new("RGB", (512, 256), (235, 238, 245))
        draw = ImageDraw.Draw(grid)
        for i in range(4):
            draw.ellipse((20 + 125 * i, 60, 110 + 125 * i, 150 + step // 10), fill=(50 * i, 120, 200 - 40 * i))
        grid.save(out / "train" / "samples" / f"step_{step:06d}.png")


def _write_calibration(folder: Path) -> None:
    folder.mkdir()
    (folder / "quality.sharpness.json").write_text(
        json.dumps(
            {
                "column": "quality.sharpness",
                "bins": [0, 50, 100, 150, 200, 250, 300, 350, 400],
                "counts": [6, 9, 14, 20, 17, 11, 6, 3],
                "threshold": {"min": 30, "max": None},
                "keep_table": [
                    {"threshold": 20, "kept": 82},
                    {"threshold": 30, "kept": 80},
                    {"threshold": 50, "kept": 80},
                ],
            }
        )
    )
    (folder / "calibration.json").write_text(json.dumps({"rows": 86, "columns": {}}))  # another tool's summary


RUN_JSON = {"version": "0.1.0", "git_commit": "0123abc", "status": "finished", "started": 1.7e9,
            "finished": 1.7e9 + 12.5, "elapsed_s": 12.5, "stages": STAGES,
            "stage_seconds": {"analyze": 8.0, "identify": 1.5, "publish": 3.0}}  # fmt: skip


def _analyze(rows: list[dict[str, Any]], cfg: PipelineConfig) -> None:
    """Phase 1 and 2 of the pipeline: decode, scores and their filters, dedup decisions, re-captioning."""
    analyze = AnalyzeStage(cfg.decode)
    for r in rows:
        if r["status"] == rec.KEPT:
            analyze.apply(r)
        _add_scores(r)
    _mark_exact_duplicates(rows)
    _recaption(rows)


def _publish(rows: list[dict[str, Any]], cfg: PipelineConfig, schema: pa.Schema, out: Path) -> None:
    """Phase 3: buckets, one shard per bucket, the manifest, buckets.json and run.json."""
    bucket = BucketStage(cfg.bucketing)
    for r in rows:
        if r["status"] == rec.KEPT:
            bucket.apply(r)
    out.mkdir()
    renderer = BucketRenderer(cfg.bucketing, cfg.decode)
    kept = [r for r in rows if r["status"] == rec.KEPT]
    buckets: dict[str, dict[str, Any]] = {}
    for name in sorted({r["bucket"] for r in kept}):
        _, info = write_shard([r for r in kept if r["bucket"] == name], str(out), name, 0, renderer, list(SCORES))
        if info is not None:
            buckets[name] = {"samples": info.samples, "shards": [info.shard]}
    manifest = rec.manifest_schema(schema)
    writer = ManifestWriter(str(out), manifest, rows_per_part=40)
    writer.add(rec.to_table(sorted(rows, key=lambda r: r["sample_id"]), schema).select(manifest.names))
    writer.close()
    (out / "config.yaml").write_text(dump_config(cfg) + yaml.safe_dump({"filters": FILTERS}))
    write_json(str(out), "buckets.json", {"buckets": buckets})
    write_json(str(out), "run.json", RUN_JSON)


def build_demo_like_run(root: Path) -> Path:
    data = generate(root / "corpus", n_images=12, seed=1)
    out = root / "out"
    data.update(output=str(out), bucketing={"tiers": [256, 512]})  # small buckets: quick to render
    cfg = parse_config(data)
    schema = rec.record_schema({**SCORES, **ApplyDedupStage.output_columns, **BucketStage.output_columns,
                                "caption_candidates": pa.string()})  # fmt: skip
    ingest = IngestStage(cfg.sources)  # row-level calls: no schema needed until the manifest is written
    rows = [r for p in plan_partitions(cfg.sources) for r in ingest.read_partition(p)]
    _analyze(rows, cfg)
    _publish(rows, cfg, schema, out)
    _write_training(out)
    _write_calibration(root / "calibration")
    return out


@pytest.fixture(scope="session")
def demo_like_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_like_run(tmp_path_factory.mktemp("demo_like"))
