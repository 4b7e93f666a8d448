"""The report's score section: per score column a histogram (kept and dropped stacked) with its threshold
marked, and galleries of what the threshold dropped and what it barely kept, nearest the threshold first."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation.schema import KEPT
from manifests.report_html import Html, Section, Thumbs, fmt_number, gallery, join, legend, tag, tile, tone, verdict
from manifests.report_svg import Marker, histogram_svg
from manifests.report_thresholds import Threshold

BINS = 40
PER_GALLERY = 8


def score_columns(table: pa.Table) -> list[str]:
    """Namespaced float columns (`quality.sharpness`, `safety.nsfw`, ...) with at least one value. Scores are
    floats by convention; namespaced integers and strings (`dedup.phash`, `caption.lang`) are not scores."""
    names = []
    for f in table.schema:
        if "." in f.name and pa.types.is_floating(f.type) and table[f.name].null_count < table.num_rows:
            names.append(f.name)
    return names


def _values(table: pa.Table, column: str) -> np.ndarray:
    """The column as floats, NaN where there is no score."""
    return pc.cast(table[column], pa.float64()).to_numpy(zero_copy_only=False).astype(float)


def _kept_mask(table: pa.Table) -> np.ndarray:
    return pc.fill_null(pc.equal(table["status"], KEPT), False).to_numpy(zero_copy_only=False)


def _bounds(threshold: Threshold | None) -> list[tuple[str, float]]:
    if threshold is None:
        return []
    return [(name, v) for name, v in (("min", threshold.min), ("max", threshold.max)) if v is not None]


def histogram_edges(values: np.ndarray, threshold: Threshold | None, bins: int = BINS) -> np.ndarray:
    """Bins over the scores, widened to show a bound near them even when every score is on one side of it. A bound
    further than the scores' own spread (a 1000-character cap on 40-character captions) would squash the bars
    into a corner; the chart labels it at its edge instead."""
    lo, hi = float(values.min()), float(values.max())
    spread = hi - lo or abs(hi) or 1.0
    near = [v for _, v in _bounds(threshold) if lo - spread <= v <= hi + spread]
    lo, hi = min([lo, *near]), max([hi, *near])
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def outside_mask(values: np.ndarray, threshold: Threshold) -> np.ndarray:
    """Scored values the threshold would drop (NaN, no score, never is)."""
    return np.array([not np.isnan(v) and threshold.outside(v) for v in values], dtype=bool)


def dropped_by(table: pa.Table, values: np.ndarray, threshold: Threshold) -> np.ndarray:
    """Rows this threshold dropped: dropped with one of its reasons; or, for bounds given by hand (which have no
    reasons), dropped with a score outside them."""
    dropped = ~_kept_mask(table) & ~np.isnan(values)
    if threshold.reasons:
        reasons = pc.fill_null(pc.is_in(table["drop_reason"], pa.array(threshold.reasons)), False)
        return dropped & reasons.to_numpy(zero_copy_only=False)
    return dropped & outside_mask(values, threshold)


def _nearest(mask: np.ndarray, values: np.ndarray, threshold: Threshold) -> list[int]:
    return sorted(np.flatnonzero(mask).tolist(), key=lambda i: (threshold.distance(float(values[i])), i))[:PER_GALLERY]


def gallery_rows(table: pa.Table, values: np.ndarray, threshold: Threshold | None) -> list[tuple[str, list[int]]]:
    """(title, row indices) of the two galleries: either side of the threshold, or the two ends without one."""
    if not _bounds(threshold):
        order = np.argsort(values, kind="stable")  # NaN (no score) sorts last
        order = order[: int((~np.isnan(values)).sum())]
        return [("lowest scores (no threshold on this column)", order[:PER_GALLERY].tolist()),
                ("highest scores", order[::-1][:PER_GALLERY].tolist())]  # fmt: skip
    assert threshold is not None
    gone = dropped_by(table, values, threshold)
    close = _kept_mask(table) & ~np.isnan(values) & ~outside_mask(values, threshold)
    return [(f"dropped by it ({int(gone.sum()):,}), nearest the threshold first", _nearest(gone, values, threshold)),
            ("barely kept, nearest the threshold first", _nearest(close, values, threshold))]  # fmt: skip


def _tiles(table: pa.Table, rows: list[int], column: str, values: np.ndarray, thumbs: Thumbs) -> list[Html]:
    tiles = []
    for i, row in zip(rows, table.take(rows).to_pylist() if rows else [], strict=True):
        lines = [f"{column} = {fmt_number(values[i])}", f"{row['source']}/{row['source_key']}", verdict(row)]
        tiles.append(tile(thumbs(row), lines, tone(row)))
    return tiles


def describe(values: np.ndarray, threshold: Threshold | None) -> str:
    scored = values[~np.isnan(values)]
    text = (f"{len(scored):,} scored of {len(values):,} · min {fmt_number(scored.min())} · "
            f"median {fmt_number(float(np.median(scored)))} · max {fmt_number(scored.max())}")  # fmt: skip
    if threshold is not None and _bounds(threshold):
        reasons = f" ({', '.join(dict.fromkeys(threshold.reasons))})" if threshold.reasons else ""
        text += f" · {int(outside_mask(scored, threshold).sum()):,} outside the threshold{reasons}"
    return text


def score_block(table: pa.Table, column: str, threshold: Threshold | None, thumbs: Thumbs) -> Html:
    """One score column: its numbers, its histogram with the threshold marked, and its two galleries."""
    values = _values(table, column)
    scored, kept = ~np.isnan(values), _kept_mask(table)
    edges = histogram_edges(values[scored], threshold)
    layers = [("kept", np.histogram(values[scored & kept], edges)[0].tolist()),
              ("dropped", np.histogram(values[scored & ~kept], edges)[0].tolist())]  # fmt: skip
    markers = [Marker(v, f"{name} {fmt_number(v)}") for name, v in _bounds(threshold)]
    chart = histogram_svg(edges.tolist(), layers, markers, title=column, width=1200, height=240)
    galleries = []
    for title, rows in gallery_rows(table, values, threshold):
        tiles = _tiles(table, rows, column, values, thumbs)
        galleries.append(tag("div", join([tag("h3", title), gallery(tiles, "none")])))
    key = legend([("var(--kept)", "kept"), ("var(--drop)", "dropped (any reason)")])
    parts = [tag("h3", tag("code", column)), tag("p", describe(values, threshold), cls="muted"), key, chart,
             tag("div", join(galleries), cls="grid2")]  # fmt: skip
    return tag("div", join(parts), cls="block", id=f"score-{column}")


def scores_section(table: pa.Table, thresholds: Mapping[str, Threshold], thumbs: Thumbs, notes: list[str]) -> Section:
    columns = score_columns(table)
    missing = sorted(set(thresholds) - set(columns))
    if missing:
        notes = [*notes, f"thresholds on columns with no scores in this run: {', '.join(missing)}"]
    intro = ("Per score column, the distribution of its values (kept and dropped stacked) with the threshold "
             "marked, and the samples on either side of it.")  # fmt: skip
    body = [tag("p", intro, cls="muted"), *(tag("p", n, cls="muted") for n in notes)]
    body += [score_block(table, c, thresholds.get(c), thumbs) for c in columns]
    if not columns:
        body.append(tag("p", "This run has no score columns.", cls="muted"))
    return Section("scores", "Scores and thresholds", join(body))
