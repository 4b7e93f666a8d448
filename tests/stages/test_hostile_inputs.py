"""Hostile inputs end as a recorded reason, never a crash, in bounded time and memory per sample.

Images go through the analysis pass (decode and every default annotator); captions, file names and tar
member names through ingest. `tests/hostile_files.py` builds the inputs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_files import (
    MB,
    RLO,
    encode,
    gif_many_frames,
    jpeg_broken_exif,
    jpeg_giant_exif,
    jpeg_many_empty_segments,
    jpeg_many_exif_segments,
    noise,
    png_declaring,
    png_huge_text,
    png_itxt_bomb,
    png_many_text_chunks,
    png_zlib_bomb,
    png_ztxt_bomb,
    tar_bytes,
)
from PIL import Image

from curation import schema as rec
from curation.cli import main as curation_main
from curation.config import DecodeConfig, SourceConfig, parse_config
from curation.registry import analysis_annotators
from stages.analyze import AnalyzeStage
from stages.bucket_stage import BucketRenderer, BucketStage
from stages.bucketing import BucketingConfig
from stages.decode import decode
from stages.ingest import MAX_CAPTION_BYTES, IngestStage, clean_text
from stages.sources import SourceError, plan_partitions

# Per sample, past whatever the process held before it: the bytes, Pillow's copies, pixels, annotators.
MAX_SAMPLE_MB = 300
# Time past the decode limit for reading the file and the annotators, which run on the small analysis image.
SLACK_S = 5.0

# name -> (bytes, the analysis pass's verdict: None when kept, else the drop reason)
HOSTILE_IMAGES = {
    "empty.jpg": (lambda: b"", "empty_file"),
    "not_an_image.jpg": (lambda: b"<html>hello</html>", "not_an_image"),
    "truncated.jpg": (lambda: encode(noise((300, 300)), "JPEG")[:3000], "truncated"),
    "one_pixel.png": (lambda: encode(Image.new("RGB", (1, 1), (200, 0, 0)), "PNG"), None),
    "line_100000x1.png": (lambda: encode(noise((100_000, 1)), "PNG"), None),
    "bomb_header.png": (lambda: png_declaring(100_000, 100_000), "too_many_pixels"),
    "bomb_zlib.png": (png_zlib_bomb, "too_many_pixels"),
    "huge_text_chunk.png": (png_huge_text, "metadata_too_large"),
    "ztxt_bomb.png": (png_ztxt_bomb, "metadata_too_large"),
    "itxt_bomb.png": (png_itxt_bomb, "metadata_too_large"),
    "many_text_chunks.png": (png_many_text_chunks, "metadata_too_large"),
    "many_exif_segments.jpg": (jpeg_many_exif_segments, "metadata_too_large"),
    "many_empty_segments.jpg": (jpeg_many_empty_segments, "metadata_too_large"),
    "giant_exif.jpg": (jpeg_giant_exif, None),
    "broken_exif.jpg": (jpeg_broken_exif, None),
}


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, (build, _) in HOSTILE_IMAGES.items():
        (folder / name).write_bytes(build())
    return folder


@pytest.fixture(scope="module")
def analysis() -> AnalyzeStage:
    """The analysis pass as a default run configures it: decode plus every default annotator."""
    cfg = parse_config({"sources": [{"name": "t", "path": "."}], "output": "out"})
    stage = AnalyzeStage(cfg.decode, analysis_annotators(cfg))
    stage.bind(rec.record_schema(stage.extra_columns)).ensure_setup()
    return stage


def analyze_one(stage: AnalyzeStage, path: Path) -> dict:
    row = rec.new_record("t", path.name, 1, image_path=str(path))
    return stage(rec.to_table([row], stage.schema)).to_pylist()[0]


class PeakMemory:
    """Peak resident memory of this process since `reset`, through Linux's resettable high-water mark."""

    def reset(self) -> None:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.start_mb = self._status("VmRSS")

    def grown_mb(self) -> float:
        return self._status("VmHWM") - self.start_mb

    @staticmethod
    def _status(field: str) -> float:
        with open("/proc/self/status") as f:
            return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1)) / 1024


@pytest.fixture(scope="module")
def peak_memory() -> PeakMemory:
    meter = PeakMemory()
    try:
        meter.reset()
    except OSError:
        pytest.skip("this kernel cannot reset the peak resident memory (/proc/self/clear_refs)")
    return meter


def test_hostile_images_end_kept_or_with_their_reason(analysis: AnalyzeStage, hostile_dir: Path):
    for name, (_, expected) in HOSTILE_IMAGES.items():
        row = analyze_one(analysis, hostile_dir / name)
        assert row["drop_reason"] == expected, (name, row["drop_reason"], row["error"])
        if expected is None:
            assert row["width"] > 0 and row["height"] > 0 and row["sha256"]
        else:
            assert row["drop_stage"] == "decode"
    rows = {n: analyze_one(analysis, hostile_dir / n) for n in ("bomb_header.png", "line_100000x1.png", "giant_exif.jpg")}
    assert rows["bomb_header.png"]["error"].startswith("Image size (10000000000 pixels)")  # refused on the header
    assert (rows["line_100000x1.png"]["width"], rows["line_100000x1.png"]["height"]) == (100_000, 1)
    assert rows["giant_exif.jpg"]["orientation"] == 1


def every_hostile_file(hostile_dir: Path, bad_images_dir: Path) -> list[Path]:
    return sorted(hostile_dir.iterdir()) + sorted(p for p in bad_images_dir.iterdir() if p.suffix != ".md")


def test_every_hostile_file_is_bounded_in_time(analysis: AnalyzeStage, hostile_dir: Path, bad_images_dir: Path):
    seconds = {}
    for path in every_hostile_file(hostile_dir, bad_images_dir):
        start = time.perf_counter()
        row = analyze_one(analysis, path)
        seconds[path.name] = time.perf_counter() - start
        assert row["drop_reason"] != "internal_error", (path.name, row["error"])
    slowest = sorted(seconds.items(), key=lambda kv: -kv[1])[:5]
    assert all(s < analysis.cfg.timeout_s + SLACK_S for s in seconds.values()), slowest


def test_every_hostile_file_is_bounded_in_memory(
    analysis: AnalyzeStage, hostile_dir: Path, bad_images_dir: Path, peak_memory: PeakMemory
):
    grown = {}
    for path in every_hostile_file(hostile_dir, bad_images_dir):
        peak_memory.reset()
        analyze_one(analysis, path)
        grown[path.name] = peak_memory.grown_mb()
    worst = sorted(grown.items(), key=lambda kv: -kv[1])[:5]
    assert all(mb < MAX_SAMPLE_MB for mb in grown.values()), worst


def test_time_limit_covers_header_parsing():
    """Counting 200 000 GIF frames takes seconds before a single pixel is decoded."""
    data = gif_many_frames(200_000)
    start = time.perf_counter()
    with pytest.raises(Exception) as err:
        decode(data, 10**6, timeout_s=0.2)
    assert getattr(err.value, "reason", None) == "decode_timeout"
    assert time.perf_counter() - start < 0.2 + 1.0


def test_render_for_the_shard_is_time_limited_too():
    data = encode(Image.new("RGB", (4000, 4000), (90, 120, 30)), "PNG")
    row = rec.new_record("t", "big.png", 1, image_bytes=data, width=4000, height=4000, orientation=1)
    row.update(BucketStage(BucketingConfig()).process_row(row))
    with pytest.raises(Exception) as err:
        BucketRenderer(BucketingConfig(), DecodeConfig(timeout_s=0.01))(row)
    assert getattr(err.value, "reason", None) == "decode_timeout"


# ---- captions, file names, tar member names ------------------------------------------------------------


def ingest(sources: list[SourceConfig]) -> list[dict]:
    """Every row of every partition, checked to be storable in the record schema (Arrow strings are UTF-8)."""
    stage = IngestStage(sources).bind(rec.record_schema())
    rows = [r for p in plan_partitions(sources) for r in stage.read_partition(p)]
    rec.to_table(rows, stage.schema)
    assert len({r["sample_id"] for r in rows}) == len(rows)
    return rows


def test_clean_text_policy():
    assert clean_text(b"ok \xff\xfe bad\x00") == "ok \ufffd\ufffd bad"  # undecodable bytes: U+FFFD
    # Controls, bidi embeddings/overrides/isolates and BOMs go; tabs, line breaks and the RTL/LTR marks stay.
    assert clean_text(f"\ufeffphoto{RLO}gpj.exe\x07\x1b[31m \u2066x\u2069") == "photogpj.exe[31m x"
    assert clean_text("line\none\ttab \u200fמילה\u200d") == "line\none\ttab \u200fמילה\u200d"
    assert clean_text("lone \ud800 surrogate") == "lone \ufffd surrogate"
    assert clean_text("x" * MAX_CAPTION_BYTES) == "x" * MAX_CAPTION_BYTES
    with pytest.raises(Exception, match=f"{MAX_CAPTION_BYTES + 1} bytes"):
        clean_text("é" + "x" * (MAX_CAPTION_BYTES - 1))  # the limit counts UTF-8 bytes


def test_folder_captions_and_names(tmp_path: Path):
    jpg = encode(noise((32, 32)), "JPEG")
    files = {
        "bytes.jpg": jpg, "bytes.txt": b"a red \xff\xfe car\x00 on a road",
        "rlo.jpg": jpg, "rlo.txt": f"harmless {RLO}gpj.exe".encode(),
        "long.jpg": jpg, "long.txt": b"word " * (MB // 5),
        "escapes.jpg": jpg, "escapes.json": b'{"caption": "cat\\u0000 \\ud800 \\u202eon a mat"}',
        "deep.jpg": jpg, "deep.json": b"[" * 200_000,
        "bigjson.jpg": jpg, "bigjson.json": json.dumps({"caption": "ok", "exif": "x" * (2 * MB)}).encode(),
    }  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / b"bad\xff-name.jpg".decode("utf-8", "surrogateescape")).write_bytes(jpg)
    rows = {r["source_key"]: r for r in ingest([SourceConfig(name="web", path=str(tmp_path))])}
    assert rows["bytes.jpg"]["caption"] == "a red \ufffd\ufffd car on a road"
    assert rows["rlo.jpg"]["caption"] == "harmless gpj.exe" == rows["rlo.jpg"]["caption_original"]
    assert rows["escapes.jpg"]["caption"] == "cat \ufffd on a mat"
    assert rows["deep.jpg"]["status"] == rec.KEPT and rows["deep.jpg"]["caption"] is None
    for key, size in (("long.jpg", len(files["long.txt"])), ("bigjson.jpg", len(files["bigjson.json"]))):
        assert (rows[key]["drop_stage"], rows[key]["drop_reason"], rows[key]["drop_value"]) == ("ingest", "caption_too_long", size)
    assert rows["bad\\udcff-name.jpg"]["drop_reason"] == "bad_file_name"
    assert len(rows) == 7


def test_table_captions_and_keys(tmp_path: Path):
    jpg = encode(noise((32, 32)), "JPEG")
    table = pa.table({
        "id": ["a", "b", "c", "a", "d", "a"],
        "image": [jpg] * 6,
        "caption": [f"nice {RLO}view\x00", "x" * MB, None, "again", "fine caption", "third"],
        "raw": [None, None, b"bytes \xff\xfe caption", None, None, None],
    })  # fmt: skip
    pq.write_table(table, tmp_path / "t.parquet")
    src = SourceConfig(name="laion", path=str(tmp_path / "t.parquet"), key_column="id", caption_column=["caption", "raw"])
    rows = {r["source_key"]: r for r in ingest([src])}
    assert rows["a"]["caption"] == "nice view"
    assert (rows["b"]["drop_reason"], rows["b"]["drop_value"]) == ("caption_too_long", MB)
    assert rows["c"]["caption"] == "bytes \ufffd\ufffd caption"
    assert rows["a#dup1"]["drop_reason"] == rows["a#dup2"]["drop_reason"] == "duplicate_key"
    assert rows["d"]["status"] == rec.KEPT and len(rows) == 6


def test_tar_members_that_escape_collide_or_carry_hostile_captions(tmp_path: Path):
    jpg = encode(noise((32, 32)), "JPEG")
    (tmp_path / "000.tar").write_bytes(tar_bytes([
        ("ok.jpg", jpg), ("ok.txt", f"fine {RLO}caption".encode()),
        ("../escape.jpg", jpg), ("/etc/absolute.jpg", jpg),
        ("dup.jpg", jpg), ("dup.jpg", jpg), ("dup.jpg", jpg),
        ("long.jpg", jpg), ("long.txt", b"y" * MB),
        (b"bad\xffname.jpg".decode("utf-8", "surrogateescape"), jpg),
    ]))  # fmt: skip
    rows = {r["source_key"]: r for r in ingest([SourceConfig(name="old", path=str(tmp_path / "000.tar"))])}
    assert rows["000.tar/ok"]["caption"] == "fine caption"
    assert rows["000.tar/../escape"]["status"] == rows["000.tar//etc/absolute"]["status"] == rec.KEPT  # names only
    assert rows["000.tar/dup.jpg#dup1"]["drop_reason"] == rows["000.tar/dup.jpg#dup2"]["drop_reason"] == "tar_member_collision"
    assert (rows["000.tar/long"]["drop_reason"], rows["000.tar/long"]["drop_value"]) == ("caption_too_long", MB)
    assert rows["000.tar/bad\\udcffname"]["drop_reason"] == "bad_file_name"
    assert len(rows) == 8


def test_files_sharing_a_name_in_one_source_fail_before_work(tmp_path: Path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "000.tar").write_bytes(tar_bytes([("x.jpg", b"x")]))
    with pytest.raises(SourceError, match="same file name"):
        plan_partitions([SourceConfig(name="old", path=str(tmp_path / "*" / "000.tar"))])


def test_cli_run_names_a_missing_source_before_any_work(tmp_path: Path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(f"sources: [{{name: web, path: {tmp_path / 'nowhere'}}}]\noutput: {tmp_path / 'out'}\n")
    assert curation_main(["run", str(config), "--progress", "off"]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
