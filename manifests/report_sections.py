"""The report's count sections, built from a summary (`manifests.inspect.summarize_run`): overview, funnel,
sources, drop reasons, buckets, time per stage. Every number from the manifest is a `count` cell."""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from manifests.inspect import MANIFEST, RECORDS
from manifests.report_html import Html, Section, Thumbs, bar, count, count_cell, join, note_list, table, tag, tile

# Where stages sit in the pipeline when run.json does not list them: ingest and decode first, then the
# analysis filters (in the order of how much they drop), then dedup, bucketing and the shard writer.
FIRST_STAGES = ("ingest", "decode")
LAST_STAGES = ("dedup", "bucket", "shard")


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def stage_order(dropped_per_stage: Mapping[str, int], declared: Sequence[str] | None = None) -> list[str]:
    """Stages with drops in pipeline order: run.json's `stages` list when it has one, else the known layout."""
    names = list(dropped_per_stage)
    if declared:
        rank = {s: i for i, s in enumerate(declared)}
        return sorted(names, key=lambda s: (rank.get(s, len(rank)), s))
    first = [s for s in FIRST_STAGES if s in dropped_per_stage]
    last = [s for s in LAST_STAGES if s in dropped_per_stage]
    middle = sorted((s for s in names if s not in first and s not in last), key=lambda s: (-dropped_per_stage[s], s))
    return first + middle + last


def funnel_steps(summary: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """(stage, samples left after it, samples it dropped), from the inputs down to what was kept."""
    per_stage: dict[str, int] = {}
    for r in summary["dropped_by_reason"]:
        stage = r["drop_stage"] or "?"
        per_stage[stage] = per_stage.get(stage, 0) + r["count"]
    left = summary["inputs"]
    steps = []
    for stage in stage_order(per_stage, (summary.get("run") or {}).get("stages")):
        left -= per_stage[stage]
        steps.append((stage, left, per_stage[stage]))
    return steps


def _stat(label: str, value: Html | str, cls: str = "") -> Html:
    return tag("div", join([tag("div", value, cls="v"), tag("div", label, cls="k")]), cls=f"stat {cls}".strip())


def _when(ts: Any) -> str | None:
    if not isinstance(ts, (int, float)):
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def overview_section(summary: Mapping[str, Any]) -> Section:
    run = summary.get("run") or {}
    inputs, kept = summary["inputs"], summary["kept"]
    stats = [
        _stat("inputs", count("inputs", inputs)),
        _stat(f"kept ({_pct(kept, inputs)})", count("kept", kept), "kept"),
        _stat("dropped", count("dropped", summary["dropped"]), "dropped"),
        _stat("status", run.get("status", "unknown")),
    ]
    elapsed = run.get("elapsed_s")
    if elapsed:
        stats += [_stat("elapsed", f"{elapsed:.1f} s"), _stat("images / s", f"{inputs / elapsed:.1f}")]
    origins = {MANIFEST: "the manifest", RECORDS: "intermediate records (no manifest yet)"}
    facts = [
        ("rows from", origins.get(summary.get("origin") or "", "nothing yet")),
        ("version", run.get("version")),
        ("git commit", run.get("git_commit")),
        ("started", _when(run.get("started"))),
        ("finished", _when(run.get("finished"))),
        ("partitions", run.get("partitions")),
    ]
    facts_table = table(["", ""], [[k, v] for k, v in facts if v is not None])
    body = join([note_list(summary.get("notes") or []), tag("div", join(stats), cls="stats"), facts_table])
    return Section("overview", "Overview", body)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def funnel_section(summary: Mapping[str, Any]) -> Section:
    inputs, kept = summary["inputs"], summary["kept"]
    rows = [[tag("strong", "inputs"), bar(1.0), count_cell("funnel:inputs", inputs), ""]]
    for stage, left, removed in funnel_steps(summary):
        removed_cell = tag("td", f"−{removed:,}", cls="num")
        left_bar = bar(_share(left, inputs), "kept")
        rows.append([f"after {stage}", left_bar, count_cell(f"funnel:{stage}", left), removed_cell])
    rows.append([tag("strong", "kept"), bar(_share(kept, inputs), "kept"), count_cell("funnel:kept", kept),
                 f"{_pct(kept, inputs)} of inputs"])  # fmt: skip
    intro = tag("p", "Samples left after each stage that dropped any, in pipeline order.", cls="muted")
    return Section("funnel", "Funnel", join([intro, table(["step", "", "samples", "dropped"], rows, numeric=[2, 3])]))


def sources_section(summary: Mapping[str, Any]) -> Section:
    rows = []
    for name, c in summary["per_source"].items():
        cells = [count_cell(f"source:{name}:{k}", c[k]) for k in ("in", "kept", "dropped")]
        rows.append([name, *cells, bar(_share(c["kept"], c["in"]), "kept"), _pct(c["kept"], c["in"])])
    headers = ["source", "in", "kept", "dropped", "kept share", ""]
    return Section("sources", "Sources", table(headers, rows, numeric=[1, 2, 3, 5]))


def reason_examples(table_: pa.Table, limit_per_reason: int = 1) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """The first dropped rows of each (stage, reason), in sample_id order (the manifest's, so stable)."""
    if table_.num_rows == 0 or "drop_reason" not in table_.column_names:
        return {}
    dropped = table_.filter(pc.is_valid(table_["drop_reason"]))
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in dropped.to_pylist():
        examples = out.setdefault((row.get("drop_stage") or "?", row["drop_reason"]), [])
        if len(examples) < limit_per_reason:
            examples.append(row)
    return out


def reasons_section(
    summary: Mapping[str, Any], examples: Mapping[tuple[str, str], list[dict[str, Any]]], thumbs: Thumbs
) -> Section:
    if not summary["dropped_by_reason"]:
        return Section("reasons", "Drop reasons", tag("p", "Nothing was dropped.", cls="muted"))
    rows = []
    for r in summary["dropped_by_reason"]:
        stage, reason = r["drop_stage"] or "?", r["drop_reason"] or "?"
        sample = next(iter(examples.get((stage, reason), [])), None)
        example = ""
        if sample:
            example = tile(thumbs(sample), [f"{sample['source']}/{sample['source_key']}"], "dropped", small=True)
        share = bar(_share(r["count"], summary["inputs"]), "dropped")
        rows.append([stage, tag("strong", reason), count_cell(f"reason:{stage}/{reason}", r["count"]), share, example])
    headers = ["stage", "reason", "samples", "share of inputs", "example"]
    return Section("reasons", "Drop reasons", table(headers, rows, numeric=[2]))


def _aspect_glyph(bucket: str) -> Html:
    try:
        w, h = (int(v) for v in bucket.split("x"))
    except ValueError:
        return Html("")
    scale = 28 / max(w, h)
    return tag("span", "", cls="aspect", style=f"width:{w * scale:.0f}px;height:{h * scale:.0f}px")


def buckets_section(summary: Mapping[str, Any], buckets_json: Mapping[str, Any] | None) -> Section:
    if not summary["kept_by_bucket"]:
        return Section("buckets", "Buckets", tag("p", "No sample has a bucket yet.", cls="muted"))
    shards = (buckets_json or {}).get("buckets") or {}
    rows = []
    for r in sorted(summary["kept_by_bucket"], key=lambda r: str(r["bucket"])):
        b = str(r["bucket"])
        n_shards = len(shards.get(b, {}).get("shards") or [])
        rows.append([_aspect_glyph(b), tag("strong", b), count_cell(f"bucket:{b}", r["count"]),
                     bar(_share(r["count"], summary["kept"])), n_shards])  # fmt: skip
    headers = ["", "bucket (W×H)", "kept samples", "share", "shards"]
    return Section("buckets", "Buckets", table(headers, rows, numeric=[2, 4]))


def timing_section(run: Mapping[str, Any] | None) -> Section | None:
    seconds = (run or {}).get("stage_seconds") or {}
    if not seconds:
        return None
    total = sum(seconds.values()) or 1.0
    rows = [[stage, f"{s:.1f}", bar(s / total), f"{100 * s / total:.0f}%"] for stage, s in seconds.items()]
    return Section("timing", "Time per stage", table(["stage", "seconds", "", "share"], rows, numeric=[1, 3]))
