"""Apply the dedup identify job's decisions: a cheap per-row stage after a join on sample_id."""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from curation.stage import Drop, RowStage

DEDUP_STAGE = "dedup"
# The decisions' own names for the reason and survivor would collide with the record's columns.
DECISION_RENAMES = {"drop_reason": "dup_reason", "duplicate_of": "dup_of"}


class ApplyDedupStage(RowStage):
    name = DEDUP_STAGE
    output_columns = {
        "dup_cluster": pa.string(),
        "dup_distance": pa.float64(),
        "captions_inherited": pa.string(),
        "caption_cluster_size": pa.int64(),
    }

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        # Survivors keep their cluster columns (and inherited captions); copies are dropped.
        if row.get("dup_reason"):
            row["duplicate_of"] = row.get("dup_of")
            raise Drop(row["dup_reason"], value=row.get("dup_distance"))
        return None
