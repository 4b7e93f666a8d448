"""What a run folder holds, in numbers: per source, per drop stage and reason, per bucket, the largest duplicate
clusters and the time per stage. Works on a finished run, on one still running, and on one that died.

A run writes its manifest last, so a run in progress (or killed) may have no manifest yet. Then the rows come
from the intermediate records of the analysis phase (`_work/records/`, same columns), and the summary says
so in its `notes`. Unreadable files (a part cut short by a kill) are skipped and named in the notes too:
`curation inspect` prints what there is instead of a traceback.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curation.schema import KEPT
from manifests.writer import MANIFEST_DIR

RECORDS_DIR = "_work/records"
RUN_JSON = "run.json"
MANIFEST = "manifest"
RECORDS = "records"
SUMMARY_COLUMNS = [
    "sample_id",
    "source",
    "source_key",
    "status",
    "drop_stage",
    "drop_reason",
    "bucket",
    "duplicate_of",
    "dup_cluster",
]
TOP_CLUSTERS = 10
# Inline image bytes (table sources) can be large and no summary or report reads them from the rows.
UNREAD_COLUMNS = ("image_bytes",)


@dataclass
class RunData:
    """The rows of a run folder and where they came from."""

    out: str
    table: pa.Table
    origin: str | None  # MANIFEST, RECORDS, or None when neither exists yet
    run: dict[str, Any] | None  # run.json
    notes: list[str] = field(default_factory=list)  # what is partial or missing, for people to read


def _join(out: str, *parts: str) -> str:
    return posixpath.join(out.rstrip("/"), *parts)


def read_run_json(out: str, notes: list[str]) -> dict[str, Any] | None:
    fs, _ = fsspec.core.url_to_fs(out)
    path = _join(out, RUN_JSON)
    if not fs.exists(path):
        notes.append("no run.json: the run's status and timings are unknown")
        return None
    try:
        with fs.open(path, "r") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        notes.append(f"run.json is unreadable ({type(e).__name__}: {e})")
        return None
    return info if isinstance(info, dict) else None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def run_status_note(run: dict[str, Any] | None, now: float | None = None) -> str | None:
    """A line about a run that has not finished; None for a finished one."""
    if not run or run.get("status") == "finished":
        return None
    status = run.get("status", "unknown")
    if status == "running":
        started = run.get("started")
        age = f", started {_duration((now or time.time()) - started)} ago" if isinstance(started, (int, float)) else ""
        return f"run status 'running'{age}: counts are partial (or the run was killed before it finished)"
    error = run.get("error")
    return f"run status {status!r}" + (f": {error}" if error else "")


def _parquet_files(out: str, folder: str) -> list[str]:
    fs, _ = fsspec.core.url_to_fs(out)
    return sorted(fs.glob(_join(out, folder, "*.parquet")))


def read_parquet_files(out: str, files: list[str], columns: list[str] | None, notes: list[str]) -> list[pa.Table]:
    """Each readable file's `columns` (those it has); a file a kill cut short is named in `notes` and skipped."""
    fs, _ = fsspec.core.url_to_fs(out)
    tables = []
    for path in files:
        try:
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                wanted = [
                    c for c in pf.schema_arrow.names if (columns is None or c in columns) and c not in UNREAD_COLUMNS
                ]
                tables.append(pf.read(columns=wanted))
        except (OSError, pa.ArrowException) as e:
            notes.append(f"skipped unreadable {posixpath.basename(path)} ({type(e).__name__}: {str(e)[:120]})")
    return tables


def load_run(out: str, columns: list[str] | None = None) -> RunData:
    """The rows of the manifest, else of the intermediate records, with notes on what is partial.

    Raises FileNotFoundError only when `out` holds nothing of a run at all.
    """
    fs, _ = fsspec.core.url_to_fs(out)
    if not any(fs.exists(_join(out, p)) for p in (RUN_JSON, MANIFEST_DIR, RECORDS_DIR, "config.yaml")):
        raise FileNotFoundError(f"{out} holds no run (no run.json, manifest/ or {RECORDS_DIR}/)")
    notes: list[str] = []
    run = read_run_json(out, notes)
    status = run_status_note(run)
    if status:
        notes.append(status)
    for origin, folder in ((MANIFEST, MANIFEST_DIR), (RECORDS, RECORDS_DIR)):
        files = _parquet_files(out, folder)
        tables = read_parquet_files(out, files, columns, notes)
        if tables:
            if origin == RECORDS:
                notes.append(
                    f"no manifest yet: rows come from {len(tables)} intermediate record file(s) of the "
                    f"analysis phase ({RECORDS_DIR}/); dedup, bucketing and shards have not run, so "
                    "'kept' means 'not dropped so far'"
                )
            return RunData(out, pa.concat_tables(tables, promote_options="permissive"), origin, run, notes)
    notes.append(f"no manifest and no intermediate records ({RECORDS_DIR}/) yet")
    empty = pa.table({c: pa.array([], pa.string()) for c in (columns or SUMMARY_COLUMNS)})
    return RunData(out, empty, None, run, notes)


# ---- summaries -----------------------------------------------------------------------------------------


def _counts(table: pa.Table, keys: list[str]) -> list[dict[str, Any]]:
    if table.num_rows == 0:
        return []
    grouped = table.group_by(keys).aggregate([([], "count_all")]).to_pylist()
    rows = [{**{k: g[k] for k in keys}, "count": g["count_all"]} for g in grouped]
    return sorted(rows, key=lambda r: (-r["count"], *[str(r[k]) for k in keys]))


def with_columns(table: pa.Table, names: list[str]) -> pa.Table:
    """`table` with any of `names` it lacks added as all-null strings (older manifests, records, empty runs)."""
    for name in names:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table


def duplicate_clusters(table: pa.Table, top: int = TOP_CLUSTERS) -> list[dict[str, Any]]:
    """The `top` largest clusters: members share `dup_cluster` (the survivor's sample_id); a copy that only has
    `duplicate_of` belongs to the cluster of the sample it points at."""
    table = with_columns(
        table, ["sample_id", "source", "source_key", "status", "drop_reason", "duplicate_of", "dup_cluster"]
    )
    cluster = pc.coalesce(table["dup_cluster"], table["duplicate_of"])
    members = table.append_column("_cluster", cluster).filter(pc.is_valid(cluster))
    sizes = _counts(members, ["_cluster"])[:top]
    out = []
    for s in sizes:
        rows = members.filter(pc.equal(members["_cluster"], s["_cluster"])).to_pylist()
        survivor = next((r for r in rows if r["sample_id"] == s["_cluster"]), None)
        reasons = Counter(r["drop_reason"] or "?" for r in rows if r["status"] != KEPT)
        out.append(
            {
                "cluster": s["_cluster"],
                "size": s["count"],
                "dropped": sum(reasons.values()),
                "survivor": None if survivor is None else {k: survivor[k] for k in ("source", "source_key", "status")},
                "dropped_by_reason": dict(sorted(reasons.items())),
            }
        )
    return out


def summarize(table: pa.Table, top_clusters: int = TOP_CLUSTERS) -> dict[str, Any]:
    table = with_columns(table, ["source", "status", "drop_stage", "drop_reason", "bucket"])
    kept_mask = pc.fill_null(pc.equal(table["status"], KEPT), False)
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
        # Records of a run in progress have no bucket yet: only planned buckets are counted.
        "kept_by_bucket": _counts(kept.filter(pc.is_valid(kept["bucket"])), ["bucket"]),
        "duplicate_clusters": duplicate_clusters(table, top_clusters),
    }


def summarize_run(data: RunData, top_clusters: int = TOP_CLUSTERS) -> dict[str, Any]:
    summary = summarize(data.table, top_clusters)
    summary.update(origin=data.origin, notes=list(data.notes), run=data.run)
    return summary


def inspect_run(out_root: str, top_clusters: int = TOP_CLUSTERS) -> dict[str, Any]:
    """The summary of whatever `out_root` holds (see the module docstring); `notes` says what is partial."""
    return summarize_run(load_run(out_root, SUMMARY_COLUMNS), top_clusters)


# ---- terminal tables -----------------------------------------------------------------------------------


def _table(title: str, headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [title]
    for j, r in enumerate(cells):
        lines.append(
            "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
        if j == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def headline(s: dict[str, Any]) -> str:
    line = f"inputs {s['inputs']}  kept {s['kept']}  dropped {s['dropped']}"
    elapsed = (s.get("run") or {}).get("elapsed_s")
    if elapsed:
        # Every input is read and decoded once, so inputs per second is the pipeline's image throughput.
        line += f"  elapsed {elapsed:.1f} s  ({s['inputs'] / elapsed:.1f} images/s)"
    return line


def _cluster_rows(clusters: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for c in clusters:
        sv = c["survivor"]
        survivor = (
            f"{sv['source']}/{sv['source_key']}" + ("" if sv["status"] == KEPT else f" ({sv['status']})") if sv else "?"
        )
        reasons = ", ".join(f"{k} x{v}" for k, v in c["dropped_by_reason"].items())
        rows.append([c["cluster"][:12], c["size"], c["dropped"], survivor, reasons])
    return rows


def _stage_time_rows(stage_seconds: dict[str, float]) -> list[list[Any]]:
    total = sum(stage_seconds.values()) or 1.0
    return [[k, f"{v:.1f}", f"{100 * v / total:.0f}%"] for k, v in stage_seconds.items()]


def format_summary(s: dict[str, Any]) -> str:
    parts = [f"note: {n}" for n in s.get("notes") or []]
    parts = ["\n".join(parts)] if parts else []
    parts.append(headline(s))
    if s["per_source"]:
        parts.append(
            _table(
                "per source:",
                ["source", "in", "kept", "dropped"],
                [[k, v["in"], v["kept"], v["dropped"]] for k, v in s["per_source"].items()],
            )
        )
    if s["dropped_by_reason"]:
        parts.append(
            _table(
                "dropped by stage and reason:",
                ["stage", "reason", "count"],
                [[r["drop_stage"], r["drop_reason"], r["count"]] for r in s["dropped_by_reason"]],
            )
        )
    if s["kept_by_bucket"]:
        parts.append(
            _table("kept by bucket:", ["bucket", "count"], [[r["bucket"], r["count"]] for r in s["kept_by_bucket"]])
        )
    if s.get("duplicate_clusters"):
        parts.append(
            _table(
                "largest duplicate clusters:",
                ["cluster", "size", "dropped", "survivor", "dropped as"],
                _cluster_rows(s["duplicate_clusters"]),
            )
        )
    stage_seconds = (s.get("run") or {}).get("stage_seconds")
    if stage_seconds:
        parts.append(_table("time per stage:", ["stage", "seconds", "share"], _stage_time_rows(stage_seconds)))
    return "\n\n".join(parts)


def inspect_command(out: str, as_json: bool = False, top_clusters: int = TOP_CLUSTERS) -> tuple[int, str]:
    """What `curation inspect` prints and its exit code: 1 only when `out` holds no run at all."""
    try:
        summary = inspect_run(out, top_clusters)
    except FileNotFoundError as e:
        return 1, f"curation inspect: {e}"
    return 0, json.dumps(summary, indent=2, default=str) if as_json else format_summary(summary)
