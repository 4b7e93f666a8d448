"""A real local Ray cluster for tests: a head and worker nodes started with `ray start`, on this machine.

Rules this machine taught us (shared/design/environment.md):
- every Ray command and driver must agree on RAY_AUTH_MODE, or joining fails with InvalidAuthToken;
- several nodes on one machine each claim all its CPUs and memory unless given --num-cpus and
  --object-store-memory;
- `ray stop` stops every Ray on the machine (the test session's own, other people's): never call it. Each
  node gets its own short --temp-dir, every process of the node names it on its command line, so the
  cluster is stopped by ending exactly those processes; the temp dirs are then removed.

Worker processes are found through /proc (Linux): Ray sets a worker's title to `ray::IDLE` while it waits
and to `ray::<task or actor method>` while it runs one, and every worker descends from its node's raylet.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from curation.demo_corpus import generate
from manifests.reader import read_manifest

BIN = Path(sys.executable).parent
OBJECT_STORE_BYTES = 200_000_000
# Every node's agents carry a worker-like title but run no task.
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_env() -> dict[str, str]:
    # Every Ray command and driver must agree on the auth mode, or joining fails with InvalidAuthToken.
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled", RAY_ADDRESS="")


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([str(BIN / "curation"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        said = "".join(x.decode(errors="replace") if isinstance(x, bytes) else x for x in (e.stdout, e.stderr) if x)
        raise AssertionError(f"`curation {' '.join(args)}` still ran after {timeout} s; it said:\n{said[-4000:]}")


def write_config(path: Path, data: dict, output: Path, **ray: object) -> Path:
    """A run config: the corpus's sources, `output`, and the given `ray:` settings."""
    cfg = dict(data, output=str(output))
    if ray:
        cfg["ray"] = {**cfg.get("ray", {}), **ray}
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- one corpus and its embedded run, shared by every cluster test of the session -----------------------
_REFERENCE: dict[str, tuple[dict, Path]] = {}


def reference_run(tmp_path_factory) -> tuple[dict, Path]:
    """A small multi-source corpus (`generate`'s config dict, several partitions per source) and the output of
    its uninterrupted run on an embedded Ray with two CPUs, made once per test session: each cluster test
    runs the same corpus and compares its output with this one."""
    if "run" not in _REFERENCE:
        root = tmp_path_factory.mktemp("cluster_reference")
        data = generate(root / "corpus", n_images=16, seed=3)
        for src in data["sources"]:
            src["partition_size"] = 4  # several tasks per stage: both nodes get some, a kill finds one running
        cfg = write_config(root / "embedded.yaml", data, root / "embedded", num_cpus=2)
        done = run_cli(["run", str(cfg), "--progress", "off"], ray_env())
        assert done.returncode == 0, done.stderr[-3000:]
        _REFERENCE["run"] = (data, root / "embedded")
    return _REFERENCE["run"]


# -- processes, from /proc ---------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    """The process's command line (for a Ray worker: its title), '' when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the name (which may hold spaces); [] when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def _start_time(pid: int) -> int | None:
    """Clock ticks since boot when the process started: with the pid, it names one process, never a later
    one that reused the pid."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def open_files(pid: int) -> list[str]:
    """Paths of the files the process has open ([] when it is gone)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    paths = []
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                paths.append(os.readlink(fd))
    return paths


def pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


@dataclass(frozen=True)
class Worker:
    pid: int
    title: str  # e.g. "ray::MapBatches(_run_stage)->Write"
    node: str  # the name of the node whose raylet it descends from


@dataclass
class Node:
    name: str
    temp_dir: Path
    raylet_pid: int


@dataclass
class LocalCluster:
    """Start with `start_head`, add nodes with `add_worker`, stop with `stop` (only this cluster's processes)."""

    env: dict[str, str] = field(default_factory=ray_env)
    nodes: list[Node] = field(default_factory=list)
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_head(self, num_cpus: int, object_store_memory: int = OBJECT_STORE_BYTES) -> Node:
        self.port = free_port()
        return self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false"],
                           num_cpus, object_store_memory)  # fmt: skip

    def add_worker(self, num_cpus: int, object_store_memory: int = OBJECT_STORE_BYTES) -> Node:
        assert self.nodes, "start the head first"
        return self._start(f"worker{len(self.nodes)}", [f"--address={self.address}"], num_cpus, object_store_memory)

    def _start(self, name: str, args: list[str], num_cpus: int, object_store_memory: int) -> Node:
        # Ray's socket paths must stay short (108 bytes): a short folder right under /tmp.
        temp_dir = Path("/tmp") / f"raytest-{self.port}-{name}"
        node = Node(name, temp_dir, 0)
        self.nodes.append(node)  # before starting, so that `stop` cleans up after a half-started node
        start = subprocess.run(
            [str(BIN / "ray"), "start", *args, f"--num-cpus={num_cpus}", f"--object-store-memory={object_store_memory}",
             f"--temp-dir={temp_dir}", "--disable-usage-stats"],
            env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert start.returncode == 0, f"ray start ({name}) failed:\n{start.stdout}\n{start.stderr}"
        raylets = [p for p in pids() if _is_raylet(cmdline(p), temp_dir)]
        assert len(raylets) == 1, f"expected one raylet for {temp_dir}, found {raylets}"
        node.raylet_pid = raylets[0]
        return node

    def alive_nodes(self) -> list[dict]:
        """`ray.nodes()` of the cluster, alive ones only, asked by a separate driver (this process may host an
        embedded Ray of its own)."""
        code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
                "print('NODES=' + json.dumps([n for n in ray.nodes() if n['Alive']], default=str))") % self.address  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        line = next(ln for ln in done.stdout.splitlines() if ln.startswith("NODES="))
        return json.loads(line[len("NODES=") :])

    def busy_workers(self) -> list[Worker]:
        """Worker processes of this cluster running a task right now, or hosting an actor (Ray Data's own
        helpers among them: filter on the title)."""
        by_raylet = {n.raylet_pid: n.name for n in self.nodes}
        found = []
        for pid in pids():
            title = cmdline(pid)
            if not title.startswith("ray::") or title.startswith(("ray::IDLE", *AGENTS)):
                continue
            p = pid
            while p > 1 and p not in by_raylet:
                p = parent(p)
            if p in by_raylet:
                found.append(Worker(pid, title, by_raylet[p]))
        return found

    def stop(self) -> None:
        # `ray stop` would stop every Ray on the machine: end only this cluster's processes, which name one of
        # its temp dirs on their command line, and its workers (their title replaced that command line), known
        # as descendants of its raylets while those live, and by pid and start time once they are orphans.
        workers = [(w.pid, _start_time(w.pid)) for w in self.all_workers()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for node in self.nodes:
                subprocess.run(["pkill", f"-{sig.name[3:]}", "-f", str(node.temp_dir)], capture_output=True, timeout=30)
            for pid, started in workers:
                if started is not None and _start_time(pid) == started:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            if sig == signal.SIGTERM:
                time.sleep(3)
        for node in self.nodes:
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def all_workers(self) -> list[Worker]:
        """Every process descending from one of this cluster's raylets."""
        by_raylet = {n.raylet_pid: n.name for n in self.nodes if n.raylet_pid}
        found = []
        for pid in pids():
            p = parent(pid)
            while p > 1 and p not in by_raylet:
                p = parent(p)
            if p in by_raylet:
                found.append(Worker(pid, cmdline(pid), by_raylet[p]))
        return found


def _is_raylet(cmd: str, temp_dir: Path) -> bool:
    first = cmd.split(" ", 1)[0]
    return first.endswith("/raylet") and str(temp_dir) in cmd


# -- a run's outputs ---------------------------------------------------------------------------------
# The data a run produces, compared byte for byte; other files (run.json, config.yaml: timings, paths, the
# host) need only be present in both.
DATA_FILES = ("shards/", "manifest/", "buckets.json")


def output_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())


def assert_accounted_once(out: Path) -> dict[str, collections.Counter]:
    """Every manifest row once, kept or dropped; every kept row in exactly one shard, under its key, and in no
    other; the shard index counts what the tars hold. Returns per source the count of each status."""
    table = read_manifest(str(out))
    rows = table.select(["sample_id", "source", "status", "shard", "key_in_shard"]).to_pylist()
    ids = [r["sample_id"] for r in rows]
    dupes = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not dupes, f"sample_ids in the manifest more than once: {dupes[:10]}"
    per_source: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        assert r["status"] in ("kept", "dropped"), r
        per_source[r["source"]][r["status"]] += 1
    kept = {(r["shard"], r["key_in_shard"]) for r in rows if r["status"] == "kept"}
    assert all(s and k for s, k in kept), "a kept row names no shard or key"
    in_tars: collections.Counter = collections.Counter()
    for tar in sorted(out.glob("shards/*/*.tar")):
        with tarfile.open(tar) as t:
            keys = {m.name.split("/")[-1].split(".", 1)[0] for m in t.getmembers() if m.isfile()}
        in_tars.update((str(tar.relative_to(out)), k) for k in keys)
    assert not [k for k, n in in_tars.items() if n > 1]
    assert set(in_tars) == kept, (
        f"kept rows not in their shard: {sorted(kept - set(in_tars))[:5]}; "
        f"shard samples with no kept row: {sorted(set(in_tars) - kept)[:5]}"
    )
    index = pq.read_table(out / "shards" / "index.parquet").to_pylist()
    assert sum(i["samples"] for i in index) == len(kept)
    assert sorted(i["shard"] for i in index) == sorted({s for s, _ in kept})
    return dict(per_source)


def assert_same_outputs(a: Path, b: Path) -> None:
    """Same files (no leftovers from a retried attempt), same manifest, byte-identical shards and indexes."""
    files_a, files_b = output_files(a), output_files(b)
    assert files_a == files_b, f"only in {a}: {sorted(set(files_a) - set(files_b))}; only in {b}: {sorted(set(files_b) - set(files_a))}"
    manifest_a, manifest_b = read_manifest(str(a)), read_manifest(str(b))
    assert manifest_a.num_rows > 0 and manifest_a.equals(manifest_b)
    assert any(f.endswith(".tar") for f in files_a), "no shard written: nothing to compare"
    for f in (f for f in files_a if f.startswith(DATA_FILES)):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs"
