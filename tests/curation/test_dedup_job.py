"""The identify job on Ray, end to end: real photos copied across sources, alpha-only logos, text-only
near-duplicates and boilerplate alt-text, through the real analysis pass and signature stages."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from curation import schema as rec
from curation.config import DecodeConfig
from curation.dedup_job import DedupResult, dataset_pieces, file_pieces, identify
from stages.analyze import AnalyzeStage
from stages.dedup.caption_stage import CaptionMinHashStage
from stages.dedup.config import DedupConfig
from stages.dedup.signatures import SignatureAnnotator
from stages.dedup.survivor import DECISION_SCHEMA

pytestmark = pytest.mark.slow

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "dedup"
LAPTOP, RED_LAPTOP = PHOTOS / "train2017_000000084284.jpg", PHOTOS / "val2017_000000553664.jpg"
SIGNS, STOP_SIGN = PHOTOS / "train2017_000000231460.jpg", PHOTOS / "train2017_000000525891.jpg"
BOILERPLATE = "Click to enlarge"
CFG = DedupConfig(caption_cap=3)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def logo(shape: str) -> bytes:
    alpha = Image.new("L", (128, 128), 0)
    draw = ImageDraw.Draw(alpha)
    (draw.ellipse if shape == "disc" else draw.rectangle)((16, 40, 112, 88), fill=255)
    return encode(Image.merge("RGBA", (*Image.new("RGB", (128, 128), 0).split(), alpha)), "PNG")


def noise(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels).resize((256, 192), Image.BILINEAR), "PNG")


def samples() -> list[tuple[str, str, int, bytes | None, str]]:
    """(source, key, priority, image bytes or None for text-only, caption)."""
    laptop = Image.open(LAPTOP).convert("RGB")
    signs = Image.open(SIGNS).convert("RGB")
    lw, lh = laptop.size
    sw, sh = signs.size
    laptop_png = encode(laptop, "PNG")
    text = "Vintage poster of the 1936 Olympic games in Berlin, printed in Germany, with the stadium and flags"
    rows = [
        ("curated", "laptop", 3, laptop_png, "A computer desk topped with an open laptop computer."),
        ("curated", "signs", 3, encode(signs.crop((sw // 100, sh // 100, sw - sw // 100, sh - sh // 100)), "JPEG", quality=90), "Street signs on a pole"),
        ("mirror", "laptop_half", 3, encode(laptop.resize((lw // 2, lh // 2), Image.LANCZOS), "JPEG", quality=90), "laptop on desk"),
        ("web", "laptop_same_bytes", 1, laptop_png, "IMG_0042.png"),
        ("web", "laptop_png_again", 1, encode(laptop, "PNG", compress_level=1), "desk"),
        ("web", "laptop_jpeg", 1, LAPTOP.read_bytes(), "a laptop"),
        ("web", "laptop_q60", 1, encode(laptop, "JPEG", quality=60), "a laptop"),
        ("web", "laptop_bright", 1, encode(ImageEnhance.Brightness(laptop).enhance(1.1), "JPEG", quality=90), "bright"),
        ("web", "laptop_gray", 1, encode(laptop.convert("L"), "JPEG", quality=90), BOILERPLATE + "!"),
        ("web", "signs", 1, SIGNS.read_bytes(), "signs"),
        ("web", "signs_half", 1, encode(signs.resize((sw // 2, sh // 2), Image.LANCZOS), "JPEG", quality=85), "signs"),
        ("web", "red_laptop", 1, RED_LAPTOP.read_bytes(), "a red laptop"),
        ("web", "stop_sign", 1, STOP_SIGN.read_bytes(), "a stop sign"),
        ("logos", "disc", 1, logo("disc"), "disc logo"),
        ("logos", "bar", 1, logo("bar"), "bar logo"),
        *[("web", f"noise{i}", 1, noise(i), BOILERPLATE) for i in range(5)],
        ("books", "t1", 1, None, text),
        ("books", "t2", 2, None, text.upper() + " !!"),
        ("books", "t3", 1, None, text + " (reprint)"),
        ("books", "t4", 1, None, "A completely different sentence about the history of printing presses"),
    ]
    return rows


@pytest.fixture(scope="module")
def records() -> pa.Table:
    analyze = AnalyzeStage(DecodeConfig(), [SignatureAnnotator()])
    minhash = CaptionMinHashStage(CFG)
    schema = rec.record_schema({**analyze.extra_columns, **minhash.output_columns})
    analyze.bind(schema), minhash.bind(schema)
    rows = [rec.new_record(s, k, p, image_bytes=data, caption=c) for s, k, p, data, c in samples()]
    # A sample an earlier stage dropped takes no part, though its bytes equal a kept one's.
    rows.append(rec.new_record("web", "dropped_copy", 9, image_bytes=LAPTOP.read_bytes(), caption="x", status=rec.DROPPED))
    table = minhash(analyze(rec.to_table(rows, schema)))
    assert table.filter(pa.compute.equal(table["status"], rec.KEPT)).num_rows == len(rows) - 1
    return table


def run(ray_session, table: pa.Table, blocks: int, cfg: DedupConfig) -> DedupResult:
    return identify(dataset_pieces(ray_session.data.from_arrow(table).repartition(blocks)), cfg)


@pytest.fixture(scope="module")
def result(ray_session, records: pa.Table) -> DedupResult:
    return run(ray_session, records, 3, CFG)


@pytest.fixture(scope="module")
def decisions(result: DedupResult, records: pa.Table) -> dict[str, dict]:
    names = {r["sample_id"]: f"{r['source']}/{r['source_key']}" for r in records.to_pylist()}
    return {names[r["sample_id"]]: r for r in result.decisions.take_all()}


def test_schema_is_the_apply_contract(result: DedupResult) -> None:
    assert result.decisions.schema().base_schema == DECISION_SCHEMA


def test_copies_across_sources_point_at_the_best_copy(decisions: dict[str, dict]) -> None:
    survivor = decisions["curated/laptop"]
    assert survivor["drop_reason"] is None
    expected = {
        "web/laptop_same_bytes": "dup_exact",
        "web/laptop_png_again": "dup_pixels",
        "mirror/laptop_half": "dup_phash",  # same priority, smaller: loses on size
        # The survivor is the PNG of this JPEG's pixels; at 500x375 the analysis pass decodes it in full.
        "web/laptop_jpeg": "dup_pixels",
        "web/laptop_q60": "dup_phash",
        "web/laptop_bright": "dup_phash",
        "web/laptop_gray": "dup_phash",
    }
    for name, reason in expected.items():
        assert decisions[name]["drop_reason"] == reason, name
        assert decisions[name]["duplicate_of"] == survivor["sample_id"] == decisions[name]["dup_cluster"]
        assert 0 <= decisions[name]["dup_distance"] <= CFG.phash_radius
    inherited = json.loads(survivor["captions_inherited"])
    assert {c["caption"] for c in inherited} >= {"laptop on desk", "IMG_0042.png", "a laptop", BOILERPLATE + "!"}
    assert {c["source"] for c in inherited} == {"mirror", "web"}


def test_priority_beats_size(decisions: dict[str, dict]) -> None:
    # The curated crop is smaller than the web original, but its source ranks higher.
    assert decisions["curated/signs"]["drop_reason"] is None
    assert decisions["web/signs"]["duplicate_of"] == decisions["curated/signs"]["sample_id"]
    assert decisions["web/signs"]["drop_reason"] == "dup_phash"
    assert decisions["web/signs_half"]["drop_reason"] == "dup_phash"


def test_look_alikes_logos_and_dropped_rows_stay_out(decisions: dict[str, dict]) -> None:
    for name in ("web/red_laptop", "web/stop_sign", "logos/disc", "logos/bar", "web/dropped_copy"):
        assert name not in decisions, name


def test_text_only_near_duplicates_are_dropped(decisions: dict[str, dict]) -> None:
    assert decisions["books/t2"]["drop_reason"] is None  # the higher priority copy
    for name in ("books/t1", "books/t3"):
        assert decisions[name]["drop_reason"] == "dup_text"
        assert decisions[name]["duplicate_of"] == decisions["books/t2"]["sample_id"]
        assert decisions[name]["dup_distance"] >= CFG.threshold
    assert "books/t4" not in decisions


def test_boilerplate_caption_counts_distinct_images_and_is_capped(decisions: dict[str, dict]) -> None:
    noise = {f"web/noise{i}": decisions[f"web/noise{i}"] for i in range(5)}
    # The gray laptop shares the caption but is an image copy already: it does not count.
    assert {r["caption_cluster_size"] for r in noise.values()} == {5}
    assert decisions["web/laptop_gray"]["caption_cluster_size"] is None
    overflow = sorted(n for n, r in noise.items() if r["drop_reason"] == "dup_caption_overflow")
    assert len(overflow) == 5 - CFG.caption_cap
    kept_ids = sorted(r["sample_id"] for r in noise.values() if r["drop_reason"] is None)
    assert all(noise[n]["duplicate_of"] == kept_ids[0] for n in overflow)  # same priority and size: by id


def test_stats_count_what_was_decided(result: DedupResult) -> None:
    stats = result.stats
    assert stats.decisions["dup_phash"] == 6 and stats.decisions["dup_pixels"] == 2 and stats.decisions["dup_exact"] == 1
    assert stats.decisions["dup_caption_overflow"] == 2 and stats.decisions["dup_text"] == 2
    assert stats.pathological_buckets == 0


def test_same_output_whatever_the_blocks_and_partitions(ray_session, records: pa.Table, result: DedupResult) -> None:
    expected = result.decisions.to_pandas()
    single = run(ray_session, records, 1, CFG)
    assert single.stats.partitions == 1
    pd.testing.assert_frame_equal(single.decisions.to_pandas(), expected)
    many = run(ray_session, records, 7, CFG.model_copy(update={"rows_per_partition": 40}))
    assert many.stats.partitions > 5
    pd.testing.assert_frame_equal(many.decisions.to_pandas(), expected)


def test_records_files_read_in_the_tasks_give_the_same_output(
    ray_session, records: pa.Table, result: DedupResult, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    files = []
    for i, start in enumerate(range(0, records.num_rows, 5)):
        pq.write_table(records.slice(start, 5), tmp_path / f"part-{i}.parquet")
        files.append((str(tmp_path / f"part-{i}.parquet"), min(5, records.num_rows - start)))
    pieces = file_pieces(files, rows_per_piece=12)
    assert [url for piece in pieces for url in piece] == [url for url, _ in files]
    assert len(pieces) > 1 and pieces[0] == [files[0][0], files[1][0]]  # 10 rows; a third file would make 15
    out = identify(pieces, CFG)
    pd.testing.assert_frame_equal(out.decisions.to_pandas(), result.decisions.to_pandas())


def test_no_kept_rows_gives_an_empty_decision_table(ray_session, records: pa.Table) -> None:
    dropped = records.set_column(records.schema.get_field_index("status"), "status", pa.array([rec.DROPPED] * records.num_rows))
    out = run(ray_session, dropped, 2, CFG)
    assert out.stats.band_rows == 0
    assert out.decisions.count() == 0 and out.decisions.schema().base_schema == DECISION_SCHEMA


def test_record_passes_map_within_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from curation import dedup_job

    monkeypatch.setattr(dedup_job, "MAP_SLICE_ROWS", 4)
    files = pa.concat_tables([pa.table({"x": np.arange(3)}), pa.table({"x": np.arange(3, 8)})])  # two files
    seen: list[int] = []

    def fn(part: pa.Table) -> pa.Table:
        seen.append(part["x"].num_chunks)
        return part.append_column("y", pa.array(part["x"].to_numpy() * 2))

    out = dedup_job._in_slices(files, fn)
    assert seen == [1, 1, 1]  # 3 | 4 + 1: a slice never joins two files' chunks
    assert out["y"].to_pylist() == [2 * x for x in range(8)]
    assert dedup_job._in_slices(files.slice(0, 0), fn).num_rows == 0


def test_unverified_edges_go_to_their_clusters_partition() -> None:
    from curation.dedup_job import _edges_by_partition
    from stages.dedup.components import EdgeList
    from stages.dedup.identify import partition_of

    nodes, labels = np.array([1, 2, 5, 6, 9]), np.array([1, 1, 5, 5, 1])
    edges = EdgeList(np.array([1, 5, 2]), np.array([2, 6, 9]), np.zeros(3, np.int8))
    split = _edges_by_partition(edges, nodes, labels, 3)
    assert len(split) == 3 and sum(len(a) for a, _ in split) == 3
    for q, (a, b) in enumerate(split):
        assert all(partition_of(np.array([labels[list(nodes).index(x)]]), 3)[0] == q for x in a)
    assert [len(a) for a, _ in _edges_by_partition(EdgeList(nodes[:0], nodes[:0], np.zeros(0, np.int8)), nodes, labels, 2)] == [0, 0]
    with pytest.raises(ValueError, match="not among the clustered nodes"):
        _edges_by_partition(EdgeList(np.array([3]), np.array([10]), np.zeros(1, np.int8)), nodes, labels, 2)
