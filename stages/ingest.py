"""Ingest: turn one partition into records that point at their bytes.

Readers never load pixels; a record holds a path (and an offset inside a tar) so bytes travel once, from
the file to the stage that decodes them. Every input becomes a record: a file that is not an image gets
one too, with a reason.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from typing import Any, Iterator

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curation import schema as rec
from curation.config import SourceConfig
from curation.stage import Stage
from stages.sources import SIDECAR_EXTENSIONS, Partition

IMAGE_EXTENSIONS = {
    "jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jp2", "j2k", "jpx", "avif", "heic", "heif",
    "ppm", "pgm", "pbm", "pnm", "tga", "ico", "psd", "dds", "pcx", "sgi", "xbm", "fli", "blp", "apng", "pfm",
}  # fmt: skip
TEXT_EXTENSIONS = ("txt", "caption", "text")
INGEST = "ingest"
# Past this a caption is no description, and every caption stage after ingest (PII, scores, blocklist,
# MinHash) costs time in proportion to it: 1 MiB took 5 s through them, 64 KiB 0.2 s.
MAX_CAPTION_BYTES = 64 * 2**10
# A JSON sidecar carries more than the caption (img2dataset's url, EXIF...), so it may be larger.
MAX_SIDECAR_BYTES = 2**20
# Removed from captions: C0/C1 controls other than tab and line breaks, the bidi embeddings, overrides and
# isolates that make text display in another order than it reads (U+202E turns "gpj.exe" around), and BOMs.
INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufeff]")
# Lone surrogates (JSON's "\ud800") are not text: Arrow refuses to store them.
SURROGATE = re.compile("[\ud800-\udfff]")


class CaptionTooLong(Exception):
    """A caption past MAX_CAPTION_BYTES (or a JSON sidecar past MAX_SIDECAR_BYTES), with its size in bytes."""

    def __init__(self, size: int):
        super().__init__(f"{size} bytes")
        self.size = size


def clean_text(raw: bytes | str | None) -> str | None:
    """A caption as valid UTF-8 with no control or bidi-override characters; undecodable bytes and lone
    surrogates become U+FFFD rather than an error. Raises CaptionTooLong past MAX_CAPTION_BYTES."""
    if raw is None:
        return None
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogatepass")
    if len(data) > MAX_CAPTION_BYTES:
        raise CaptionTooLong(len(data))
    text = data.decode("utf-8", errors="replace") if isinstance(raw, bytes) else SURROGATE.sub("\ufffd", str(raw))
    return INVISIBLE.sub("", text).strip()


def caption_from_json(meta: Any, keys: list[str]) -> str | None:
    if not isinstance(meta, dict):
        return None
    for k in [*keys, "caption", "text", "TEXT", "alt"]:
        v = meta.get(k)
        if isinstance(v, str) and v.strip():
            return clean_text(v)
    return None


def read_caption(f, is_json: bool, keys: list[str], size: int | None = None) -> str | None:
    """The caption in a sidecar file or a tar's text member; CaptionTooLong without reading past the limit."""
    limit = MAX_SIDECAR_BYTES if is_json else MAX_CAPTION_BYTES
    data = f.read(limit + 1)
    if len(data) > limit:
        raise CaptionTooLong(size or len(data))
    if not is_json:
        return clean_text(data)
    try:
        meta = json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # a JSON sidecar nested deep enough exhausts the parser's stack
        return None
    return caption_from_json(meta, keys)


class IngestStage(Stage):
    """Partition descriptions in, records out (one per input sample)."""

    name = INGEST

    def __init__(self, sources: list[SourceConfig]):
        super().__init__()
        self.sources = {s.name: s for s in sources}

    def process(self, batch: pa.Table) -> pa.Table:
        assert self.schema is not None
        rows: list[dict] = []
        for desc in batch.column("partition").to_pylist():
            part = Partition(**json.loads(desc))
            rows.extend(self.read_partition(part))
        return rec.to_table(rows, self.schema)

    def read_partition(self, part: Partition) -> Iterator[dict]:
        src = self.sources[part.source]
        reader = {"folder": read_folder, "table": read_table, "webdataset": read_tar}[part.kind]
        for row in reader(part, src):
            yield row if _is_text(row["source_key"]) and _is_text(row.get("image_path")) else _misnamed(src, row)


def _is_text(name: str | None) -> bool:
    """File and tar member names are bytes that Python decodes with surrogate escapes; Arrow stores only UTF-8."""
    return name is None or not SURROGATE.search(name)


def _misnamed(src: SourceConfig, row: dict) -> dict:
    key = row["source_key"].encode("utf-8", "backslashreplace").decode("utf-8")
    return _failed(src, key, "bad_file_name", "the file or member name is not valid UTF-8")


def _record(src: SourceConfig, key: str, **fields: Any) -> dict:
    return rec.new_record(src.name, key, src.priority, **fields)


def _failed(src: SourceConfig, key: str, reason: str, error: str | None = None, value: float | None = None) -> dict:
    row = _record(src, key)
    rec.drop(row, INGEST, reason, value, error)
    return row


def _too_long(src: SourceConfig, key: str, e: CaptionTooLong) -> dict:
    return _failed(src, key, "caption_too_long", f"caption of {e.size} bytes, more than ingest reads", float(e.size))


def _ext(path: str) -> str:
    return posixpath.splitext(path)[1].lower().lstrip(".")


def read_folder(part: Partition, src: SourceConfig) -> Iterator[dict]:
    fs, root = fsspec.core.url_to_fs(part.root)
    groups: dict[str, list[str]] = {}
    for rel in part.files:
        groups.setdefault(posixpath.splitext(rel)[0], []).append(rel)
    for stem in sorted(groups):
        members = groups[stem]
        sidecars = [m for m in members if posixpath.splitext(m)[1].lower() in SIDECAR_EXTENSIONS]
        others = [m for m in members if m not in sidecars]
        try:
            caption = _sidecar_caption(fs, root, sidecars, src)
        except CaptionTooLong as e:
            # The rows the group would have had: its images, else its text sample or its orphan captions.
            yield from (_too_long(src, m, e) for m in others or (sidecars[:1] if src.text_only else sidecars))
            continue
        if not others:
            if src.text_only and caption is not None:
                yield _record(src, sidecars[0], caption=caption, caption_original=caption)
            else:
                for s in sidecars:
                    yield _failed(src, s, "orphan_caption", "a caption file with no image beside it")
            continue
        for rel in others:
            yield _record(
                src, rel, caption=caption, caption_original=caption,
                image_path=fs.unstrip_protocol(posixpath.join(root, rel)) if "://" in part.root
                else posixpath.join(root, rel),
            )  # fmt: skip


def _sidecar_caption(fs, root: str, sidecars: list[str], src: SourceConfig) -> str | None:
    for rel in sorted(sidecars, key=lambda s: (not s.lower().endswith(".txt"), s)):
        is_json = not rel.lower().endswith(".txt")
        try:
            with fs.open(posixpath.join(root, rel), "rb") as f:
                text = read_caption(f, is_json, src.caption_columns, getattr(f, "size", None))
        except OSError:
            continue
        if text is not None or not is_json:
            return text
    return None


def _read_table_file(path: str) -> pa.Table:
    with fsspec.open(path, "rb") as f:
        if path.endswith(".parquet"):
            return pq.read_table(f)
        if path.endswith((".jsonl", ".json")):
            return pajson.read_json(f)
        return pacsv.read_csv(f)


def read_table(part: Partition, src: SourceConfig) -> Iterator[dict]:
    path = part.files[0]
    base = posixpath.dirname(path)
    try:
        table = _read_table_file(path)
    except Exception as e:  # noqa: BLE001 - an unreadable table is one recorded failure
        yield _failed(src, posixpath.basename(path), "table_read_error", str(e)[:500])
        return
    cols = table.column_names
    missing = [c for c in [*([] if src.text_only else [src.image_column]), src.key_column] if c and c not in cols]
    if missing or not any(c in cols for c in src.caption_columns):
        detail = f"missing columns {missing or src.caption_columns}; table has {cols}"
        yield _failed(src, posixpath.basename(path), "table_schema_error", detail)
        return
    name = posixpath.basename(path)
    seen: dict[str, int] = {}
    for i, r in enumerate(table.to_pylist()):
        key = str(r[src.key_column]) if src.key_column else f"{name}:{i}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            yield _failed(src, f"{key}#dup{seen[key] - 1}", "duplicate_key", f"{src.key_column} {key!r} again in row {i}")
            continue
        try:
            caption = next((clean_text(r[c]) for c in src.caption_columns if r.get(c)), None)
        except CaptionTooLong as e:
            yield _too_long(src, key, e)
            continue
        fields: dict[str, Any] = {"caption": caption, "caption_original": caption}
        image = r.get(src.image_column) if src.image_column else None
        if isinstance(image, (bytes, bytearray)):
            fields["image_bytes"] = bytes(image)
        elif isinstance(image, str) and image:
            fields["image_path"] = image if ("://" in image or posixpath.isabs(image)) else posixpath.join(base, image)
        elif not src.text_only:
            yield _failed(src, key, "no_image", f"empty {src.image_column!r}")
            continue
        yield _record(src, key, **fields)


def read_tar(part: Partition, src: SourceConfig) -> Iterator[dict]:
    """Group a tar's members by sample key (webdataset rules), wherever they sit in the tar."""
    path = part.files[0]
    tar_name = posixpath.basename(path)
    members: dict[str, dict[str, tarfile.TarInfo]] = {}
    collisions: list[str] = []
    error = None
    with fsspec.open(path, "rb") as f:
        try:
            with tarfile.open(fileobj=f, mode="r:") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    key, ext = _split_member(m.name)
                    slot = members.setdefault(key, {})
                    if ext in slot:
                        collisions.append(m.name)
                        continue
                    slot[ext] = m
                texts = {k: _read_texts(tar, v, src) for k, v in members.items()}
        except Exception as e:  # noqa: BLE001 - tarfile raises more than TarError on hostile headers
            error = f"{type(e).__name__}: {e}"
            texts = {}
    if error is not None:
        # Samples before the damage cannot be told apart from those after it: one row for the tar.
        yield _failed(src, tar_name, "tar_read_error", error[:500])
        return
    for key in sorted(members):
        exts = members[key]
        skey = f"{tar_name}/{key}"
        caption = texts.get(key)
        if isinstance(caption, CaptionTooLong):
            yield _too_long(src, skey, caption)
            continue
        image_ext = next((e for e in sorted(exts) if e.split(".")[-1] in IMAGE_EXTENSIONS), None)
        if image_ext is None:
            if src.text_only and caption is not None:
                yield _record(src, skey, caption=caption, caption_original=caption)
            else:
                yield _failed(src, skey, "no_image", f"members: {sorted(exts)}")
            continue
        m = exts[image_ext]
        yield _record(src, skey, caption=caption, caption_original=caption, image_path=path,
                      image_offset=m.offset_data, image_size=m.size)  # fmt: skip
    repeats: dict[str, int] = {}
    for name in collisions:
        repeats[name] = repeats.get(name, 0) + 1
        # Numbered, so that a name that comes three times still gives every row its own sample_id.
        yield _failed(src, f"{tar_name}/{name}#dup{repeats[name]}", "tar_member_collision",
                      f"member {name!r} again, copy {repeats[name] + 1}")  # fmt: skip


def _split_member(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem), ext.lower()


def _read_texts(
    tar: tarfile.TarFile, exts: dict[str, tarfile.TarInfo], src: SourceConfig
) -> str | CaptionTooLong | None:
    """The caption of one tar sample; a CaptionTooLong is returned, not raised, so the tar reads on."""
    ext = next((e for e in (*TEXT_EXTENSIONS, "json") if e in exts), None)
    data = tar.extractfile(exts[ext]) if ext else None
    if data is None:
        return None
    try:
        return read_caption(data, ext == "json", src.caption_columns, exts[ext].size)
    except CaptionTooLong as e:
        return e
