"""The pipeline joins a real local Ray cluster (`ray start --head`) through --address, with the same result."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curation.demo_corpus import generate
from manifests.reader import read_manifest

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    # Every Ray command and driver must agree on the auth mode, or joining fails with InvalidAuthToken.
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "curation"), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def ray_cluster(tmp_path):
    """A head node on this machine, stopped (and its temp dir removed) afterwards."""
    env = ray_env()
    port = free_port()
    temp_dir = Path("/tmp") / f"raytest-{port}"  # Ray's socket paths must stay short
    start = subprocess.run(
        [str(BIN / "ray"), "start", "--head", f"--port={port}", "--num-cpus=2", "--object-store-memory=300000000",
         "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        # `ray stop` would stop every Ray on the machine (the test session's own among them): end only the
        # processes of this cluster, which all name its temp dir on their command line.
        subprocess.run(["pkill", "-TERM", "-f", str(temp_dir)], capture_output=True, timeout=30)
        subprocess.run(["sleep", "3"])
        subprocess.run(["pkill", "-KILL", "-f", str(temp_dir)], capture_output=True, timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_cluster_run_matches_embedded_run(tmp_path, ray_cluster):
    address, env = ray_cluster
    data = generate(tmp_path / "corpus", n_images=8, seed=2)
    for name in ("embedded", "cluster"):
        cfg = dict(data, output=str(tmp_path / name))
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    emb = run_cli(["run", str(tmp_path / "embedded.yaml"), "--progress", "off"], dict(env, RAY_ADDRESS=""))
    assert emb.returncode == 0, emb.stderr[-3000:]
    clu = run_cli(["run", str(tmp_path / "cluster.yaml"), "--address", address, "--progress", "off"], env)
    assert clu.returncode == 0, clu.stderr[-3000:]
    a, b = read_manifest(str(tmp_path / "embedded")), read_manifest(str(tmp_path / "cluster"))
    assert a.num_rows > 0 and a.equals(b)
    shards_a = sorted(p.relative_to(tmp_path / "embedded") for p in (tmp_path / "embedded").glob("shards/*/*.tar"))
    shards_b = sorted(p.relative_to(tmp_path / "cluster") for p in (tmp_path / "cluster").glob("shards/*/*.tar"))
    assert shards_a == shards_b
    for p in shards_a:
        assert (tmp_path / "embedded" / p).read_bytes() == (tmp_path / "cluster" / p).read_bytes()
