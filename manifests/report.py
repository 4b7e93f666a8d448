"""`curation report OUT -o report.html`: one self-contained HTML page about a run.

Sections: overview, funnel from inputs to kept, sources, drop reasons (with an example each), per score column
a histogram with its threshold and galleries of what it dropped and barely kept, duplicate clusters, captions
before and after, buckets, time per stage, and when present a calibration folder's histograms and a training
run's curves and sample grids. Works on partial runs as `curation inspect` does. Thresholds: see
`manifests.report_thresholds`; calibration files: `manifests.report_calibration`; training outputs:
`manifests.report_training`.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from typing import Any, Mapping, Sequence

import fsspec
import yaml

from curation.config import DecodeConfig
from curation.stage import Drop
from manifests.inspect import load_run, summarize_run
from manifests.report_calibration import calibration_section, load_calibration
from manifests.report_galleries import captions_section, duplicates_section
from manifests.report_html import Section, Thumb, page
from manifests.report_scores import scores_section
from manifests.report_sections import (
    buckets_section,
    funnel_section,
    overview_section,
    reason_examples,
    reasons_section,  # fmt: skip
    sources_section,
    timing_section,
)
from manifests.report_thresholds import Bounds, parse_threshold, run_thresholds
from manifests.report_thumbnails import THUMB_PX, Thumbnailer, to_data_uri
from manifests.report_training import load_training, training_section

GRID_PX = 768  # training sample grids: big enough to judge, small enough to embed


def read_run_file(out: str, name: str, notes: list[str]) -> Any:
    """A run's config.yaml or buckets.json, parsed; None (and a note if it is broken) when unusable."""
    fs, _ = fsspec.core.url_to_fs(out)
    path = posixpath.join(out, name)
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "r") as f:
            return yaml.safe_load(f) if name.endswith(".yaml") else json.load(f)
    except (OSError, ValueError, yaml.YAMLError) as e:
        notes.append(f"{name} is unreadable ({type(e).__name__})")
        return None


def embed_grid(path: str) -> Thumb:
    try:
        with fsspec.open(path, "rb") as f:
            return to_data_uri(f.read(), DecodeConfig(), GRID_PX)
    except Drop as d:
        return Thumb(reason=f"cannot show: {d.reason}")
    except OSError as e:
        return Thumb(reason=f"cannot read: {type(e).__name__}")


def build_report(out: str, thresholds: Mapping[str, Bounds] | None = None, calibration_dir: str | None = None,
                 thumb_px: int = THUMB_PX) -> str:  # fmt: skip
    """The report page of the run in `out`. FileNotFoundError when `out` holds no run at all."""
    data = load_run(out)
    summary = summarize_run(data)
    config = read_run_file(out, "config.yaml", summary["notes"])
    buckets = read_run_file(out, "buckets.json", summary["notes"])
    bounds, threshold_notes = run_thresholds(config, thresholds)
    thumbs = Thumbnailer.for_run(out, config, thumb_px)
    sections: list[Section | None] = [
        overview_section(summary),
        funnel_section(summary),
        sources_section(summary),
        reasons_section(summary, reason_examples(data.table), thumbs),
        scores_section(data.table, bounds, thumbs, threshold_notes),
        duplicates_section(data.table, thumbs),
        captions_section(data.table, thumbs),
        buckets_section(summary, buckets),
        timing_section(data.run),
    ]
    if calibration_dir:
        sections.append(calibration_section(*load_calibration(calibration_dir)))
    training = load_training(out)
    if training is not None:
        sections.append(training_section(training, embed_grid))
    name = "/".join(out.rstrip("/").split("/")[-2:])  # run folders are often named out/ or curated/: add the parent
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return page(f"Curation report: {name}", f"{out} · generated {generated}", [s for s in sections if s is not None])


def write_report(out: str, path: str | None = None, **options: Any) -> str:
    """Write the report (default OUT/report.html); returns where."""
    target = path or posixpath.join(out, "report.html")
    text = build_report(out, **options)
    with fsspec.open(target, "w", encoding="utf-8") as f:
        f.write(text)
    return target


def report_command(out: str, output: str | None = None, thresholds: Sequence[str] = (), calibration: str | None = None,
                   thumb_px: int = THUMB_PX) -> tuple[int, str]:  # fmt: skip
    """What `curation report` prints and its exit code (2: a bad --threshold, 1: no run in OUT)."""
    try:
        given = dict(parse_threshold(t) for t in thresholds)
    except ValueError as e:
        return 2, f"curation report: {e}"
    try:
        target = write_report(out, output, thresholds=given, calibration_dir=calibration, thumb_px=thumb_px)
    except FileNotFoundError as e:
        return 1, f"curation report: {e}"
    return 0, f"wrote {target}"
