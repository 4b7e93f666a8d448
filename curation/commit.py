"""Units of work committed exactly once: files written under a temporary name and renamed, then a
completion record (written the same way) that holds each file's sha256 and size.

A unit counts as done only when its record exists and every file it names still has that checksum, so a
run killed at any point leaves either a finished unit or one that is redone; never half of one. A rerun
deletes the temporaries a killed run left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import uuid
from typing import Any, Callable, Iterable

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

# Every temporary file name holds this mark, so a rerun can find and delete what a killed run left.
TMP_MARK = ".tmp-"


def temporary_name(final: str) -> str:
    """Unique per process and attempt: a retried task never writes into the file of the one it replaces."""
    return f"{final}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def file_sha256(fs, path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def write_atomically(path: str, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call `write(file)` on a temporary file, then rename it to `path` (readers never see half a file)."""
    fs, _ = fsspec.core.url_to_fs(path)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = temporary_name(path)
    try:
        with fs.open(tmp, mode) as f:
            write(f)
        fs.mv(tmp, path)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp)


class ParquetStream:
    """A Parquet file written a table at a time (each `write` one or more row groups) under a temporary
    name, renamed to `path` by `close`; `abort` deletes it. For outputs too large to hold whole."""

    def __init__(self, path: str, schema: pa.Schema):
        self.path, self.schema = path, schema
        self.fs, _ = fsspec.core.url_to_fs(path)
        self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
        self.tmp = temporary_name(path)
        self.stream = self.fs.open(self.tmp, "wb")
        self.writer = pq.ParquetWriter(self.stream, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.cast(self.schema))

    def close(self) -> None:
        self.writer.close()
        self.stream.close()
        self.fs.mv(self.tmp, self.path)

    def abort(self) -> None:
        self.writer.close()
        self.stream.close()
        self.fs.rm(self.tmp)


def write_json_atomically(path: str, data: dict[str, Any]) -> None:
    write_atomically(path, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=str), mode="w")


def file_checksums(out_root: str, files: Iterable[str]) -> dict[str, dict[str, Any]]:
    """sha256 and size of each file, keyed by its path relative to the output folder."""
    fs, _ = fsspec.core.url_to_fs(out_root)
    sums = {}
    for rel in files:
        digest, size = file_sha256(fs, posixpath.join(out_root, rel))
        sums[rel] = {"sha256": digest, "bytes": size}
    return sums


def commit_unit(out_root: str, record: str, files: Iterable[str], **facts: Any) -> dict[str, Any]:
    """Write the completion record of a unit whose files (relative paths) are already in place."""
    data = {"files": file_checksums(out_root, files), **facts}
    write_json_atomically(posixpath.join(out_root, record), data)
    return data


def finished_unit(out_root: str, record: str) -> dict[str, Any] | None:
    """The unit's completion record if it exists and every file it names still matches; else None."""
    fs, _ = fsspec.core.url_to_fs(out_root)
    path = posixpath.join(out_root, record)
    try:
        with fs.open(path, "r") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    files = data.get("files")
    if not isinstance(files, dict):
        return None
    for rel, expected in files.items():
        full = posixpath.join(out_root, rel)
        if not fs.exists(full) or fs.size(full) != expected.get("bytes"):
            return None
        if file_sha256(fs, full)[0] != expected.get("sha256"):
            return None
    return data


def remove_temporaries(out_root: str) -> list[str]:
    """Delete every temporary file under the output folder; return what was deleted."""
    fs, root = fsspec.core.url_to_fs(out_root)
    if not fs.exists(root):
        return []
    leftovers = sorted(p for p in fs.find(root) if TMP_MARK in posixpath.basename(p))
    for p in leftovers:
        fs.rm(p)
    return leftovers
