"""The record: one row per input sample, from ingest to the manifest.

Every stage reads and writes rows of this schema, so the ledger cannot drift between stages. Scores are
extra float columns with namespaced names (``quality.blur``, ``safety.nsfw``); stages declare the ones they
write and the pipeline adds them to the schema it hands every stage.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

import pyarrow as pa

KEPT = "kept"
DROPPED = "dropped"

# Identity, references to the bytes (never the bytes themselves when a path will do), image facts,
# captions, decision, output. Order here is the column order of the manifest.
RECORD_FIELDS: list[pa.Field] = [
    pa.field("sample_id", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("source_key", pa.string(), nullable=False),
    pa.field("source_priority", pa.int32()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("drop_stage", pa.string()),
    pa.field("drop_reason", pa.string()),
    pa.field("drop_value", pa.float64()),
    pa.field("error", pa.string()),
    pa.field("duplicate_of", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("bytes", pa.int64()),
    pa.field("format", pa.string()),
    pa.field("mode", pa.string()),
    pa.field("width", pa.int32()),  # as stored, before EXIF rotation
    pa.field("height", pa.int32()),
    pa.field("orientation", pa.int8()),  # EXIF orientation, 1 when absent
    pa.field("frames", pa.int32()),
    pa.field("caption", pa.string()),  # the caption the shard gets
    pa.field("caption_original", pa.string()),
    pa.field("bucket", pa.string()),
    pa.field("shard", pa.string()),
    pa.field("key_in_shard", pa.string()),
    # Where the bytes are: a file (whole, or a member at an offset inside a tar) or inline bytes.
    pa.field("image_path", pa.string()),
    pa.field("image_offset", pa.int64()),
    pa.field("image_size", pa.int64()),
    pa.field("image_bytes", pa.binary()),
]

# Internal columns that locate bytes; the manifest leaves them out.
REFERENCE_COLUMNS = ("image_path", "image_offset", "image_size", "image_bytes")


def record_schema(extra: Mapping[str, pa.DataType] | None = None) -> pa.Schema:
    """The record schema plus extra (score) columns, in a stable order."""
    fields = list(RECORD_FIELDS)
    names = {f.name for f in fields}
    for name in sorted(extra or {}):
        if name in names:
            raise ValueError(f"column {name!r} is declared twice")
        fields.append(pa.field(name, extra[name]))
    return pa.schema(fields)


def manifest_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in REFERENCE_COLUMNS])


def make_sample_id(source: str, source_key: str) -> str:
    """Stable across runs and unique per input row: a hash of the source name and the key in it."""
    digest = hashlib.blake2b(f"{source}\x00{source_key}".encode("utf-8", "surrogatepass"), digest_size=10)
    return digest.hexdigest()


# sample_ids are uniform hex digests, so equal ranges of their first 8 hex digits are balanced hash
# partitions that are also in sort order: concatenating sorted ranges sorts the whole.
_PREFIX_HEX = 8
_PREFIX_BITS = 4 * _PREFIX_HEX
_ID_SPACE = 1 << _PREFIX_BITS


def id_range(sample_id: str, n: int) -> int:
    """Which of `n` equal ranges of the sample_id space holds `sample_id` (0 .. n-1)."""
    return int(sample_id[:_PREFIX_HEX], 16) * n >> _PREFIX_BITS


def id_range_bounds(r: int, n: int) -> tuple[str | None, str | None]:
    """Range `r` of `n` as [lo, hi) in sample_id string order; None where the range is open."""
    lo = None if r == 0 else f"{-(-r * _ID_SPACE // n):0{_PREFIX_HEX}x}"
    hi = None if r == n - 1 else f"{-(-(r + 1) * _ID_SPACE // n):0{_PREFIX_HEX}x}"
    return lo, hi


def overlapping_ranges(r: int, n: int, m: int) -> range:
    """The ranges of an `m`-way split that overlap range `r` of an `n`-way split."""
    first = -(-r * _ID_SPACE // n)
    last = -(-(r + 1) * _ID_SPACE // n) - 1
    return range(first * m >> _PREFIX_BITS, (last * m >> _PREFIX_BITS) + 1)


def new_record(source: str, source_key: str, priority: int, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "sample_id": make_sample_id(source, source_key),
        "source": source,
        "source_key": source_key,
        "source_priority": priority,
        "status": KEPT,
    }
    row.update(fields)
    return row


def drop(row: dict[str, Any], stage: str, reason: str, value: float | None = None, error: str | None = None) -> None:
    """Mark a row dropped in place; the first drop wins, so a row's reason is the stage that saw it first."""
    if row.get("status") == DROPPED:
        return
    row["status"] = DROPPED
    row["drop_stage"] = stage
    row["drop_reason"] = reason
    row["drop_value"] = value
    row["error"] = error


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
