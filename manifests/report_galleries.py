"""The report's sample galleries: duplicate clusters side by side with the survivor marked, and captions before
and after re-captioning with their candidates and scores."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from manifests.inspect import duplicate_clusters, with_columns
from manifests.report_html import (
    Html,
    Section,
    Thumbs,
    count,
    fmt_number,
    gallery,
    join,
    labelled,
    tag,
    tile,
    tone,
    verdict,
)

CLUSTERS_SHOWN = 8
MEMBERS_SHOWN = 6
CAPTIONS_SHOWN = 20
# Score namespaces shown next to a caption: the caption's own scores and image-text agreement.
CAPTION_SCORE_PREFIXES = ("caption.", "recaption.", "clip.")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ---- duplicates ---------------------------------------------------------------------------------------------


def cluster_members(table: pa.Table, cluster: str) -> list[dict[str, Any]]:
    """The survivor first, then its copies, closest first."""
    table = with_columns(table, ["dup_cluster", "duplicate_of"])
    key = pc.coalesce(table["dup_cluster"], table["duplicate_of"])
    rows = table.filter(pc.fill_null(pc.equal(key, cluster), False)).to_pylist()
    distance = lambda r: (r.get("dup_distance") is None, r.get("dup_distance") or 0)  # noqa: E731
    return sorted(rows, key=lambda r: (r["sample_id"] != cluster, *distance(r), r["sample_id"]))


def member_tile(row: Mapping[str, Any], cluster: str, thumbs: Thumbs) -> Html:
    lines = [f"{row['source']}/{row['source_key']}", f"source {row['source']}"]
    if row["sample_id"] == cluster:
        return tile(thumbs(row), [*lines, verdict(row)], f"{tone(row)} survivor", badge="survivor")
    detail = verdict(row)
    if row.get("dup_distance") is not None:
        detail += f" · d={fmt_number(row['dup_distance'])}"
    return tile(thumbs(row), [*lines, detail], tone(row))


def duplicates_section(table: pa.Table, thumbs: Thumbs) -> Section:
    clusters = duplicate_clusters(table, CLUSTERS_SHOWN) if table.num_rows else []
    if not clusters:
        return Section("duplicates", "Duplicate clusters", tag("p", "No duplicate clusters in this run.", cls="muted"))
    blocks = []
    for c in clusters:
        members = cluster_members(table, c["cluster"])
        reasons = ", ".join(f"{k} ×{v}" for k, v in c["dropped_by_reason"].items())
        head = f"cluster {c['cluster'][:12]}: {c['size']} samples, {c['dropped']} dropped"
        tiles = [member_tile(m, c["cluster"], thumbs) for m in members[:MEMBERS_SHOWN]]
        if len(members) > MEMBERS_SHOWN:
            tiles.append(tag("div", f"and {len(members) - MEMBERS_SHOWN} more", cls="muted"))
        title = tag("h3", f"{head} ({reasons})" if reasons else head)
        blocks.append(tag("div", join([title, gallery(tiles, "")]), cls="block"))
    intro = (f"The {len(clusters)} largest clusters; the survivor (kept copy) is outlined, its copies follow, closest "
             "first (d: pHash bits for images, Jaccard similarity for captions).")  # fmt: skip
    return Section("duplicates", "Duplicate clusters", join([tag("p", intro, cls="muted"), *blocks]))


# ---- captions -------------------------------------------------------------------------------------------


def recaptioned(table: pa.Table) -> pa.Table:
    """Rows whose caption differs from the original, or that carry re-captioning candidates."""
    if table.num_rows == 0 or "caption" not in table.column_names:
        return table.slice(0, 0)
    changed = pc.fill_null(pc.not_equal(table["caption"], table["caption_original"]), False)
    if "caption_candidates" in table.column_names:
        changed = pc.or_(changed, pc.is_valid(table["caption_candidates"]))
    return table.filter(changed)


def candidate_lines(raw: Any) -> list[str]:
    """Re-captioning candidates as lines: a JSON list of strings, or of objects with a caption/text and scores."""
    try:
        items = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [str(raw)]
    lines = []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            lines.append(str(item))
            continue
        scores = ", ".join(f"{k} {fmt_number(v)}" for k, v in item.items() if _is_number(v))
        text = item.get("caption") or item.get("text") or ""
        lines.append(f"{text} ({scores})" if scores else text)
    return lines


def caption_scores(row: Mapping[str, Any]) -> str:
    scores = [(k, v) for k, v in row.items() if k.startswith(CAPTION_SCORE_PREFIXES) and _is_number(v)]
    return " · ".join(f"{k} {fmt_number(v)}" for k, v in scores)


def caption_card(row: Mapping[str, Any], thumbs: Thumbs) -> Html:
    candidates = candidate_lines(row["caption_candidates"]) if row.get("caption_candidates") else []
    side = [labelled("candidates", tag("ol", join(tag("li", c) for c in candidates)))] if candidates else []
    side.append(tag("div", caption_scores(row), cls="scores"))
    parts = [
        tile(thumbs(row), [f"{row['source']}/{row['source_key']}", verdict(row)], tone(row)),
        labelled("before", tag("div", row.get("caption_original") or "(none)"), cls="before"),
        labelled("after", tag("div", row.get("caption") or "(none)"), cls="after"),
        tag("div", join(side)),
    ]
    return tag("div", join(parts), cls="caprow")


def captions_section(table: pa.Table, thumbs: Thumbs) -> Section:
    changed = recaptioned(table)
    n = changed.num_rows
    if n == 0:
        return Section("captions", "Captions", tag("p", "No caption was changed in this run.", cls="muted"))
    intro = join([count("captions:changed", n), " sample has" if n == 1 else " samples have",
                  f" a caption that differs from the original (first {min(CAPTIONS_SHOWN, n)} shown)."])  # fmt: skip
    cards = [caption_card(row, thumbs) for row in changed.slice(0, CAPTIONS_SHOWN).to_pylist()]
    return Section("captions", "Captions before and after", join([tag("p", intro, cls="muted"), *cards]))
