"""Write the manifest: sorted by sample_id, fixed rows per part, so the same run gives the same files."""

from __future__ import annotations

import posixpath
from typing import Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from curation.commit import write_atomically

MANIFEST_DIR = "manifest"
ROWS_PER_PART = 100_000


def part_name(index: int) -> str:
    return f"{MANIFEST_DIR}/part-{index:05d}.parquet"


class ManifestWriter:
    """Takes sorted batches in order and cuts them into parts of exactly `rows_per_part` rows."""

    def __init__(self, out_root: str, schema: pa.Schema, rows_per_part: int = ROWS_PER_PART):
        self.out_root = out_root
        self.schema = schema
        self.rows_per_part = rows_per_part
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.parts: list[str] = []
        self.fs, _ = fsspec.core.url_to_fs(out_root)
        self.fs.makedirs(posixpath.join(out_root, MANIFEST_DIR), exist_ok=True)

    def add(self, batch: pa.Table) -> None:
        batch = batch.select(self.schema.names).cast(self.schema)
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        while self.pending_rows >= self.rows_per_part:
            self._flush(self.rows_per_part)

    def close(self) -> list[str]:
        if self.pending_rows or not self.parts:
            self._flush(self.pending_rows)
        return self.parts

    def _flush(self, n: int) -> None:
        table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        head, rest = table.slice(0, n), table.slice(n)
        name = part_name(len(self.parts))
        final = posixpath.join(self.out_root, name)
        write_atomically(final, lambda f: pq.write_table(head, f, compression="zstd"))
        self.parts.append(name)
        self.pending = [rest] if rest.num_rows else []
        self.pending_rows = rest.num_rows


def write_manifest(out_root: str, schema: pa.Schema, batches: Iterable[pa.Table]) -> list[str]:
    writer = ManifestWriter(out_root, schema)
    for b in batches:
        writer.add(b)
    return writer.close()
