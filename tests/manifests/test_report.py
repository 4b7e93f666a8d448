"""The HTML report: its pure parts, thumbnails from shards and sources, and the whole page in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from curation.config import SourceConfig
from curation.demo_corpus import jpeg, synthetic_photo
from manifests.report import build_report, report_command, write_report
from manifests.report_calibration import load_calibration, parse_calibration
from manifests.report_html import Thumb
from manifests.report_scores import dropped_by, histogram_edges, score_block, score_columns
from manifests.report_sections import funnel_steps, stage_order
from manifests.report_svg import Marker, histogram_svg
from manifests.report_thresholds import Threshold, parse_threshold, run_thresholds
from manifests.report_thumbnails import Thumbnailer
from manifests.report_training import chart_groups, metric_series, parse_metrics

COUNT = re.compile(r'data-count="([^"]+)">([\d,]+)<')


def manifest_counts(out: Path) -> tuple[dict[str, int], dict[str, int]]:
    """What the page must show, from the manifest with pandas (independently of the report code): the counts,
    and the drops per stage that the funnel steps down by."""
    df = pd.read_parquet(out / "manifest")
    kept, dropped = df[df.status == "kept"], df[df.status == "dropped"]
    counts = {"inputs": len(df), "kept": len(kept), "dropped": len(dropped)}
    for source, g in df.groupby("source"):
        counts |= {
            f"source:{source}:in": len(g),
            f"source:{source}:kept": int((g.status == "kept").sum()),
            f"source:{source}:dropped": int((g.status == "dropped").sum()),
        }
    for (stage, reason), n in dropped.groupby(["drop_stage", "drop_reason"]).size().items():
        counts[f"reason:{stage}/{reason}"] = int(n)
    for bucket, n in kept.groupby("bucket").size().items():
        counts[f"bucket:{bucket}"] = int(n)
    changed = (df.caption != df.caption_original) & df.caption.notna() & df.caption_original.notna()
    if "caption_candidates" in df:
        changed |= df.caption_candidates.notna()
    if changed.any():
        counts["captions:changed"] = int(changed.sum())
    return counts, dropped.groupby("drop_stage").size().to_dict()


def page_counts(html: str) -> dict[str, int]:
    """Every number the page tagged with data-count, in page order."""
    return {k: int(v.replace(",", "")) for k, v in COUNT.findall(html)}


def check_funnel(shown: dict[str, int], per_stage: dict[str, int]) -> None:
    steps = [(k.split(":", 1)[1], v) for k, v in shown.items() if k.startswith("funnel:")]
    (first, inputs), (last, kept) = steps[0], steps[-1]
    assert (first, last) == ("inputs", "kept") and {s for s, _ in steps[1:-1]} == set(per_stage)
    left = inputs
    for stage, n in steps[1:-1]:
        left -= per_stage[stage]
        assert n == left, stage
    assert left == kept


def check_page_in_browser(browser, out: Path) -> str:
    """Render OUT/report.html, check it loaded cleanly and shows the manifest's numbers; screenshot it."""
    page = Path(write_report(str(out)))
    html = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html) and "url(http" not in html, (
        "the page must not fetch anything"
    )
    dom = browser.dump_dom(page)
    status = re.search(r'<span id="report-status"([^>]*)>([^<]*)<', dom)
    assert status and status.group(2).startswith("ok"), status and status.group(2)
    attrs = dict(re.findall(r'data-(images|broken|errors)="([^"]*)"', status.group(1)))
    assert attrs == {"images": str(html.count("<img ")), "broken": "0", "errors": ""}
    shown = page_counts(dom)
    expected, per_stage = manifest_counts(out)
    assert {k: v for k, v in shown.items() if not k.startswith("funnel:")} == expected
    check_funnel(shown, per_stage)
    png = out / "report.png"
    browser.screenshot(page, png)
    with Image.open(png) as im:
        assert im.size == (1400, 3000) and np.asarray(im.convert("L")).std() > 10
    return dom


@pytest.mark.slow
def test_the_report_of_a_demo_like_run_loads_in_chromium_with_every_image_and_the_manifest_counts(
    browser, demo_like_run
):
    dom = check_page_in_browser(browser, demo_like_run)
    assert int(re.search(r'data-images="(\d+)"', dom).group(1)) > 30
    for section in (
        "funnel",
        "sources",
        "reasons",
        "scores",
        "duplicates",
        "captions",
        "buckets",
        "timing",
        "training",
    ):
        assert f'id="{section}"' in dom
    assert "survivor" in dom and "min 30" in dom and "max 0.8" in dom


@pytest.mark.slow
def test_the_report_of_a_real_pipeline_run(browser, ray_session, tmp_path: Path):
    from curation.config import parse_config
    from curation.demo_corpus import generate
    from curation.pipeline import Pipeline

    data = generate(tmp_path / "corpus", n_images=12, seed=1)
    data["output"] = str(tmp_path / "out")
    Pipeline(parse_config(data), log=lambda s: None).run()
    check_page_in_browser(browser, tmp_path / "out")


# ---- thumbnails -------------------------------------------------------------------------------------------


def _manifest_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "manifest").to_pylist()


def test_thumbnails_come_from_the_shards_and_from_every_kind_of_source(demo_like_run: Path):
    config = yaml.safe_load((demo_like_run / "config.yaml").read_text())
    thumbs = Thumbnailer.for_run(str(demo_like_run), config)
    rows = _manifest_rows(demo_like_run)
    kept = next(r for r in rows if r["status"] == "kept")
    assert thumbs.locate(kept)["image_path"] == str(demo_like_run / kept["shard"])
    for source in ("web", "laion", "old"):  # folder, table, tar
        row = next(
            r for r in rows if r["source"] == source and r["drop_reason"] in ("image_nsfw", "image_blurry", "dup_exact")
        )
        thumb = thumbs(row)
        assert thumb.data_uri and thumb.data_uri.startswith("data:image/jpeg;base64,"), (source, thumb.reason)
        assert max(thumb.width, thumb.height) == 128
    broken = next(r for r in rows if r["drop_reason"] == "not_an_image")
    assert thumbs(broken) == Thumb(reason="cannot show: not_an_image")
    unsharded = {**kept, "shard": None}
    assert thumbs({**unsharded, "sample_id": "a", "source": "gone"}).reason == "source not in config.yaml"
    outside = {**unsharded, "sample_id": "b", "source": "web", "source_key": "../../etc/passwd"}
    assert thumbs(outside).reason == "key outside the source folder"


def test_table_rows_by_key_column_with_inline_bytes_paths_and_urls(tmp_path: Path):
    import random

    photo = jpeg(synthetic_photo(random.Random(0), (320, 240)))
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(photo)
    pq.write_table(pa.table({"id": ["x"], "image": [photo]}), tmp_path / "t.parquet")
    pq.write_table(
        pa.table({"id": ["p", "u"], "image": ["img/a.jpg", "https://example.org/a.jpg"]}), tmp_path / "u.parquet"
    )
    src = SourceConfig(name="t", path=str(tmp_path / "*.parquet"), image_column="image", key_column="id")
    thumbs = Thumbnailer(str(tmp_path / "out"), {"t": src})
    row = lambda key: {"sample_id": key, "source": "t", "source_key": key, "status": "dropped"}  # noqa: E731
    assert thumbs(row("x")).data_uri  # inline bytes
    assert thumbs(row("p")).data_uri  # a path relative to the table
    assert thumbs(row("u")).reason == "remote image (not fetched)"
    assert thumbs(row("missing")).reason == "row key not found in the table"


# ---- pure parts -------------------------------------------------------------------------------------------


def test_thresholds_come_from_the_filters_section_and_given_bounds_override_them():
    config = {"filters": {"image": {"sharpness": {"min_sharpness": 40}}, "caption": {"length": {"min_chars": 3}}}}
    bounds, notes = run_thresholds(config, {"clip.sim": (0.2, None), "safety.nsfw": (None, 0.3)})
    assert notes == []
    assert bounds["quality.sharpness"] == Threshold(40, None, ("image_blurry",))
    assert bounds["caption.length"] == Threshold(3, 1000, ("caption_too_short", "caption_too_long"))
    assert bounds["clip.sim"] == Threshold(0.2, None)
    assert (bounds["safety.nsfw"].min, bounds["safety.nsfw"].max, bounds["safety.nsfw"].reasons) == (
        None,
        0.3,
        ("image_nsfw",),
    )
    assert run_thresholds({"filters": {"image": {"sharpness": {"min_sharpness": -1}}}})[1][0].startswith(
        "config.yaml's filters:"
    )
    assert run_thresholds(None) == ({}, [])


def test_parse_threshold():
    assert parse_threshold("quality.sharpness=40:") == ("quality.sharpness", (40.0, None))
    assert parse_threshold("clip.sim=0.2:0.9") == ("clip.sim", (0.2, 0.9))
    for bad in ("clip.sim", "clip.sim=0.2", "clip.sim=:", "clip.sim=a:b"):
        with pytest.raises(ValueError):
            parse_threshold(bad)


def _scored_table() -> pa.Table:
    return pa.table(
        {
            "sample_id": [f"s{i}" for i in range(6)],
            "source": ["web"] * 6,
            "source_key": [f"k{i}" for i in range(6)],
            "status": ["dropped", "dropped", "kept", "kept", "dropped", "kept"],
            "drop_reason": ["image_blurry", "image_nsfw", None, None, "image_blurry", None],
            "quality.sharpness": [10.0, 5.0, 31.0, 200.0, 29.0, None],
        }
    )


def test_galleries_show_what_a_threshold_dropped_and_what_it_barely_kept():
    table = _scored_table()
    values = table["quality.sharpness"].to_numpy(zero_copy_only=False).astype(float)
    by_reason = Threshold(30, None, ("image_blurry",))
    assert dropped_by(table, values, by_reason).tolist() == [True, False, False, False, True, False]
    assert dropped_by(table, values, Threshold(30, None)).tolist() == [True, True, False, False, True, False]
    html = score_block(table, "quality.sharpness", by_reason, lambda r: Thumb(reason=f"thumb {r['sample_id']}"))
    dropped_part, kept_part = html.split("barely kept")
    assert dropped_part.index("thumb s4") < dropped_part.index("thumb s0") and "thumb s1" not in dropped_part
    assert kept_part.index("thumb s2") < kept_part.index("thumb s3")
    assert "3 outside the threshold (image_blurry)" in html
    hashes = table.append_column("dedup.phash", pa.array([1] * 6, pa.int64()))
    assert score_columns(hashes) == ["quality.sharpness"]


def test_histogram_bins_reach_a_nearby_threshold_and_mark_a_far_one_at_the_edge():
    edges = histogram_edges(np.array([0.2, 0.4]), Threshold(None, 0.5))
    assert edges[0] == 0.2 and edges[-1] == 0.5
    far = histogram_edges(np.array([20.0, 60.0]), Threshold(5, 1000))  # a far cap would squash the bars
    assert far[0] == 5 and far[-1] == 60
    markers = [Marker(1.5, "max 1.5"), Marker(9, "max 9")]
    svg = histogram_svg([0, 1, 2], [("kept", [3, 0]), ("dropped", [1, 2])], markers)
    assert svg.count("<rect") == 3 and svg.count('class="marker"') == 1 and "max 1.5" in svg and "max 9 →" in svg


def test_the_funnel_follows_the_declared_stage_order_and_ends_at_kept():
    summary = {
        "inputs": 10,
        "kept": 4,
        "run": None,
        "dropped_by_reason": [
            {"drop_stage": "dedup", "drop_reason": "dup_exact", "count": 3},
            {"drop_stage": "decode", "drop_reason": "truncated", "count": 1},
            {"drop_stage": "image_quality", "drop_reason": "image_blurry", "count": 2},
        ],
    }
    assert funnel_steps(summary) == [("decode", 9, 1), ("image_quality", 7, 2), ("dedup", 4, 3)]
    assert stage_order({"a": 1, "b": 5, "shard": 1, "ingest": 1}) == ["ingest", "b", "a", "shard"]
    assert stage_order({"a": 1, "b": 5}, declared=["a", "b"]) == ["a", "b"]


def test_calibration_files_parse_and_other_files_are_named(demo_like_run: Path):
    histograms, notes = load_calibration(str(demo_like_run.parent / "calibration"))
    assert [h.column for h in histograms] == ["quality.sharpness"]
    assert [m.label for m in histograms[0].markers] == ["min 30"]
    assert notes == ["skipped calibration.json: not a histogram (needs column, bins and counts)"]
    with pytest.raises(ValueError, match="one more than counts"):
        parse_calibration({"column": "c", "bins": [0, 1], "counts": [1, 2]})
    assert [
        m.value
        for m in parse_calibration({"column": "c", "bins": [0, 1], "counts": [1], "threshold": [None, 0.5]}).markers
    ] == [0.5]


def test_training_metrics_skip_a_partial_line_and_losses_share_a_chart():
    rows, bad = parse_metrics(
        ['{"step": 0, "loss": 2, "lr": 0.1}', '{"step": 10, "loss": 1, "loss/flow": 0.5}', '{"step": 2']
    )
    assert bad == 1
    series = metric_series(rows)
    assert series["loss"] == [(0.0, 2.0), (10.0, 1.0)]
    assert [(title, sorted(s)) for title, s in chart_groups(series)] == [
        ("loss", ["loss", "loss/flow"]),
        ("lr", ["lr"]),
    ]


def test_a_run_in_progress_reports_its_records_with_notes(tmp_path: Path, demo_like_run: Path):
    out = tmp_path / "running"
    (out / "_work").mkdir(parents=True)
    shutil.copytree(demo_like_run / "manifest", out / "_work" / "records")
    shutil.copy(demo_like_run / "config.yaml", out / "config.yaml")
    (out / "run.json").write_text(json.dumps({"status": "running"}))
    html = build_report(str(out))
    assert "no manifest yet" in html and "run status &#x27;running&#x27;" in html
    assert page_counts(html)["inputs"] == len(pd.read_parquet(demo_like_run / "manifest"))
    assert "cannot read: FileNotFoundError" in html  # kept rows point at shards this folder does not have


def test_report_command_exit_codes(tmp_path: Path):
    assert report_command(str(tmp_path), thresholds=["clip.sim"])[0] == 2
    code, message = report_command(str(tmp_path / "nothing"))
    assert code == 1 and "holds no run" in message
