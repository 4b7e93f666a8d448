"""Find the units of ingest work (partitions) of each source, on the driver, before any work starts.

A partition is small and JSON-able: it names files, never holds bytes. A missing source path is an error
that names it, raised before Ray starts anything.
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass, field
from typing import Iterator

import fsspec
from braceexpand import braceexpand

from curation.config import SourceConfig

TABLE_EXTENSIONS = (".parquet", ".jsonl", ".json", ".csv")
SIDECAR_EXTENSIONS = (".txt", ".json")


class SourceError(ValueError):
    """A source that cannot be read at all (missing path, no files)."""


@dataclass
class Partition:
    source: str
    kind: str  # folder | table | webdataset
    files: list[str] = field(default_factory=list)
    root: str = ""  # folder sources: keys are paths relative to it
    index: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def source_kind(src: SourceConfig) -> str:
    if src.kind != "auto":
        return src.kind
    path = src.path.lower()
    if path.endswith(".tar") or ".tar{" in path:
        return "webdataset"
    if path.endswith(TABLE_EXTENSIONS):
        return "table"
    return "folder"


def expand_paths(pattern: str) -> list[str]:
    """Brace-expand and glob a path pattern; return the existing files in sorted order."""
    fs, _ = fsspec.core.url_to_fs(pattern)
    found: set[str] = set()
    for p in braceexpand(pattern):
        if any(c in p for c in "*?["):
            found.update(fs.glob(p))
        elif fs.exists(p):
            found.add(fs._strip_protocol(p))
    protocol = pattern.split("://")[0] + "://" if "://" in pattern else ""
    return sorted(protocol + p if protocol and "://" not in p else p for p in found)


def folder_groups(root: str) -> list[list[str]]:
    """Every file under root, grouped by stem so an image and its sidecar captions stay together."""
    fs, root_path = fsspec.core.url_to_fs(root)
    if not fs.isdir(root_path):
        raise SourceError(f"source folder does not exist: {root}")
    files = sorted(f for f in fs.find(root_path) if not posixpath.basename(f).startswith("."))
    groups: dict[str, list[str]] = {}
    for f in files:
        rel = posixpath.relpath(f, root_path)
        stem, _ = posixpath.splitext(rel)
        groups.setdefault(stem, []).append(rel)
    return [groups[k] for k in sorted(groups)]


def partitions_for(src: SourceConfig) -> Iterator[Partition]:
    kind = source_kind(src)
    if kind == "folder":
        groups = folder_groups(src.path)
        for i in range(0, len(groups), src.partition_size):
            chunk = [f for g in groups[i : i + src.partition_size] for f in g]
            yield Partition(src.name, kind, chunk, root=src.path)
        return
    files = expand_paths(src.path)
    if not files:
        raise SourceError(f"source {src.name!r}: no files match {src.path}")
    if kind == "webdataset" or src.key_column is None:
        check_unique_names(src, files)
    for f in files:
        yield Partition(src.name, kind, [f])


def check_unique_names(src: SourceConfig, files: list[str]) -> None:
    """Table row and tar sample keys start with their file's base name: two files sharing one would give
    different samples the same sample_id."""
    seen: dict[str, str] = {}
    for f in files:
        other = seen.setdefault(posixpath.basename(f), f)
        if other != f:
            raise SourceError(
                f"source {src.name!r}: {other} and {f} have the same file name, of which sample keys are made; "
                "make them two sources"
            )


def plan_partitions(sources: list[SourceConfig]) -> list[Partition]:
    """All partitions of all sources, numbered; fails before any work if a source is missing."""
    parts: list[Partition] = []
    for src in sources:
        found = list(partitions_for(src))
        if not found:
            raise SourceError(f"source {src.name!r} is empty: {src.path}")
        parts.extend(found)
    for i, p in enumerate(parts):
        p.index = i
    return parts
