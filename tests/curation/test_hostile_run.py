"""A hostile multi-source corpus through the whole pipeline: every input ends as one manifest row with its
reason, nothing is an internal error, and nothing is written outside the output folder."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hostile_files import (
    MB,
    RLO,
    encode,
    gif_many_frames,
    jpeg_broken_exif,
    jpeg_giant_exif,
    jpeg_many_exif_segments,
    noise,
    png_declaring,
    png_huge_text,
    png_many_text_chunks,
    png_ztxt_bomb,
    tar_bytes,
)

from curation.config import parse_config
from curation.pipeline import Pipeline
from manifests.reader import read_manifest

pytestmark = pytest.mark.slow

# Short, so the GIF that would take seconds proves the limit holds on Ray's workers; ample for the others.
TIMEOUT_S = 1.0
SHARD_MEMBER = re.compile(r"^[0-9a-f]{20}\.(jpg|webp|png|txt|json)$")  # <sample_id>.<ext>


def photo(seed: int) -> bytes:
    """A 512x512 image no quality filter drops and no other test image duplicates."""
    return encode(noise((512, 512), seed), "JPEG", quality=90)


def folder_source(root: Path) -> dict[str, str | None]:
    """Hostile images with sidecar captions; returns key -> expected drop reason (None: kept)."""
    files = {
        "empty.jpg": b"",
        "one_pixel.png": encode(noise((1, 1)), "PNG"), "one_pixel.txt": b"a single red pixel",
        "line.png": encode(noise((100_000, 1)), "PNG"), "line.txt": b"a very long thin line",
        "bomb.png": png_declaring(100_000, 100_000),
        "ztxt_bomb.png": png_ztxt_bomb(),
        "text_chunks.png": png_many_text_chunks(8),
        "huge_text.png": png_huge_text(5 * MB),
        "exif_segments.jpg": jpeg_many_exif_segments(80),
        "frames.gif": gif_many_frames(1_000_000),  # counting its frames takes seconds: past the time limit
        "broken_exif.jpg": jpeg_broken_exif((512, 512)), "broken_exif.txt": b"a photo with broken exif data",
        "giant_exif.jpg": jpeg_giant_exif((512, 512)), "giant_exif.txt": b"a photo carrying a giant exif block",
        "rlo.jpg": photo(1), "rlo.txt": f"a harmless {RLO}gpj.exe photo".encode(),
        "bytes.jpg": photo(2), "bytes.txt": b"invalid \xff\xfe bytes and a nul\x00 in a caption",
        "long.jpg": photo(3), "long.txt": b"word " * (MB // 5),
    }  # fmt: skip
    root.mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / b"bad\xff.jpg".decode("utf-8", "surrogateescape")).write_bytes(photo(4))
    return {
        "empty.jpg": "empty_file", "one_pixel.png": "image_too_small", "line.png": "image_too_small",
        "bomb.png": "too_many_pixels", "ztxt_bomb.png": "metadata_too_large", "text_chunks.png": "metadata_too_large",
        "huge_text.png": "metadata_too_large", "exif_segments.jpg": "metadata_too_large", "frames.gif": "decode_timeout",
        "broken_exif.jpg": None,
        "giant_exif.jpg": None, "rlo.jpg": None, "bytes.jpg": None, "long.jpg": "caption_too_long",
        "bad\\udcff.jpg": "bad_file_name",
    }  # fmt: skip


def tar_source(root: Path) -> dict[str, str | None]:
    root.mkdir()
    (root / "000.tar").write_bytes(tar_bytes([
        ("ok.jpg", photo(5)), ("ok.txt", b"a fine photo from a tar"),
        ("../escape.jpg", photo(6)), ("../escape.txt", b"a member that tries to climb out"),
        ("/etc/absolute.jpg", photo(7)), ("/etc/absolute.txt", b"a member with an absolute name"),
        ("dup.jpg", photo(8)), ("dup.txt", b"the first of three members named alike"),
        ("dup.jpg", photo(9)), ("dup.jpg", photo(10)),
        ("long.jpg", photo(11)), ("long.txt", b"y" * MB),
    ]))  # fmt: skip
    return {
        "000.tar/ok": None, "000.tar/../escape": None, "000.tar//etc/absolute": None, "000.tar/dup": None,
        "000.tar/dup.jpg#dup1": "tar_member_collision", "000.tar/dup.jpg#dup2": "tar_member_collision",
        "000.tar/long": "caption_too_long",
    }  # fmt: skip


def table_source(root: Path) -> dict[str, str | None]:
    root.mkdir()
    rows = [
        ("r1", photo(12), f"a table photo {RLO}with an override\x00", None),
        ("r2", photo(13), "z" * MB, None),
        ("r3", photo(14), None, b"raw caption \xff bytes of a table photo"),
        ("r1", photo(15), "a second row with the first key", None),
    ]
    table = pa.table({name: list(col) for name, col in zip(("id", "image", "caption", "raw"), zip(*rows))})
    pq.write_table(table, root / "t.parquet")
    return {"r1": None, "r2": "caption_too_long", "r3": None, "r1#dup1": "duplicate_key"}


def listing(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_hostile_corpus_through_the_pipeline(tmp_path: Path, ray_session):
    expected = {
        "web": folder_source(tmp_path / "web"),
        "old": tar_source(tmp_path / "old"),
        "laion": table_source(tmp_path / "laion"),
    }
    out = tmp_path / "out"
    cfg = parse_config({
        "sources": [
            {"name": "web", "path": str(tmp_path / "web")},
            {"name": "old", "path": str(tmp_path / "old" / "000.tar")},
            {"name": "laion", "path": str(tmp_path / "laion" / "t.parquet"), "key_column": "id",
             "caption_column": ["caption", "raw"]},
        ],
        "output": str(out),
        "decode": {"timeout_s": TIMEOUT_S},
    })  # fmt: skip
    before = listing(tmp_path)
    result = Pipeline(cfg, log=lambda s: None).run()

    rows = read_manifest(cfg.output).to_pylist()
    got = {(r["source"], r["source_key"]): r for r in rows}
    assert len(got) == len(rows) == len({r["sample_id"] for r in rows})
    want = {(source, key): reason for source, keys in expected.items() for key, reason in keys.items()}
    assert set(got) == set(want)
    mismatched = {k: (got[k]["drop_stage"], got[k]["drop_reason"], got[k]["error"]) for k in want
                  if got[k]["drop_reason"] != want[k]}  # fmt: skip
    assert not mismatched
    for source, counts in result.summary["per_source"].items():
        assert counts["in"] == counts["kept"] + counts["dropped"] == len(expected[source])

    assert got[("web", "rlo.jpg")]["caption"] == "a harmless gpj.exe photo"
    assert got[("web", "bytes.jpg")]["caption"] == "invalid \ufffd\ufffd bytes and a nul in a caption"
    assert got[("laion", "r1")]["caption"] == "a table photo with an override"

    created = listing(tmp_path) - before
    assert created and all(p == out or out in p.parents for p in created)
    assert not Path("/etc/absolute.jpg").exists()
    in_shards = set()
    for shard in out.glob("shards/*/*.tar"):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            assert all(SHARD_MEMBER.match(n) for n in names), names
            metas = [json.load(tar.extractfile(n)) for n in names if n.endswith(".json")]
        in_shards.update((m["source"], m["source_key"]) for m in metas)
    assert in_shards == {k for k, reason in want.items() if reason is None}
