"""The whole pipeline on an embedded Ray: every input accounted for, shards readable, outputs reproducible."""

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from curation.config import parse_config
from curation.demo_corpus import generate
from curation.pipeline import OutputExistsError, Pipeline
from manifests.reader import read_manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("demo")
    data = generate(root / "corpus", n_images=12, seed=1)
    data["output"] = str(root / "out")
    cfg = parse_config(data)
    result = Pipeline(cfg, log=lambda s: None).run()
    return root, cfg, result


def test_every_input_is_in_the_manifest_once(demo_run):
    root, cfg, result = demo_run
    table = read_manifest(cfg.output)
    ids = table.column("sample_id").to_pylist()
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    web_files = [p for p in (root / "corpus" / "web").iterdir() if p.suffix not in (".txt", ".json")]
    laion_rows = pq.read_table(root / "corpus" / "laion" / "laion.parquet").num_rows
    per_source = result.summary["per_source"]
    assert per_source["web"]["in"] == len(web_files)
    assert per_source["laion"]["in"] == laion_rows
    truth = json.loads((root / "corpus" / "ground_truth.json").read_text())
    old_keys = {k for keys in truth.values() for k in keys if k.startswith("old/")}
    assert per_source["old"]["in"] == len(old_keys) == 6  # odd base images 1..11, all in tar 000
    for counts in per_source.values():
        assert counts["in"] == counts["kept"] + counts["dropped"]
    dropped = table.filter(pc.equal(table["status"], "dropped")).to_pylist()
    assert all(r["drop_stage"] and r["drop_reason"] for r in dropped)


def test_shards_read_back_with_webdataset_match_kept_and_bucket_sizes(demo_run):
    _, cfg, result = demo_run
    out = Path(cfg.output)
    tars = sorted(out.glob("shards/*/*.tar"))
    assert tars and not list(out.glob("shards/**/*.tmp*"))
    n = 0
    for tar in tars:
        bucket = tar.parent.name
        for sample in wds.WebDataset(str(tar), shardshuffle=False).decode("pil"):
            n += 1
            img = next(v for k, v in sample.items() if k in ("jpg", "png", "webp"))
            assert f"{img.width}x{img.height}" == bucket
            assert json.loads(json.dumps(sample["json"]))["bucket"] == bucket
    assert n == result.summary["kept"]
    index = pq.read_table(out / "shards" / "index.parquet")
    assert sum(index.column("samples").to_pylist()) == n
    buckets = json.loads((out / "buckets.json").read_text())["buckets"]
    assert sum(b["samples"] for b in buckets.values()) == n


def test_planted_problems_get_their_reasons(demo_run):
    root, cfg, _ = demo_run
    truth = json.loads((root / "corpus" / "ground_truth.json").read_text())
    rows = {f"{r['source']}/{r['source_key']}": r for r in read_manifest(cfg.output).to_pylist()}
    reason = lambda case: {rows[k]["drop_reason"] for k in truth[case]}  # noqa: E731
    assert reason("truncated") <= {"truncated", "decode_error"}
    assert reason("not_an_image") == {"not_an_image"}
    assert reason("empty_file") == {"empty_file"}
    assert reason("too_many_pixels") == {"too_many_pixels"}
    assert reason("too_small") == {"image_too_small"}
    assert reason("extreme_aspect") == {"aspect_ratio_too_extreme"}
    assert reason("unsafe_caption_1") == reason("unsafe_caption_2") == {"caption_blocklisted"}
    assert reason("exact_duplicate") == {"dup_exact"}
    assert reason("survivor_exact_copy") == {None}  # the highest-priority source's copy wins


def test_run_writes_provenance_and_refuses_to_overwrite(demo_run):
    _, cfg, _ = demo_run
    out = Path(cfg.output)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "finished" and info["version"] and "git_commit" in info
    assert (out / "config.yaml").exists()
    with pytest.raises(OutputExistsError):
        Pipeline(cfg, log=lambda s: None).run()


def test_bad_images_folder_through_the_pipeline(tmp_path, ray_session, bad_images_dir):
    cfg = parse_config({"sources": [{"name": "bad", "path": str(bad_images_dir)}], "output": str(tmp_path / "out")})
    result = Pipeline(cfg, log=lambda s: None).run()
    files = [p for p in bad_images_dir.iterdir()]
    table = read_manifest(cfg.output)
    assert table.num_rows == len(files) == result.summary["inputs"]
    rows = table.to_pylist()
    assert all(r["status"] == "kept" or r["drop_reason"] for r in rows)
    assert not any(r["drop_reason"] == "internal_error" for r in rows), [r for r in rows if r["drop_reason"] == "internal_error"]
