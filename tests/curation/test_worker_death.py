"""A Ray worker killed (SIGKILL) in the middle of a stage: Ray retries its task, the run finishes, and every
input sample is accounted for exactly once, with the same manifest and shards as an uninterrupted run.

Two kills, one per run: the first pipeline task seen running (phase 1, the analysis of a partition), and the
task that has a shard file open for writing (phase 3)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from ray_cluster_helpers import (
    BIN, LocalCluster, Worker, assert_accounted_once, assert_same_outputs, cmdline, open_files,
    reference_run, write_config,
)  # fmt: skip

pytestmark = [pytest.mark.slow, pytest.mark.ray_cluster]

# Ray Data names a task after its fused operators ("MapBatches(fn)->...->Write"); an actor pool's worker is
# "MapWorker(MapBatches(Cls))": kill a task, whose retry the driver's log reports.
TASK = re.compile(r"^ray::(?!MapWorker\()\S*(MapBatches|Map|FlatMap|Filter)\(")
BUSY_FOR_S = 0.3  # a worker killed mid-analysis still runs the same task this long after it was first seen
FIND_WORKER_S = 300
FINISHED_SHARD_FILES = (".tar", ".json", ".parquet")


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    return reference_run(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster():
    """One node with two CPUs, as a developer's machine; only its own processes are stopped afterwards."""
    c = LocalCluster()
    try:
        c.start_head(num_cpus=2)
        yield c
    finally:
        c.stop()


Victim = Callable[[LocalCluster, Path], "Worker | None"]


def first_busy_task(c: LocalCluster, out: Path) -> Worker | None:
    """The first worker seen running a pipeline task that still runs it BUSY_FOR_S later: mid-task."""
    for w in c.busy_workers():
        if TASK.match(w.title):
            time.sleep(BUSY_FOR_S)
            if cmdline(w.pid) == w.title:
                return w
    return None


def shard_writer(c: LocalCluster, out: Path) -> Worker | None:
    """A worker that has a file under OUT/shards open that is not a finished shard yet: mid-write."""
    if not any(p.is_file() and not p.name.endswith(FINISHED_SHARD_FILES) for p in out.glob("shards/*/*")):
        return None
    for w in c.busy_workers():
        if any(f.startswith(f"{out}/shards/") for f in open_files(w.pid)):
            return w
    return None


def run_and_kill(c: LocalCluster, cfg: Path, log_path: Path, out: Path, victim: Victim) -> tuple[int, int, Worker]:
    """Run the pipeline, SIGKILL the first worker `victim` names, once; return the run's exit code, the pid
    of its driver and the killed worker."""
    with log_path.open("w") as log:
        run = subprocess.Popen([str(BIN / "curation"), "run", str(cfg), "--progress", "lines"],
                               env=c.env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            deadline = time.monotonic() + FIND_WORKER_S
            while run.poll() is None and time.monotonic() < deadline:
                if (w := victim(c, out)) is not None:
                    os.kill(w.pid, signal.SIGKILL)
                    print(f"killed {w.pid} ({w.title!r}); output then: {log_path.read_text().strip()[-300:]!r}")
                    assert not any(out.glob("manifest/*.parquet")), "killed after the run had written its manifest"
                    return run.wait(timeout=600), run.pid, w
                time.sleep(0.003)
            pytest.fail(f"{victim.__name__}: no worker to kill before the run ended (exit {run.poll()}):\n"
                        f"{log_path.read_text()[-3000:]}")  # fmt: skip
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()


def assert_retried(c: LocalCluster, driver_pid: int, victim: Worker) -> None:
    """Ray saw the worker die and submitted its task again (the driver's core log, as Ray 2.x words it)."""
    logs = sorted((c.nodes[0].temp_dir / "session_latest" / "logs").glob(f"python-core-driver-*_{driver_pid}.log"))
    assert logs, f"no core log of the driver (pid {driver_pid}) under {c.nodes[0].temp_dir}"
    lines = "\n".join(p.read_text(errors="replace") for p in logs).splitlines()
    task = victim.title.removeprefix("ray::")
    assert any("WORKER_DIED" in ln for ln in lines), "the driver's log shows no worker death"
    assert any("resubmit" in ln.lower() and f"task_name={task}" in ln for ln in lines), (
        f"the driver's log shows no resubmission of the killed task {task!r}"
    )


@pytest.mark.parametrize("victim", [first_busy_task, shard_writer], ids=["analysis", "shard_write"])
def test_worker_killed_mid_stage_every_sample_once(tmp_path: Path, reference, cluster: LocalCluster, victim: Victim):
    data, uninterrupted = reference
    out = tmp_path / "killed"
    cfg = write_config(tmp_path / "killed.yaml", data, out, address=cluster.address)
    rc, driver, killed = run_and_kill(cluster, cfg, tmp_path / "killed.log", out, victim)
    output = (tmp_path / "killed.log").read_text()
    assert rc == 0, f"the run did not survive the killed worker {killed}:\n{output[-4000:]}"
    assert_retried(cluster, driver, killed)

    # Every sample exactly once, kept or dropped; each kept one in exactly one shard; per source as many
    # inputs, kept and dropped as in the uninterrupted (embedded) run; the same manifest, byte-identical
    # shards and indexes.
    counts = assert_accounted_once(out)
    assert counts == assert_accounted_once(uninterrupted)
    assert sum(c["kept"] for c in counts.values()) > 0
    assert_same_outputs(uninterrupted, out)  # and no file left over from the killed attempt

