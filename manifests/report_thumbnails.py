"""Small JPEG thumbnails of samples, as data: URIs, for the report.

Where a sample's bytes are, in order of preference:
- kept samples: their member `<key_in_shard>.<ext>` in OUT/<shard> (what training will see);
- rows of a run in progress (intermediate records): their own `image_path` / offset / size;
- dropped samples: the source, from the run's config.yaml (the manifest has no absolute paths and _work/ is
  gone after a run): a folder source's file `<path>/<source_key>`; a tar source's member `<key>` of the
  tar named by `<tar name>/<key>`; a table source's row (`<file>:<row>`, or the row whose `key_column`
  equals the key), whose image column holds bytes or a path relative to the table. URLs are not fetched.
Anything else gets a Thumb with the reason instead of an image. Decoding uses the pipeline's safe decode,
with the run's limits, so a hostile file costs no more here than in the run.
"""

from __future__ import annotations

import base64
import io
import posixpath
import tarfile
from typing import Any, Mapping

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from pydantic import ValidationError

from curation.config import DecodeConfig, SourceConfig
from curation.stage import Drop
from manifests.report_html import Thumb
from stages.decode import decode, read_bytes
from stages.ingest import IMAGE_EXTENSIONS
from stages.sources import expand_paths, source_kind

THUMB_PX = 128
JPEG_QUALITY = 82
Ref = dict[str, Any]  # image_path / image_offset / image_size, or image_bytes: what read_bytes takes


class Unavailable(Exception):
    """The sample's bytes cannot be found; the message says why, for the placeholder."""


def member_key(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member, by WebDataset's rule: the key ends at the file name's first dot."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem), ext.lower()


def image_members(tar_path: str) -> dict[str, Ref]:
    """Key -> reference of the first image member of each key in a tar."""
    found: dict[str, Ref] = {}
    with fsspec.open(tar_path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
        for m in tar:
            key, ext = member_key(m.name)
            if m.isfile() and ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS and key not in found:
                found[key] = {"image_path": tar_path, "image_offset": m.offset_data, "image_size": m.size}
    return found


def read_table_columns(path: str, columns: list[str]) -> pa.Table:
    with fsspec.open(path, "rb") as f:
        if path.endswith(".parquet"):
            return pq.read_table(f, columns=columns)
        table = pajson.read_json(f) if path.endswith((".jsonl", ".json")) else pacsv.read_csv(f)
    return table.select(columns)


def sources_from_config(config: Mapping[str, Any] | None) -> dict[str, SourceConfig]:
    """The run's sources by name; a source entry this version cannot read is left out (no thumbnails)."""
    sources = {}
    for entry in (config or {}).get("sources") or []:
        try:
            src = SourceConfig.model_validate(entry)
        except ValidationError:
            continue
        sources[src.name] = src
    return sources


def decode_limits(config: Mapping[str, Any] | None) -> DecodeConfig:
    try:
        return DecodeConfig.model_validate((config or {}).get("decode") or {})
    except ValidationError:
        return DecodeConfig()


def to_data_uri(data: bytes, limits: DecodeConfig, size: int) -> Thumb:
    rgb, _, _ = decode(data, limits.max_pixels, limits.timeout_s, draft_short_side=2 * size)
    rgb.thumbnail((size, size))
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=JPEG_QUALITY)
    return Thumb(f"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}", None, *rgb.size)


class Thumbnailer:
    """Row -> Thumb, with the tar listings, tables and thumbnails it has seen cached."""

    def __init__(
        self, out: str, sources: Mapping[str, SourceConfig], limits: DecodeConfig | None = None, size: int = THUMB_PX
    ):
        self.out = out.rstrip("/")
        self.sources = dict(sources)
        self.limits = limits or DecodeConfig()
        self.size = size
        self._tars: dict[str, dict[str, Ref]] = {}
        self._tables: dict[tuple[str, str], pa.Table] = {}
        self._source_files: dict[str, list[str]] = {}
        self._thumbs: dict[str, Thumb] = {}

    @classmethod
    def for_run(cls, out: str, config: Mapping[str, Any] | None, size: int = THUMB_PX) -> Thumbnailer:
        return cls(out, sources_from_config(config), decode_limits(config), size)

    def __call__(self, row: Mapping[str, Any]) -> Thumb:
        cache_key = row.get("sample_id") or f"{row.get('source')}/{row.get('source_key')}"
        if cache_key not in self._thumbs:
            self._thumbs[cache_key] = self._make(row)
        return self._thumbs[cache_key]

    def _make(self, row: Mapping[str, Any]) -> Thumb:
        try:
            data = read_bytes(self.locate(row), self.limits.max_bytes)
            return to_data_uri(data, self.limits, self.size)
        except Unavailable as e:
            return Thumb(reason=str(e))
        except Drop as d:
            return Thumb(reason=f"cannot show: {d.reason}")
        except (OSError, tarfile.TarError, pa.ArrowException) as e:
            return Thumb(reason=f"cannot read: {type(e).__name__}")

    def locate(self, row: Mapping[str, Any]) -> Ref:
        if row.get("shard") and row.get("key_in_shard"):
            return self._member(posixpath.join(self.out, row["shard"]), row["key_in_shard"])
        if row.get("image_path"):
            return {k: row.get(k) for k in ("image_path", "image_offset", "image_size")}
        src = self.sources.get(row.get("source") or "")
        if src is None:
            raise Unavailable("source not in config.yaml")
        if src.text_only:
            raise Unavailable("text-only source")
        kind = source_kind(src)
        key = row.get("source_key") or ""
        if kind == "folder":
            return self._folder_file(src, key)
        if kind == "webdataset":
            tar_name, _, member = key.partition("/")
            return self._member(self._source_file(src, tar_name), member)
        return self._table_row(src, key)

    def _member(self, tar_path: str, key: str) -> Ref:
        if tar_path not in self._tars:
            self._tars[tar_path] = image_members(tar_path)
        ref = self._tars[tar_path].get(key)
        if ref is None:
            raise Unavailable(f"no image member {key!r} in {posixpath.basename(tar_path)}")
        return ref

    @staticmethod
    def _folder_file(src: SourceConfig, key: str) -> Ref:
        rel = posixpath.normpath(key)
        if posixpath.isabs(rel) or rel == ".." or rel.startswith("../"):
            raise Unavailable("key outside the source folder")
        return {"image_path": posixpath.join(src.path, rel)}

    def _files(self, src: SourceConfig) -> list[str]:
        if src.name not in self._source_files:
            self._source_files[src.name] = expand_paths(src.path)
        return self._source_files[src.name]

    def _source_file(self, src: SourceConfig, name: str) -> str:
        """The file of a tar or table source whose base name is `name` (keys name files by base name)."""
        match = [f for f in self._files(src) if posixpath.basename(f) == name]
        if not match:
            raise Unavailable(f"source file {name!r} not found")
        return match[0]

    def _table_row(self, src: SourceConfig, key: str) -> Ref:
        if not src.image_column:
            raise Unavailable("table source without an image column")
        if src.key_column:
            for path in self._files(src):
                table = self._table(path, [src.key_column, src.image_column])
                keys = [str(k) for k in table[src.key_column].to_pylist()]
                if key in keys:
                    return self._cell_ref(path, table[src.image_column][keys.index(key)].as_py())
            raise Unavailable("row key not found in the table")
        name, _, index = key.rpartition(":")
        if not index.isdigit():
            raise Unavailable("table key is not <file>:<row>")
        path = self._source_file(src, name)
        table = self._table(path, [src.image_column])
        if int(index) >= table.num_rows:
            raise Unavailable("row no longer in the table")
        return self._cell_ref(path, table[src.image_column][int(index)].as_py())

    def _table(self, path: str, columns: list[str]) -> pa.Table:
        cache_key = (path, ",".join(columns))
        if cache_key not in self._tables:
            self._tables[cache_key] = read_table_columns(path, columns)
        return self._tables[cache_key]

    @staticmethod
    def _cell_ref(table_path: str, value: Any) -> Ref:
        if isinstance(value, (bytes, bytearray)):
            return {"image_bytes": bytes(value)}
        if not isinstance(value, str) or not value:
            raise Unavailable("no image in the row")
        if "://" in value and not value.startswith("file://"):
            raise Unavailable("remote image (not fetched)")
        absolute = "://" in value or posixpath.isabs(value)
        return {"image_path": value if absolute else posixpath.join(posixpath.dirname(table_path), value)}
