"""Nothing lost, nothing twice: `curation run` killed with SIGKILL during ingest, during the dedup identify
job and during shard writing, rerun each time, ends byte-identical to an uninterrupted run; and so does a
run with other worker counts, partitions and batches."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil
import pytest
import yaml
from ray_cluster_helpers import assert_same_outputs

from curation.commit import TMP_MARK
from curation.config import parse_config
from curation.demo_corpus import generate
from curation.pipeline import OutputExistsError, Pipeline
from curation.provenance import write_config
from stages.sources import plan_partitions

pytestmark = pytest.mark.slow

CURATION = str(Path(sys.executable).parent / "curation")
N_IMAGES = 24


def corpus_config(root: Path, output: Path) -> dict:
    data = generate(root / "corpus", n_images=N_IMAGES, seed=3)
    for source in data["sources"]:
        source["partition_size"] = 6  # many small partitions, so a kill lands between two of them
    data["shards"] = {"max_samples": 3}  # many shards, so a kill lands between two of them
    # Many publish ranges (sample_id ranges of 10 records), so publish scatters and places in several units.
    data["ray"] = {"num_cpus": 2, "progress": "lines", "range_rows": 10}
    data["output"] = str(output)
    return data


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the run and every process it started (its embedded Ray: gcs, raylet, workers)."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(family, timeout=30)


def run_until(config: Path, moment: Callable[[], bool], timeout: float = 300) -> None:
    """Start `curation run`, SIGKILL it as soon as `moment()` holds; fail if the run ends first."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen([CURATION, "run", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not moment():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (rc {proc.returncode}) before the kill point: {proc.stderr.read()[-2000:]!r}")
            assert time.monotonic() < deadline, "the kill point never came"
            time.sleep(0.02)
    finally:
        kill_tree(proc)


def count(out: Path, pattern: str) -> int:
    return len(list(out.glob(pattern)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ray_session):
    """The corpus's config and the output folder of its uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    data = corpus_config(root, root / "out")
    Pipeline(parse_config(data), log=lambda s: None).run()
    return data, root / "out"


def test_killed_three_times_ends_identical_to_an_uninterrupted_run(tmp_path, reference):
    reference_data, expected = reference
    out = tmp_path / "out"
    data = dict(reference_data, output=str(out))
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    n_parts = len(plan_partitions(parse_config(data).sources))
    n_tars = len(list(expected.glob("shards/*/*.tar")))
    assert n_parts >= 6 and n_tars >= 6

    # 1. during ingest and analysis: some partitions committed, not all
    run_until(config, lambda: count(out, "_work/records/*.done.json") >= 1)
    done = count(out, "_work/records/*.done.json")
    assert 1 <= done < n_parts, done

    # 2. during the dedup identify job: every partition committed, the decisions not yet
    def identifying() -> bool:
        if count(out, "_work/records/*.done.json") < n_parts:
            return False
        time.sleep(0.2)  # into the job, which takes a second or two here
        return True

    run_until(config, identifying)
    assert count(out, "_work/records/*.done.json") == n_parts
    assert not (out / "_work" / "dedup.done.json").exists()

    # 3. during shard writing: some shard units committed, not all
    run_until(config, lambda: count(out, "_work/shards/*/*.done.json") >= 1)
    written = count(out, "_work/shards/*/*.done.json")
    assert (out / "_work" / "dedup.done.json").exists() and 1 <= written < n_tars, written

    finished = subprocess.run([CURATION, "run", str(config), "--progress", "lines"], capture_output=True, text=True,
                              timeout=600, env=dict(os.environ, RAY_AUTH_MODE="disabled"))  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert_same_outputs(expected, out)
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name]
    assert not (out / "_work").exists()


def test_worker_count_partitions_batches_and_ranges_do_not_change_a_byte(tmp_path, reference):
    reference_data, expected = reference
    data = dict(reference_data, output=str(tmp_path / "out"), ray={"num_cpus": 1, "batch_size": 5, "range_rows": 10_000})
    data["sources"] = [dict(source, partition_size=4) for source in reference_data["sources"]]
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(data))
    assert len(plan_partitions(parse_config(data).sources)) != len(plan_partitions(parse_config(reference_data).sources))
    run = subprocess.run([CURATION, "run", str(config)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, RAY_AUTH_MODE="disabled"))  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_outputs(expected, tmp_path / "out")


def test_only_an_unfinished_run_of_the_same_config_is_resumed(tmp_path, reference):
    data = dict(reference[0], output=str(tmp_path / "out"))
    pipeline = Pipeline(parse_config(data))
    assert pipeline.prepare_output(overwrite=False) is False  # an empty folder: a fresh run
    write_config(pipeline.out, pipeline.cfg)
    leftover = tmp_path / "out" / f"shards{TMP_MARK}1-ab"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"half a tar")
    for status, resumes in [("running", True), ("failed", True), ("finished", None)]:
        (tmp_path / "out" / "run.json").write_text(json.dumps({"status": status}))
        if resumes is None:
            with pytest.raises(OutputExistsError, match="finished run"):
                pipeline.prepare_output(overwrite=False)
        else:
            assert pipeline.prepare_output(overwrite=False) is True
            assert not leftover.exists()

    (tmp_path / "out" / "run.json").write_text(json.dumps({"status": "failed"}))
    other = Pipeline(parse_config(dict(data, seed=data.get("seed", 0) + 1)))
    with pytest.raises(OutputExistsError, match="different config"):
        other.prepare_output(overwrite=False)
    assert other.prepare_output(overwrite=True) is False
    assert not (tmp_path / "out" / "run.json").exists()
