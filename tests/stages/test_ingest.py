import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from curation import schema as rec
from curation.config import SourceConfig
from stages.ingest import IngestStage, clean_text
from stages.sources import SourceError, plan_partitions


def jpg(color=(200, 30, 30), size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def ingest(sources: list[SourceConfig]) -> list[dict]:
    stage = IngestStage(sources).bind(rec.record_schema())
    rows = []
    for p in plan_partitions(sources):
        rows.extend(stage.read_partition(p))
    return rows


def test_folder_pairs_images_with_sidecars_and_accounts_for_every_file(tmp_path: Path):
    (tmp_path / "a.jpg").write_bytes(jpg())
    (tmp_path / "a.txt").write_text("a red square\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.png").write_bytes(jpg())  # wrong extension: the decoder decides, not ingest
    (tmp_path / "sub" / "b.json").write_text(json.dumps({"caption": "from json", "url": "u"}))
    (tmp_path / "c.jpg").write_bytes(jpg())
    (tmp_path / "orphan.txt").write_text("no image")
    (tmp_path / "readme.pdf").write_bytes(b"%PDF")
    rows = ingest([SourceConfig(name="web", path=str(tmp_path), partition_size=2)])
    by_key = {r["source_key"]: r for r in rows}
    assert set(by_key) == {"a.jpg", "sub/b.png", "c.jpg", "orphan.txt", "readme.pdf"}
    assert by_key["a.jpg"]["caption"] == "a red square"
    assert by_key["sub/b.png"]["caption"] == "from json"
    assert by_key["c.jpg"]["caption"] is None
    assert by_key["orphan.txt"]["status"] == rec.DROPPED and by_key["orphan.txt"]["drop_reason"] == "orphan_caption"
    assert by_key["readme.pdf"]["status"] == rec.KEPT  # the decoder will give it its reason
    assert len({r["sample_id"] for r in rows}) == len(rows)


def test_sample_ids_are_stable_and_depend_on_source_and_key():
    a = rec.make_sample_id("web", "a.jpg")
    assert a == rec.make_sample_id("web", "a.jpg")
    assert a != rec.make_sample_id("laion", "a.jpg") and a != rec.make_sample_id("web", "b.jpg")


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_tables_with_relative_paths_urls_and_several_caption_columns(tmp_path: Path, fmt: str):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "x.jpg").write_bytes(jpg())
    rows = [
        {"url": "imgs/x.jpg", "alt": "", "title": "title caption"},
        {"url": "https://example.org/y.jpg", "alt": "alt caption", "title": "t"},
        {"url": "", "alt": "no image", "title": ""},
    ]
    table = pa.Table.from_pylist(rows)
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    src = SourceConfig(name="laion", path=str(tmp_path / f"*.{fmt}"), image_column="url", caption_column=["alt", "title"])
    out = ingest([src])
    assert [r["source_key"] for r in out] == [f"t.{fmt}:0", f"t.{fmt}:1", f"t.{fmt}:2"]
    assert out[0]["image_path"] == str(tmp_path / "imgs" / "x.jpg") and out[0]["caption"] == "title caption"
    assert out[1]["image_path"] == "https://example.org/y.jpg" and out[1]["caption"] == "alt caption"
    assert out[2]["drop_reason"] == "no_image"


def test_table_with_inline_bytes_and_text_only_source(tmp_path: Path):
    pq.write_table(pa.Table.from_pylist([{"image": jpg(), "caption": "bytes"}]), tmp_path / "b.parquet")
    pq.write_table(pa.Table.from_pylist([{"text": "just text"}]), tmp_path / "t.parquet")
    out = ingest([
        SourceConfig(name="b", path=str(tmp_path / "b.parquet")),
        SourceConfig(name="t", path=str(tmp_path / "t.parquet"), caption_column="text", text_only=True, image_column=None),
    ])  # fmt: skip
    assert out[0]["image_bytes"] == jpg() and out[0]["caption"] == "bytes"
    assert out[1]["caption"] == "just text" and out[1].get("image_path") is None and out[1]["status"] == rec.KEPT


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_tar_groups_non_contiguous_members_and_records_hostile_names(tmp_path: Path):
    write_tar(tmp_path / "000.tar", [
        ("s1.jpg", jpg((1, 2, 3))), ("s2.jpg", jpg((4, 5, 6))), ("s2.json", b'{"caption": "two"}'),
        ("s1.txt", b"one"), ("../evil.txt", b"escape"), ("/abs/path.jpg", jpg()), ("s1.jpg", jpg((9, 9, 9))),
        ("dir/s3.jpg", jpg()),
    ])  # fmt: skip
    write_tar(tmp_path / "001.tar", [("s9.jpg", jpg()), ("s9.txt", b"nine")])
    out = ingest([SourceConfig(name="old", path=str(tmp_path / "{000..001}.tar"), priority=3)])
    by_key = {r["source_key"]: r for r in out}
    s1 = by_key["000.tar/s1"]
    assert s1["caption"] == "one" and s1["image_size"] == len(jpg((1, 2, 3)))
    with open(tmp_path / "000.tar", "rb") as f:  # the offset points at the first s1.jpg's bytes
        f.seek(s1["image_offset"])
        assert f.read(s1["image_size"]) == jpg((1, 2, 3))
    assert by_key["000.tar/s2"]["caption"] == "two"
    assert by_key["000.tar/../evil"]["drop_reason"] == "no_image"
    assert by_key["000.tar//abs/path"]["status"] == rec.KEPT  # a name, never a path we write to
    assert by_key["000.tar/s1.jpg#dup1"]["drop_reason"] == "tar_member_collision"
    assert by_key["000.tar/dir/s3"]["status"] == rec.KEPT
    assert by_key["001.tar/s9"]["caption"] == "nine"
    assert len(out) == 7


def test_corrupt_tar_is_one_recorded_failure(tmp_path: Path):
    (tmp_path / "000.tar").write_bytes(b"this is not a tar" * 100)
    out = ingest([SourceConfig(name="old", path=str(tmp_path / "000.tar"))])
    assert len(out) == 1 and out[0]["drop_reason"] == "tar_read_error"


def test_missing_source_fails_before_work_naming_it(tmp_path: Path):
    with pytest.raises(SourceError, match="nowhere"):
        plan_partitions([SourceConfig(name="web", path=str(tmp_path / "nowhere"))])
    with pytest.raises(SourceError, match="nothing"):
        plan_partitions([SourceConfig(name="laion", path=str(tmp_path / "nothing*.parquet"))])


def test_clean_text_handles_invalid_utf8_and_nul():
    assert clean_text(b"ok \xff\xfe bad\x00") == "ok \ufffd\ufffd bad"
