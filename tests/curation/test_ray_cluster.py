"""The pipeline joins a real local Ray cluster of three nodes (`ray start`: a head and two workers) through
--address, runs its work on both worker nodes, and writes the same result as an embedded run."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

from ray_cluster_helpers import (
    LocalCluster, assert_accounted_once, assert_same_outputs, reference_run, run_cli, write_config,
)  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

WORKER_NODES = ("worker1", "worker2")


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


@pytest.fixture
def ray_cluster():
    """A head with no CPU (it hosts the driver and Ray's services, so every task must go to a worker node) and
    two worker nodes of one CPU each, on this machine; afterwards only this cluster's processes are ended
    (`ray stop` would end every Ray on the machine) and its temp dirs removed."""
    c = LocalCluster()
    try:
        c.start_head(num_cpus=0)
        for _ in WORKER_NODES:
            c.add_worker(num_cpus=1)
        yield c
    finally:
        c.stop()


class BusyWorkerWatch:
    """Samples, every 20 ms, which node each busy pipeline worker belongs to."""

    def __init__(self, cluster: LocalCluster):
        self.cluster = cluster
        self.seen: collections.Counter = collections.Counter()  # (node, title) -> samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for w in self.cluster.busy_workers():
                if "Map" in w.title:  # Ray Data's map operators: the pipeline's stages
                    self.seen[(w.node, w.title)] += 1
            time.sleep(0.02)

    def __enter__(self) -> BusyWorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def nodes(self) -> set[str]:
        return {node for node, _ in self.seen}


def test_multi_node_cluster_run_matches_embedded_run(tmp_path: Path, reference, ray_cluster: LocalCluster):
    data, embedded = reference
    c = ray_cluster
    alive = c.alive_nodes()
    cpus = sorted(n["Resources"].get("CPU", 0.0) for n in alive)
    assert len(alive) == 3 and cpus == [0.0, 1.0, 1.0], [(n["NodeID"], n["Resources"]) for n in alive]

    write_config(tmp_path / "cluster.yaml", data, tmp_path / "cluster")
    with BusyWorkerWatch(c) as watch:
        clu = run_cli(["run", str(tmp_path / "cluster.yaml"), "--address", c.address, "--progress", "lines"], c.env)
    assert clu.returncode == 0, clu.stdout[-2000:] + clu.stderr[-3000:]
    print("busy pipeline workers seen (node, title: samples):", dict(watch.seen))
    # The head has no CPU: whatever ran, ran on a worker node; both of them took pipeline tasks.
    assert set(WORKER_NODES) <= watch.nodes(), dict(watch.seen)

    assert assert_accounted_once(tmp_path / "cluster") == assert_accounted_once(embedded)
    assert_same_outputs(embedded, tmp_path / "cluster")
