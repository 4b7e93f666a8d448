"""Read a run's manifest with pyarrow (pandas and duckdb read the same files)."""

from __future__ import annotations

import posixpath

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from manifests.writer import MANIFEST_DIR


def manifest_files(out_root: str) -> list[str]:
    """Finished manifest parts only: temporary files of a run in progress are not part of it yet."""
    fs, root = fsspec.core.url_to_fs(out_root)
    pattern = posixpath.join(root, MANIFEST_DIR, "*.parquet")
    return sorted(fs.glob(pattern))


def read_manifest(out_root: str, columns: list[str] | None = None) -> pa.Table:
    fs, _ = fsspec.core.url_to_fs(out_root)
    files = manifest_files(out_root)
    if not files:
        raise FileNotFoundError(f"no manifest under {posixpath.join(out_root, MANIFEST_DIR)}")
    tables = []
    for f in files:
        with fs.open(f, "rb") as fh:
            tables.append(pq.read_table(fh, columns=columns))
    return pa.concat_tables(tables, promote_options="default")
