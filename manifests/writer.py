"""Write the manifest: sorted by sample_id, fixed rows per part, so the same run gives the same files."""

from __future__ import annotations

import posixpath

import fsspec
import pyarrow as pa

from curation.commit import ParquetStream

MANIFEST_DIR = "manifest"
ROWS_PER_PART = 100_000
ROWS_PER_GROUP = 8192


def part_name(index: int) -> str:
    return f"{MANIFEST_DIR}/part-{index:05d}.parquet"


class ManifestWriter:
    """Takes sorted batches in order and cuts them into parts of exactly `rows_per_part` rows, written as they
    come in row groups of `rows_per_group` rows: it holds a row group, not a part. The cuts depend on the row
    sequence alone, never on how it was batched, so the files are byte-identical whatever the batches."""

    def __init__(self, out_root: str, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART,
                 rows_per_group: int = ROWS_PER_GROUP):  # fmt: skip
        self.out_root = out_root
        self.schema = schema
        self.rows_per_part = rows_per_part
        self.rows_per_group = min(rows_per_group, rows_per_part)
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.parts: list[str] = []
        self.part: ParquetStream | None = None
        self.part_rows = 0
        self.fs, _ = fsspec.core.url_to_fs(out_root)
        self.fs.makedirs(posixpath.join(out_root, MANIFEST_DIR), exist_ok=True)

    def add(self, batch: pa.Table) -> None:
        batch = batch.select(self.schema.names).cast(self.schema)
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        while self.pending_rows >= self._next_group():
            self._write_group(self._next_group())

    def close(self) -> list[str]:
        if self.pending_rows:
            self._write_group(self.pending_rows)
        if self.part is None and not self.parts:  # an empty manifest still has one (empty) part
            self._open_part()
        self._close_part()
        return self.parts

    def _next_group(self) -> int:
        """Rows of the next row group: a full group, or what is left of the current part."""
        return min(self.rows_per_group, self.rows_per_part - self.part_rows)

    def _write_group(self, n: int) -> None:
        table = pa.concat_tables(self.pending)
        head, rest = table.slice(0, n), table.slice(n)
        if self.part is None:
            self._open_part()
        assert self.part is not None
        self.part.write(head)
        self.part_rows += n
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows
        if self.part_rows == self.rows_per_part:
            self._close_part()

    def _open_part(self) -> None:
        self.part = ParquetStream(posixpath.join(self.out_root, part_name(len(self.parts))), self.schema)

    def _close_part(self) -> None:
        if self.part is None:
            return
        self.part.close()
        self.parts.append(part_name(len(self.parts)))
        self.part, self.part_rows = None, 0
