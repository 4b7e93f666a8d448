"""Calibration before a full run: per score column, a histogram with the thresholds marked, and how many
samples each candidate threshold would keep.

`calibrate(table, cfg, out_dir)` takes scored records (a manifest, or the records of a sample run) and writes:
- `hist_<column>.png` for every numeric score column (namespaced, e.g. quality.sharpness);
- `thresholds.csv`: column, candidate threshold (quantiles of the data plus the configured bounds), and how
  many scored samples it keeps used as a minimum and as a maximum;
- `calibration.json`: per column its spread and each configured rule with what it would drop, plus the drop
  counts of all rules together (first rule wins, as in the pipeline).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.config import FiltersConfig
from filters.histogram import Marker, draw_histogram
from filters.thresholds import ThresholdRule, all_rules, would_drop_counts

QUANTILES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0)


def score_columns(table: pa.Table, rules: list[ThresholdRule]) -> list[str]:
    """Numeric namespaced columns, plus any other column a rule reads (such as frames).

    Dedup signatures (`dedup.phash`) are integers too, but hashes, not scores."""
    numeric = {
        f.name
        for f in table.schema
        if "." in f.name
        and not f.name.startswith("dedup.")
        and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    }
    return sorted(numeric | {r.column for r in rules if r.column in table.column_names})


def finite_values(table: pa.Table, column: str) -> np.ndarray:
    values = pc.cast(table[column], pa.float64()).drop_null().to_numpy(zero_copy_only=False)
    return values[np.isfinite(values)]


def _rule_bounds(rule: ThresholdRule) -> list[tuple[str, float, str]]:
    bounds = []
    if rule.min is not None:
        bounds.append(("min", float(rule.min), rule.below_reason))
    if rule.max is not None:
        bounds.append(("max", float(rule.max), rule.above_reason))
    return bounds


def _would_drop(values: np.ndarray, kind: str, bound: float) -> int:
    return int((values < bound).sum() if kind == "min" else (values > bound).sum())


def calibrate(table: Any, cfg: FiltersConfig, out_dir: str | Path, bins: int = 50) -> dict[str, Any]:
    """Write histograms and threshold tables for the score columns of `table`; returns the JSON summary."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rules = all_rules(cfg)
    present_rules = [r for r in rules if r.column in table.column_names]
    summary: dict[str, Any] = {
        "rows": table.num_rows,
        "columns": {},
        "missing_columns": sorted({r.column for r in rules} - set(table.column_names)),
        "would_drop": would_drop_counts(table, present_rules),
    }
    csv_rows: list[dict[str, Any]] = []
    for column in score_columns(table, present_rules):
        values = finite_values(table, column)
        if not len(values):
            continue
        bounds = [b for r in present_rules if r.column == column for b in _rule_bounds(r)]
        markers = [Marker(v, f"{kind} {v:.3g}: drops {_would_drop(values, kind, v)}") for kind, v, _ in bounds]
        draw_histogram(values, column, markers, out / f"hist_{column}.png", bins=bins)
        candidates = [(f"q{q:g}", float(np.quantile(values, q))) for q in QUANTILES]
        candidates += [(f"configured_{kind}", v) for kind, v, _ in bounds]
        for label, t in candidates:
            csv_rows.append(
                {
                    "column": column,
                    "candidate": label,
                    "threshold": t,
                    "scored": len(values),
                    "kept_if_min": int((values >= t).sum()),
                    "kept_if_max": int((values <= t).sum()),
                }
            )
        counts, edges = np.histogram(values, bins=bins)
        bounds_by_kind = {kind: v for kind, v, _ in bounds}
        histogram = {
            "column": column,
            "bins": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
            "threshold": {"min": bounds_by_kind.get("min"), "max": bounds_by_kind.get("max")},
            "keep_table": [r for r in csv_rows if r["column"] == column],
        }
        # One file per column in the shape `curation report --calibration DIR` draws.
        (out / f"hist_{column}.json").write_text(json.dumps(histogram, indent=2) + "\n", encoding="utf-8")
        summary["columns"][column] = {
            "scored": len(values),
            "min": float(values.min()),
            "mean": float(values.mean()),
            "max": float(values.max()),
            "rules": [
                {"bound": kind, "threshold": v, "reason": reason, "would_drop": _would_drop(values, kind, v)}
                for kind, v, reason in bounds
            ],
        }
    with open(out / "thresholds.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(
            f, fieldnames=["column", "candidate", "threshold", "scored", "kept_if_min", "kept_if_max"]
        )
        writer.writeheader()
        writer.writerows(csv_rows)
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
