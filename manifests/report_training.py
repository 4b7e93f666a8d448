"""A training run's curves and sample grids in the report.

Convention, for any trainer that writes into the run folder:
- OUT/train/metrics.jsonl: one JSON object per logged step, `{"step": 100, "loss": 0.41, "loss/flow": 0.3,
  "lr": 1e-4, ...}`; every numeric key but `step` is a curve over `step` (the line number when it is
  missing). Keys with "loss" in their name share one chart; every other key gets its own. A line that does
  not parse (the last one of a run being written) is skipped.
- OUT/train/samples/*.png (or .jpg): sample grids, named so that they sort by step (`step_000100.png`);
  the latest MAX_GRIDS are shown, newest first.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Callable

import fsspec

from manifests.report_html import Html, Section, Thumb, join, note_list, tag, void
from manifests.report_svg import line_chart_svg

METRICS_FILE = "train/metrics.jsonl"
SAMPLES_DIR = "train/samples"
SAMPLE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_GRIDS = 4


@dataclass
class TrainingRun:
    metrics: list[dict[str, Any]] = field(default_factory=list)
    sample_paths: list[str] = field(default_factory=list)  # sorted by name, oldest first
    notes: list[str] = field(default_factory=list)


def parse_metrics(lines: list[str]) -> tuple[list[dict[str, Any]], int]:
    """The logged objects, and how many lines were skipped as unreadable."""
    rows, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    return rows, bad


def load_training(out: str) -> TrainingRun | None:
    """The run's training outputs, or None when it has neither metrics nor sample grids."""
    fs, _ = fsspec.core.url_to_fs(out)
    metrics_path = posixpath.join(out, METRICS_FILE)
    samples = sorted(p for p in fs.glob(posixpath.join(out, SAMPLES_DIR, "*")) if p.lower().endswith(SAMPLE_EXTENSIONS))
    if not fs.exists(metrics_path) and not samples:
        return None
    run = TrainingRun(sample_paths=samples)
    if fs.exists(metrics_path):
        with fs.open(metrics_path, "r") as f:
            run.metrics, bad = parse_metrics(f.read().splitlines())
        if bad:
            run.notes.append(f"skipped {bad} unreadable line(s) of {METRICS_FILE}")
    return run


def metric_series(metrics: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = {}
    for i, row in enumerate(metrics):
        step = row.get("step", i)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
                series.setdefault(key, []).append((float(step), float(value)))
    return series


def chart_groups(
    series: dict[str, list[tuple[float, float]]],
) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """Loss curves together (they share a scale and a story); every other metric on its own."""
    losses = {k: v for k, v in series.items() if "loss" in k.lower()}
    groups = [("loss", losses)] if losses else []
    return groups + [(k, {k: v}) for k, v in series.items() if k not in losses]


def training_section(run: TrainingRun, embed: Callable[[str], Thumb]) -> Section:
    """`embed(path)` turns a sample grid into a (downscaled) image for the page."""
    parts: list[Html] = [note_list(run.notes)]
    groups = chart_groups(metric_series(run.metrics))
    if groups:
        steps = len(run.metrics)
        parts.append(tag("p", f"{steps:,} logged steps from {METRICS_FILE}.", cls="muted"))
        charts = [tag("div", join([tag("h3", title), line_chart_svg(s, title=title)])) for title, s in groups]
        parts.append(tag("div", join(charts), cls="grid2"))
    grids = []
    for path in reversed(run.sample_paths[-MAX_GRIDS:]):
        thumb = embed(path)
        name = posixpath.basename(path)
        picture = void("img", src=thumb.data_uri, alt=name) if thumb.data_uri else tag("div", thumb.reason, cls="noimg")
        grids.append(tag("figure", join([picture, tag("figcaption", name)])))
    if grids:
        parts.append(tag("h3", f"sample grids (latest {len(grids)} of {len(run.sample_paths)})"))
        parts.append(tag("div", join(grids), cls="grid2 samples"))
    return Section("training", "Training", join(parts))
