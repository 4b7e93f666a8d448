"""Publish's pieces without Ray: scatter groups and the place unit's per-bucket writers."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curation import publish
from curation import schema as rec
from curation.publish import _BucketWriters, placed_file, scatter_groups


def _rows(n: int, buckets: list[str]) -> list[dict]:
    rows = sorted((rec.new_record("src", f"k{i}", 1, caption=f"caption {i}") for i in range(n)),
                  key=lambda r: r["sample_id"])  # fmt: skip
    for i, r in enumerate(rows):
        if i % 5 == 0:
            rec.drop(r, "bucket", "crop_too_large")
        r["bucket"] = buckets[i % len(buckets)]
        r["image_path"] = f"/x/{i}.jpg"
    return rows


def test_bucket_writers_split_kept_rows_by_bucket_in_order_and_drop_byte_references(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(publish, "PLACED_ROW_GROUP", 7)
    schema = rec.record_schema()
    rows = _rows(200, ["256x256", "512x256", "text"])
    writers = _BucketWriters(str(tmp_path), "unit", schema, rec.manifest_schema(schema))
    for i in range(0, len(rows), 9):
        writers.add(rec.to_table(rows[i : i + 9], schema))
    files, counts = writers.close()
    assert files == [placed_file("unit", n) for n in ("256x256", "512x256", "dropped", "text")]
    kept = [r for r in rows if r["status"] == rec.KEPT]
    assert counts == {b: sum(r["bucket"] == b for r in kept) for b in ("256x256", "512x256", "text")}
    for bucket in counts:
        f = pq.ParquetFile(tmp_path / placed_file("unit", bucket))
        ids = f.read().column("sample_id").to_pylist()
        assert ids == [r["sample_id"] for r in kept if r["bucket"] == bucket]  # sorted, as they came
        assert max(f.metadata.row_group(g).num_rows for g in range(f.metadata.num_row_groups)) <= 7 + 9
    dropped = pq.read_table(tmp_path / placed_file("unit", "dropped"))
    assert dropped.column("sample_id").to_pylist() == [r["sample_id"] for r in rows if r["status"] != rec.KEPT]
    assert "image_path" not in dropped.column_names
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_bucket_writers_flush_the_largest_buffer_past_the_byte_budget(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(publish, "BUFFER_BYTES", 2000)
    schema = rec.record_schema()
    rows = _rows(60, ["256x256", "512x256"])
    writers = _BucketWriters(str(tmp_path), "unit", schema, rec.manifest_schema(schema))
    for i in range(0, len(rows), 4):
        writers.add(rec.to_table(rows[i : i + 4], schema))
        assert writers.buffered_bytes.total() <= 2000
    writers.close()
    assert pq.read_table(tmp_path / placed_file("unit", "256x256")).num_rows == sum(
        r["status"] == rec.KEPT and r["bucket"] == "256x256" for r in rows)


def test_an_empty_range_still_writes_its_dropped_file(tmp_path: Path):
    schema = rec.record_schema()
    writers = _BucketWriters(str(tmp_path), "unit", schema, rec.manifest_schema(schema))
    files, counts = writers.close()
    assert files == [placed_file("unit", "dropped")] and counts == {}
    assert pq.read_table(tmp_path / files[0]).num_rows == 0


def test_scatter_groups_cut_consecutive_files_at_about_range_rows():
    groups = scatter_groups([(0, 5), (1, 5), (2, 5), (3, 20), (4, 1)], range_rows=10)
    assert groups == [["_work/records/part-00000.parquet", "_work/records/part-00001.parquet"],
                      ["_work/records/part-00002.parquet"], ["_work/records/part-00003.parquet"],
                      ["_work/records/part-00004.parquet"]]  # fmt: skip
    assert sum(len(g) for g in scatter_groups([(i, 3) for i in range(50)], range_rows=10)) == 50


def test_placed_rows_are_the_records_with_their_decisions_in_order():
    table = pa.table({"sample_id": ["a1", "b2", "c3"], "dup_cluster": pa.array([None, None, None], pa.string())})
    decisions = pa.table({"sample_id": ["b2"], "drop_reason": ["dup_exact"], "duplicate_of": ["a1"],
                          "dup_cluster": ["k"]})  # fmt: skip
    out = publish._with_decisions(table, decisions)
    assert out.column("sample_id").to_pylist() == ["a1", "b2", "c3"]
    assert out.column("dup_reason").to_pylist() == [None, "dup_exact", None]
    assert out.column("dup_of").to_pylist() == [None, "a1", None]
    assert out.column("dup_cluster").to_pylist() == [None, "k", None]


def test_a_shard_whose_ranges_hold_none_of_its_bucket_reads_no_file(tmp_path: Path):
    schema = rec.record_schema()
    empty = publish._read_where(str(tmp_path), [], publish._in_id_range("4", "8"), schema)
    assert empty.num_rows == 0 and empty.schema == schema


def test_reading_a_range_keeps_its_ids_and_the_asked_columns(tmp_path: Path):
    schema = rec.record_schema()
    rows = _rows(300, ["256x256"])
    pq.write_table(rec.to_table(rows, schema), tmp_path / "a.parquet", row_group_size=16)
    lo, hi = rec.id_range_bounds(1, 3)
    manifest = rec.manifest_schema(schema)
    got = publish._read_where(str(tmp_path), ["a.parquet"], publish._in_id_range(lo, hi), manifest)
    assert got.column("sample_id").to_pylist() == [r["sample_id"] for r in rows if rec.id_range(r["sample_id"], 3) == 1]
    assert got.schema == manifest
