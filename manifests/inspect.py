"""Summaries of a manifest: per source, per drop reason, per bucket. Works on whatever parts exist."""

from __future__ import annotations

import json
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from curation.schema import KEPT
from manifests.reader import read_manifest

SUMMARY_COLUMNS = ["source", "status", "drop_stage", "drop_reason", "bucket"]


def _counts(table: pa.Table, keys: list[str]) -> list[dict[str, Any]]:
    grouped = table.group_by(keys).aggregate([([], "count_all")]).to_pylist()
    rows = [{**{k: g[k] for k in keys}, "count": g["count_all"]} for g in grouped]
    return sorted(rows, key=lambda r: (-r["count"], *[str(r[k]) for k in keys]))


def summarize(table: pa.Table) -> dict[str, Any]:
    kept_mask = pc.equal(table["status"], KEPT)
    kept = table.filter(kept_mask)
    dropped = table.filter(pc.invert(kept_mask))
    per_source: dict[str, dict[str, int]] = {}
    for r in _counts(table, ["source", "status"]):
        entry = per_source.setdefault(r["source"], {"in": 0, "kept": 0, "dropped": 0})
        entry["in"] += r["count"]
        entry["kept" if r["status"] == KEPT else "dropped"] += r["count"]
    return {
        "inputs": table.num_rows,
        "kept": kept.num_rows,
        "dropped": dropped.num_rows,
        "per_source": dict(sorted(per_source.items())),
        "dropped_by_reason": _counts(dropped, ["drop_stage", "drop_reason"]),
        "kept_by_bucket": _counts(kept, ["bucket"]),
    }


def load_run_info(out_root: str) -> dict[str, Any] | None:
    fs, _ = fsspec.core.url_to_fs(out_root)
    path = posixpath.join(out_root, "run.json")
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def inspect_run(out_root: str) -> dict[str, Any]:
    table = read_manifest(out_root, columns=SUMMARY_COLUMNS)
    summary = summarize(table)
    summary["run"] = load_run_info(out_root)
    return summary


def _table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title]
    for j, r in enumerate(cells):
        lines.append("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_summary(s: dict[str, Any]) -> str:
    parts = [f"inputs {s['inputs']}  kept {s['kept']}  dropped {s['dropped']}"]
    run = s.get("run") or {}
    if run.get("elapsed_s"):
        rate = s["inputs"] / run["elapsed_s"] if run["elapsed_s"] else 0
        parts[0] += f"  elapsed {run['elapsed_s']:.1f} s  ({rate:.1f} samples/s)"
    parts.append(_table("per source:", ["source", "in", "kept", "dropped"],
                        [[k, v["in"], v["kept"], v["dropped"]] for k, v in s["per_source"].items()]))  # fmt: skip
    if s["dropped_by_reason"]:
        parts.append(_table("dropped by stage and reason:", ["stage", "reason", "count"],
                            [[r["drop_stage"], r["drop_reason"], r["count"]] for r in s["dropped_by_reason"]]))  # fmt: skip
    if s["kept_by_bucket"]:
        parts.append(_table("kept by bucket:", ["bucket", "count"], [[r["bucket"], r["count"]] for r in s["kept_by_bucket"]]))
    return "\n\n".join(parts)
