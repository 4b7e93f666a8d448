"""Calibration output shown in the report: per filter, a histogram of its score with the threshold marked.

A calibration folder holds one JSON file per score column:

    {"column": "quality.sharpness",
     "bins": [0, 10, 20, 30, 40],              # bin edges, ascending, len(counts) + 1
     "counts": [5, 12, 40, 77],                # samples per bin
     "threshold": {"min": 30, "max": null},    # or [min, max], or one number, or null
     "keep_table": [{"threshold": 20, "kept": 117}, {"threshold": 30, "kept": 77}]}  # optional rows, any keys

Files of another shape in the folder (the filters' calibration.json summary, for one) are listed as skipped.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import fsspec

from manifests.report_html import Html, Section, fmt_number, join, note_list, table, tag
from manifests.report_svg import Marker, histogram_svg


@dataclass(frozen=True)
class CalibrationHistogram:
    column: str
    edges: list[float]
    counts: list[int]
    markers: list[Marker] = field(default_factory=list)
    keep_table: list[dict[str, Any]] = field(default_factory=list)


def _markers(threshold: Any) -> list[Marker]:
    if threshold is None:
        return []
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        return [Marker(float(threshold), f"threshold {fmt_number(threshold)}")]
    if isinstance(threshold, list) and len(threshold) == 2:
        threshold = {"min": threshold[0], "max": threshold[1]}
    if not isinstance(threshold, dict) or set(threshold) - {"min", "max"}:
        raise ValueError("threshold must be a number, [min, max] or {min, max}")
    return [Marker(float(v), f"{k} {fmt_number(v)}") for k, v in threshold.items() if v is not None]


def parse_calibration(data: Any) -> CalibrationHistogram:
    """One calibration file's content; ValueError says what is wrong with it."""
    if not isinstance(data, dict) or not {"column", "bins", "counts"} <= set(data):
        raise ValueError("not a histogram (needs column, bins and counts)")
    edges, counts = data["bins"], data["counts"]
    if not all(isinstance(v, (int, float)) for v in edges) or sorted(edges) != edges or len(edges) != len(counts) + 1:
        raise ValueError("bins must be ascending numbers, one more than counts")
    if not all(isinstance(c, int) and c >= 0 for c in counts):
        raise ValueError("counts must be non-negative integers")
    keep_table = data.get("keep_table") or []
    if not isinstance(keep_table, list) or not all(isinstance(r, dict) for r in keep_table):
        raise ValueError("keep_table must be a list of objects")
    return CalibrationHistogram(
        str(data["column"]), [float(e) for e in edges], counts, _markers(data.get("threshold")), keep_table
    )


def load_calibration(folder: str) -> tuple[list[CalibrationHistogram], list[str]]:
    """Every histogram file in `folder`, by column; and a note per file that could not be used."""
    fs, _ = fsspec.core.url_to_fs(folder)
    found, notes = [], []
    for path in sorted(fs.glob(posixpath.join(folder, "*.json"))):
        name = posixpath.basename(path)
        try:
            with fs.open(path, "r") as f:
                found.append(parse_calibration(json.load(f)))
        except (OSError, ValueError) as e:
            notes.append(f"skipped {name}: {e}")
    if not found and not notes:
        notes.append(f"no calibration files (*.json) in {folder}")
    return sorted(found, key=lambda h: h.column), notes


def _keep_table(rows: list[dict[str, Any]]) -> Html:
    headers = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[fmt_number(v) if isinstance(v, float) else v for v in (r.get(h) for h in headers)] for r in rows]
    return table(headers, cells, numeric=range(len(headers)))


def calibration_section(histograms: list[CalibrationHistogram], notes: list[str]) -> Section:
    blocks = []
    for h in histograms:
        chart = histogram_svg(h.edges, [("neutral", h.counts)], h.markers, title=f"calibration: {h.column}")
        parts = [tag("h3", f"{h.column} — {sum(h.counts):,} samples"), chart]
        if h.keep_table:
            parts.append(_keep_table(h.keep_table))
        blocks.append(tag("div", join(parts)))
    intro = tag(
        "p",
        "Histograms from a calibration run (a sample of the data scored before the full run), "
        "with the thresholds it proposes.",
        cls="muted",
    )
    return Section("calibration", "Calibration", join([intro, note_list(notes), tag("div", join(blocks), cls="grid2")]))
