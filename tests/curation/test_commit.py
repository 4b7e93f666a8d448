"""Completion records: a unit is done only while every file it names still has its checksum."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.commit import (
    TMP_MARK, ParquetStream, commit_unit, finished_unit, remove_temporaries, write_atomically,
)  # fmt: skip


def test_a_committed_unit_is_finished_until_a_file_changes_or_goes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"x" * 100)
    (tmp_path / "y.bin").write_bytes(b"y")
    record = commit_unit(str(tmp_path), "a/x.done.json", ["a/x.bin", "y.bin"], rows=3)
    assert record["rows"] == 3 and set(record["files"]) == {"a/x.bin", "y.bin"}
    assert finished_unit(str(tmp_path), "a/x.done.json") == record

    (tmp_path / "a" / "x.bin").write_bytes(b"x" * 99 + b"z")  # same size, other bytes
    assert finished_unit(str(tmp_path), "a/x.done.json") is None
    (tmp_path / "a" / "x.bin").write_bytes(b"x" * 100)
    (tmp_path / "y.bin").unlink()
    assert finished_unit(str(tmp_path), "a/x.done.json") is None


@pytest.mark.parametrize("content", [None, "", "{not json", json.dumps({"rows": 1})])
def test_missing_or_damaged_records_mean_not_done(tmp_path, content):
    if content is not None:
        (tmp_path / "u.done.json").write_text(content)
    assert finished_unit(str(tmp_path), "u.done.json") is None


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_atomically(str(tmp_path / "d" / "out.bin"), fail)
    assert [p.name for p in (tmp_path / "d").iterdir()] == []


def test_remove_temporaries_deletes_only_temporaries(tmp_path):
    (tmp_path / "s").mkdir()
    keep = [tmp_path / "s" / "000001.tar", tmp_path / "run.json"]
    leftovers = [tmp_path / "s" / f"000002.tar{TMP_MARK}123-abcd", tmp_path / f"run.json{TMP_MARK}9-ff"]
    for p in keep + leftovers:
        p.write_bytes(b"1")
    removed = remove_temporaries(str(tmp_path))
    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert all(p.exists() for p in keep) and not any(p.exists() for p in leftovers)


def test_a_parquet_stream_appears_only_when_closed_and_leaves_nothing_when_aborted(tmp_path):
    schema = pa.schema([("x", pa.int64())])
    done = ParquetStream(str(tmp_path / "a" / "done.parquet"), schema)
    for i in range(3):
        done.write(pa.table({"x": [i, i]}))
    assert not (tmp_path / "a" / "done.parquet").exists()
    done.close()
    f = pq.ParquetFile(tmp_path / "a" / "done.parquet")
    assert f.read().column("x").to_pylist() == [0, 0, 1, 1, 2, 2] and f.metadata.num_row_groups == 3
    dropped = ParquetStream(str(tmp_path / "a" / "dropped.parquet"), schema)
    dropped.write(pa.table({"x": [1]}))
    dropped.abort()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["done.parquet"]
