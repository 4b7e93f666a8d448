import hashlib
import json
import tarfile
from pathlib import Path

import webdataset as wds

from curation import schema as rec
from curation.stage import Drop
from stages.shards import shards_for_bucket, write_shard


def rows(n: int) -> list[dict]:
    return [rec.new_record("s", f"k{i}", 1, caption=f"caption {i}", **{"quality.blur": float(i)}) for i in range(n)]


def fake_render(row):
    if row["source_key"] == "k3":
        raise Drop("truncated", error="cut short")
    if row["source_key"] == "k4":
        raise ValueError("boom")
    return row["sample_id"].encode(), "jpg"


def test_shard_is_deterministic_sorted_and_records_render_failures(tmp_path: Path):
    out_a, info_a = write_shard(rows(6)[::-1], str(tmp_path / "a"), "256x256", 7, fake_render, ["quality.blur"])
    out_b, info_b = write_shard(rows(6), str(tmp_path / "b"), "256x256", 7, fake_render, ["quality.blur"])
    tar_a = tmp_path / "a" / "shards" / "256x256" / "000007.tar"
    assert tar_a.read_bytes() == (tmp_path / "b" / info_b.shard).read_bytes()
    assert info_a.samples == 4 and info_a.sha256 == hashlib.sha256(tar_a.read_bytes()).hexdigest()
    assert not list((tmp_path / "a" / "shards" / "256x256").glob("*.tmp*"))
    by_key = {r["source_key"]: r for r in out_a}
    assert by_key["k3"]["drop_reason"] == "truncated" and by_key["k3"]["drop_stage"] == "shard"
    assert by_key["k4"]["drop_reason"] == "render_error" and "boom" in by_key["k4"]["error"]
    assert by_key["k0"]["shard"] == "shards/256x256/000007.tar" and by_key["k0"]["key_in_shard"] == by_key["k0"]["sample_id"]
    with tarfile.open(tar_a) as t:
        names = t.getnames()
        assert names == sorted(names) and all(m.mtime == 0 for m in t.getmembers())
    samples = list(wds.WebDataset(str(tar_a), shardshuffle=False))
    assert len(samples) == 4
    meta = json.loads(samples[0]["json"])
    assert meta["source"] == "s" and "quality.blur" in meta["scores"]
    assert samples[0]["txt"].decode().startswith("caption")


def test_text_shard_and_empty_shard(tmp_path: Path):
    out, info = write_shard(rows(2), str(tmp_path), "text", 0, None)
    assert info.samples == 2
    out, info = write_shard([], str(tmp_path), "text", 1, None)
    assert info is None and not (tmp_path / "shards" / "text" / "000001.tar").exists()


def test_shard_counts_and_assignment_are_stable():
    assert shards_for_bucket(2500, 100_000, 1000, 10**12) == 3
    assert shards_for_bucket(10, 100_000, 1000, 500_000) == 2  # the byte target wins
