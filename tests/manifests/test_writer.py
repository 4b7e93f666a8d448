from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation import schema as rec
from manifests.inspect import format_summary, summarize
from manifests.reader import read_manifest
from manifests.writer import ManifestWriter


def test_parts_have_fixed_sizes_and_every_reader_agrees(tmp_path: Path):
    schema = rec.manifest_schema(rec.record_schema({"quality.blur": pa.float64()}))
    rows = [rec.new_record("a" if i % 3 else "b", f"k{i}", 1) for i in range(25)]
    for r in rows[:7]:
        rec.drop(r, "decode", "truncated")
    rows.sort(key=lambda r: r["sample_id"])
    w = ManifestWriter(str(tmp_path), schema, rows_per_part=10)
    for i in range(0, 25, 4):
        w.add(rec.to_table(rows[i : i + 4], schema))
    parts = w.close()
    assert parts == [f"manifest/part-0000{i}.parquet" for i in range(3)]
    table = read_manifest(str(tmp_path))
    assert table.num_rows == 25 and table.column("sample_id").to_pylist() == [r["sample_id"] for r in rows]
    assert len(pd.read_parquet(tmp_path / "manifest")) == 25
    n = duckdb.sql(f"select count(*) from '{tmp_path}/manifest/*.parquet' where status = 'dropped'").fetchall()[0][0]
    assert n == 7
    s = summarize(table)
    assert s["inputs"] == 25 and s["kept"] == 18 and s["dropped"] == 7
    for src, c in s["per_source"].items():
        assert c["in"] == c["kept"] + c["dropped"]
    assert s["dropped_by_reason"] == [{"drop_stage": "decode", "drop_reason": "truncated", "count": 7}]
    assert "truncated" in format_summary(s)


def test_empty_manifest_still_writes_one_part(tmp_path: Path):
    schema = rec.manifest_schema(rec.record_schema())
    assert ManifestWriter(str(tmp_path), schema).close() == ["manifest/part-00000.parquet"]
    assert read_manifest(str(tmp_path)).num_rows == 0


def test_batching_does_not_change_a_byte(tmp_path: Path):
    """Parts and row groups are cut by row count alone: any batching of the same rows gives the same files."""
    schema = rec.manifest_schema(rec.record_schema())
    rows = sorted((rec.new_record("a", f"k{i}", 1) for i in range(25)), key=lambda r: r["sample_id"])
    outputs = []
    for step in (1, 4, 25):
        out = tmp_path / str(step)
        w = ManifestWriter(str(out), schema, rows_per_part=10, rows_per_group=3)
        for i in range(0, 25, step):
            w.add(rec.to_table(rows[i : i + step], schema))
        assert w.close() == [f"manifest/part-0000{i}.parquet" for i in range(3)]
        outputs.append([(p.name, p.read_bytes()) for p in sorted((out / "manifest").iterdir())])
    assert outputs[0] == outputs[1] == outputs[2]
    assert [pq.ParquetFile(tmp_path / "4" / "manifest" / f"part-0000{i}.parquet").metadata.num_row_groups
            for i in range(3)] == [4, 4, 2]  # 10 rows in groups of 3: 3+3+3+1; then 3+2  # fmt: skip
