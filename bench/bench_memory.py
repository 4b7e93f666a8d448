"""Peak resident memory of the pipeline's driver and Ray processes at 10,000 and 100,000 inputs (issue 7.6).

Target: the peak does not grow with the corpus, at most 1.5x from 10k to 100k inputs.

Each size gets its own generated corpus (bench/photo_corpus.py, kind `small`: 96-192 px JPEGs, 40 % in a
folder with sidecar captions, 40 % in Parquet tables of paths, 20 % in Parquet tables holding the bytes,
2 % exact copies) and one run of the whole pipeline (analysis pass, filters, dedup identify job, bucketing,
shard writing, manifest) in a fresh process, on an embedded Ray with `--num-cpus` CPUs. So that every
input can reach a shard, the config lowers the size filter to a 64 px short side and lets bucketing
enlarge up to 4x (256 px buckets); open_nsfw is off by default (a fixed-size model per worker, and
~40 ms per image, which would make 100k inputs take an hour on 2 cores; `--nsfw` turns it on).

While the run goes, a thread of this process samples every `--interval` seconds (0.2) the driver (the
child process) and every process under it: gcs_server, raylet (which hosts the object store), Ray workers
(`ray::...` processes) and the other Ray helpers (dashboard/runtime-env agents, log monitor). Per sample and
role it sums RSS (and the anonymous part of it) from /proc/PID/status; every 5th sample it also sums PSS
(smaps_rollup), which splits shared pages (libraries, the object store's shared memory) among their users,
so the PSS total counts each page once. Ray's object store lives in shared memory (an unlinked file on
/dev/shm that the raylet holds open and the workers map): its resident size is the file's allocated
blocks (stat of /proc/RAYLET/fd/N), and spilled objects the size of the session's spill folder. (Ray's own store statistics need grpcio, which the project does not install.) Phases are
timed from the pipeline's own progress lines; `finish` is what follows the last one (manifest summary,
Ray shutdown).

    .venv/bin/python bench/bench_memory.py --out bench/results/memory.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import psutil
except ImportError:  # Ray ships its own copy
    import ray

    sys.path.append(str(Path(ray.__file__).parent / "thirdparty_files"))
    import psutil

ROLES = ("driver", "gcs", "raylet", "workers", "ray_other")
PHASE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\w+): (?!.*rows so far)")


def role_of(proc: psutil.Process, driver_pid: int) -> str:
    if proc.pid == driver_pid:
        return "driver"
    try:
        name = proc.name()
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "ray_other"
    first = cmd[0] if cmd else ""
    if name == "raylet" or first.endswith("/raylet"):
        return "raylet"
    if name == "gcs_server" or first.endswith("/gcs_server"):
        return "gcs"
    if first.startswith("ray::") or name.startswith("ray::") or any("default_worker.py" in c for c in cmd):
        return "workers"
    return "ray_other"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem in bytes, from /proc/PID/status (cheap: no page walk)."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    return out


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("Pss:"))


def cpu_seconds(pid: int) -> float:
    """user + system seconds of one process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spill_bytes(session_dir: str) -> int:
    """Bytes of spilled objects under the Ray session's folder (its default spill location)."""
    total = 0
    for dirpath, _, files in os.walk(session_dir):
        if "spill" in dirpath:
            for f in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, f))
                except OSError:
                    pass
    return total


@dataclass
class Peaks:
    rss: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))  # peak of the role's sum
    anon: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))
    largest: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))  # largest single process
    count: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ROLES, 0))  # most processes at once
    total_rss: int = 0
    total_pss: int = 0
    shmem: int = 0  # allocated pages of the object store's shared-memory file
    spilled: int = 0

    def add(self, by_role: dict[str, list[dict[str, int]]], pss: int | None, shmem: int = 0, spilled: int = 0) -> None:
        self.shmem, self.spilled = max(self.shmem, shmem), max(self.spilled, spilled)
        total = 0
        for role, stats in by_role.items():
            rss = sum(s.get("VmRSS", 0) for s in stats)
            total += rss
            self.rss[role] = max(self.rss[role], rss)
            self.anon[role] = max(self.anon[role], sum(s.get("RssAnon", 0) for s in stats))
            self.largest[role] = max(self.largest[role], max((s.get("VmRSS", 0) for s in stats), default=0))
            self.count[role] = max(self.count[role], len(stats))
        self.total_rss = max(self.total_rss, total)
        if pss is not None:
            self.total_pss = max(self.total_pss, pss)


class TreeSampler:
    """Samples a process and its descendants in a thread: memory per role, and CPU seconds per process.

    `memory=False` reads only /proc/PID/stat (CPU), once per `interval`, for the throughput benchmark.
    """

    def __init__(self, root_pid: int, interval: float = 0.2, memory: bool = True, pss_every: int = 5):
        self.root = psutil.Process(root_pid)
        self.interval, self.memory, self.pss_every = interval, memory, pss_every
        self.stop_event = threading.Event()
        self.roles: dict[int, str] = {}
        self.cpu: dict[int, float] = {}  # pid -> last seen user+sys seconds
        self.samples: list[tuple[float, Peaks]] = []  # (time, peaks of that one sample)
        self.n = 0
        self.started = time.time()
        self.own_cpu = 0.0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.store_fd: str | None = None
        self.session_dir: str | None = None
        self.store_capacity = 0

    def __enter__(self) -> TreeSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        self.thread.join()

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def loop(self) -> None:
        own = time.thread_time()
        while not self.stop_event.is_set():
            self.sample_once()
            self.own_cpu = time.thread_time() - own
            self.stop_event.wait(self.interval)

    def sample_once(self) -> None:
        by_role: dict[str, list[dict[str, int]]] = {r: [] for r in ROLES}
        pss_total = 0 if self.memory and self.n % self.pss_every == 0 else None
        for proc in self.processes():
            pid = proc.pid
            try:
                if self.roles.get(pid, "ray_other") == "ray_other":
                    # A process seen between fork and exec still shows its parent's command: look again.
                    self.roles[pid] = role_of(proc, self.root.pid)
                    if self.roles[pid] == "raylet":
                        self.raylet_args(proc.cmdline())
                self.cpu[pid] = cpu_seconds(pid)
                if self.memory:
                    by_role[self.roles[pid]].append(proc_status(pid))
                    if pss_total is not None:
                        pss_total += pss_bytes(pid)
            except (OSError, StopIteration, psutil.Error):
                continue
        if self.memory:
            peaks = Peaks()
            spilled = spill_bytes(self.session_dir) if pss_total is not None and self.session_dir else 0
            peaks.add(by_role, pss_total, self.store_bytes(), spilled)
            self.samples.append((time.time(), peaks))
        self.n += 1

    def find_store(self, raylet_pid: int) -> None:
        """The raylet's open, unlinked /dev/shm/plasma* file: the object store's memory."""
        try:
            for fd in os.listdir(f"/proc/{raylet_pid}/fd"):
                path = f"/proc/{raylet_pid}/fd/{fd}"
                if "plasma" in os.readlink(path):
                    self.store_fd = path
                    return
        except OSError:
            pass

    def store_bytes(self) -> int:
        """Allocated (so resident: tmpfs) bytes of the object store file; 0 before it is found."""
        if self.store_fd is None:
            for pid, role in self.roles.items():
                if role == "raylet":
                    self.find_store(pid)
        if self.store_fd is None:
            return 0
        try:
            return os.stat(self.store_fd).st_blocks * 512
        except OSError:
            return 0

    def raylet_args(self, cmd: list[str]) -> None:
        for arg in cmd:
            if arg.startswith("--session_dir="):
                self.session_dir = arg.split("=", 1)[1]
            elif arg.startswith("--object_store_memory="):
                self.store_capacity = int(arg.split("=", 1)[1])

    def cpu_by_role(self) -> dict[str, float]:
        out = dict.fromkeys(ROLES, 0.0)
        for pid, seconds in self.cpu.items():
            out[self.roles.get(pid, "ray_other")] += seconds
        return out

    def peaks(self, start: float = 0.0, end: float = float("inf")) -> Peaks:
        """Peaks over the samples taken in [start, end)."""
        out = Peaks()
        for t, p in self.samples:
            if start <= t < end:
                for attr in ("rss", "anon", "largest", "count"):
                    mine, theirs = getattr(out, attr), getattr(p, attr)
                    for r in ROLES:
                        mine[r] = max(mine[r], theirs[r])
                out.total_rss = max(out.total_rss, p.total_rss)
                out.total_pss = max(out.total_pss, p.total_pss)
                out.shmem, out.spilled = max(out.shmem, p.shmem), max(out.spilled, p.spilled)
        return out


CODE_DIRS = ("curation", "stages", "filters", "annotators", "manifests", "model")


def snapshot_code(dest: Path) -> dict:
    """Copy the pipeline's packages to dest, so every run of one benchmark uses the same code while others
    edit the working tree; runs put dest first on PYTHONPATH (ahead of the editable install)."""
    import hashlib

    if dest.exists():
        shutil.rmtree(dest)
    digest = hashlib.sha256()
    for pkg in CODE_DIRS:
        shutil.copytree(REPO / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in sorted(p for p in dest.rglob("*") if p.is_file()):
        digest.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    changed = [line for line in git("status", "--porcelain", "--", *CODE_DIRS).splitlines() if line.strip()]
    return {"path": str(dest), "sha256": digest.hexdigest()[:16], "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_files": len(changed)}  # fmt: skip


def code_line(code: dict) -> str:
    dirty = f" plus {code['uncommitted_files']} uncommitted files" if code["uncommitted_files"] else ""
    return f"Code: commit {code['commit']}{dirty}, copied before the runs (sha256 of the copy {code['sha256']})."


def curation_cmd(code: dict, config: Path) -> tuple[list[str], dict]:
    """The `curation run` command on the copied code, and its environment additions. `run_child` starts it
    in the copy: `python -m` puts the working directory first on the path, and Ray's workers inherit it."""
    python = str(REPO / ".venv" / "bin" / "python")
    env = {"PYTHONPATH": code["path"] + os.pathsep + os.environ.get("PYTHONPATH", ""), "CODE_COPY": code["path"]}
    return [python, "-m", "curation.cli", "run", str(config), "--overwrite"], env


FINDINGS = "\n## Findings"


def write_report(path: Path, text: str) -> None:
    """Write a report, keeping a hand-written "## Findings" section of the file it replaces."""
    kept = ""
    if path.exists():
        old = path.read_text()
        if FINDINGS in old:
            kept = "\n" + old[old.index(FINDINGS):].lstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n" + kept)


def run_child(cmd: list[str], log_path: Path, interval: float, memory: bool, env: dict | None = None) -> dict:
    """Run `cmd` under a TreeSampler; timestamp its output lines; return wall time, phases and the sampler."""
    lines: list[tuple[float, str]] = []
    started = time.time()
    with open(log_path, "w") as log:
        env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=env.get("CODE_COPY", REPO), env=env)  # fmt: skip
        with TreeSampler(proc.pid, interval, memory) as sampler:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append((time.time(), line.rstrip("\n")))
                log.write(line)
                log.flush()
            code = proc.wait()
    wall = time.time() - started
    if code != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        raise RuntimeError(f"{shlex.join(cmd)} exited with {code}; log {log_path}:\n{tail}")
    phases: list[tuple[str, float]] = []  # (phase, end time)
    for t, line in lines:
        m = PHASE_LINE.match(line)
        if m:
            phases.append((m.group(3), t))
    return {"wall_s": wall, "started": started, "phases": phases, "sampler": sampler, "lines": lines}


# -- the benchmark ----------------------------------------------------------------------------------------
def mib(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def measure(n: int, args: argparse.Namespace) -> dict:
    from photo_corpus import build, corpus_config

    root = args.work_dir / f"corpus-{n}"
    build(root, n, seed=args.seed, kind="small", workers=args.gen_workers)
    out = args.work_dir / f"out-{n}"
    sections: dict[str, Any] = {"filters.image.size.min_short_side": 64, "bucketing.tiers": [256],
                                "bucketing.max_upscale": 3.0}
    if not args.nsfw:
        sections["filters.safety.nsfw.enabled"] = False
    cfg = corpus_config(root, out, num_cpus=args.num_cpus, **sections)
    config_path = args.work_dir / f"config-{n}.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    load_before = os.getloadavg()
    cmd, env = curation_cmd(args.code, config_path)
    print(f"memory: {n:,} inputs ...", file=sys.stderr, flush=True)
    res = run_child(cmd, args.work_dir / f"log-{n}.txt", args.interval, memory=True, env=env)
    sampler: TreeSampler = res["sampler"]
    run = json.loads((out / "run.json").read_text())
    overall = sampler.peaks()
    phases = {}
    begin = res["started"]
    for name, end in res["phases"]:
        phases[name] = sampler.peaks(begin, end)
        begin = end
    phases["finish"] = sampler.peaks(begin)
    result = {
        "n": n,
        "wall_s": res["wall_s"],
        "elapsed_s": run.get("elapsed_s"),
        "stage_seconds": run.get("stage_seconds"),
        "stage_cpu_seconds": run.get("stage_cpu_seconds"),
        "counts": run.get("counts"),
        "peak": _peaks_dict(overall),
        "phases": {k: _peaks_dict(v) for k, v in phases.items()},
        "store": {"shmem_peak": overall.shmem, "spilled": overall.spilled, "capacity": sampler.store_capacity},
        "cpu_s": sampler.cpu_by_role(),
        "samples": sampler.n,
        "sampler_cpu_s": sampler.own_cpu,
        "load": [load_before, os.getloadavg()],
    }
    print(f"memory: {n:,} inputs: {res['wall_s']:.0f} s, peak RSS sum {mib(overall.total_rss)} MiB, "
          f"PSS {mib(overall.total_pss)} MiB", file=sys.stderr, flush=True)  # fmt: skip
    return result


def _peaks_dict(p: Peaks) -> dict:
    return {"rss": p.rss, "anon": p.anon, "largest": p.largest, "count": p.count, "total_rss": p.total_rss,
            "total_pss": p.total_pss, "shmem": p.shmem, "spilled": p.spilled}  # fmt: skip


def markdown(results: list[dict], command: str, machine: str) -> str:
    sizes = [r["n"] for r in results]
    head = "| | " + " | ".join(f"{n:,} inputs" for n in sizes) + (" | ratio |" if len(sizes) == 2 else " |")
    sep = "|---|" + "---|" * (len(sizes) + (1 if len(sizes) == 2 else 0))

    def row(label: str, values: list[float], fmt=mib) -> str:
        ratio = f" | {values[1] / values[0]:.2f}x" if len(values) == 2 and values[0] else (" | -" if len(values) == 2 else "")
        return f"| {label} | " + " | ".join(fmt(v) for v in values) + ratio + " |"

    out = [
        "# Peak memory of the pipeline: " + " vs ".join(f"{n:,}" for n in sizes) + " inputs",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        machine,
        "",
        "Peak resident memory in MiB, sampled every 0.2 s (PSS every 1 s). A role's figure is the peak of the",
        "sum over its processes; `largest` is the largest single process of the role. RSS sums count shared",
        "pages (libraries, the object store's shared memory) once per process that maps them; the PSS total",
        "counts each page once. The object store's resident size is the allocated size of its /dev/shm file",
        "(pages the store has touched stay allocated until Ray shuts down, so this is a high-water mark);",
        "spilled is the size of the session's spill folder; capacity is the raylet's --object_store_memory.",
        "",
        head,
        sep,
    ]
    for role in ROLES:
        out.append(row(f"{role} RSS", [r["peak"]["rss"][role] for r in results]))
    for role in ("driver", "workers", "raylet"):
        out.append(row(f"{role} anonymous RSS", [r["peak"]["anon"][role] for r in results]))
    out.append(row("largest worker RSS", [r["peak"]["largest"]["workers"] for r in results]))
    out.append(row("worker processes (most at once)", [r["peak"]["count"]["workers"] for r in results], fmt=str))
    out.append(row("**sum of RSS, all processes**", [r["peak"]["total_rss"] for r in results]))
    out.append(row("**sum of PSS, all processes**", [r["peak"]["total_pss"] for r in results]))
    out.append(row("object store resident (peak)", [r["store"]["shmem_peak"] for r in results]))
    out.append(row("object store spilled (peak)", [r["store"]["spilled"] for r in results]))
    out.append(row("object store capacity", [r["store"]["capacity"] for r in results]))
    out.append(row("wall seconds", [r["wall_s"] for r in results], fmt=lambda v: f"{v:.0f}"))
    out += ["", "Peak per phase (MiB: driver RSS / workers RSS / raylet RSS / PSS total / object store):", ""]
    phases = list(dict.fromkeys(p for r in results for p in r["phases"]))
    out += ["| phase | " + " | ".join(f"{n:,} inputs" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for phase in phases:
        cells = []
        for r in results:
            p = r["phases"].get(phase)
            cells.append("-" if p is None else
                         f"{mib(p['rss']['driver'])} / {mib(p['rss']['workers'])} / {mib(p['rss']['raylet'])} / "
                         f"{mib(p['total_pss'])} / {mib(p['shmem'])}")  # fmt: skip
        secs = [f"{(r['stage_seconds'] or {}).get(phase, float('nan')):.0f} s" for r in results]
        label = phase if phase == "finish" else f"{phase} ({', '.join(secs)})"
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "CPU seconds per role (whole run):", ""]
    out += ["| role | " + " | ".join(f"{n:,} inputs" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for role in ROLES:
        out.append(f"| {role} | " + " | ".join(f"{r['cpu_s'][role]:.0f}" for r in results) + " |")
    out += ["", "Counts: " + "; ".join(f"{r['n']:,}: {r['counts']}" for r in results), ""]
    return "\n".join(out)


def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    import ray

    mem = psutil.virtual_memory().total / 2**30
    return f"Machine: {cpu}, nproc {os.cpu_count()}, {mem:.0f} GiB RAM; Python {platform.python_version()}; Ray {ray.__version__}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_memory"))
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--nsfw", action="store_true", help="keep the open_nsfw filter on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    args.code = snapshot_code(args.work_dir / "code")
    command = shlex.join([os.path.relpath(sys.executable, REPO), *sys.argv])
    results: list[dict] = []
    for n in args.sizes:
        results.append(measure(n, args))
        final = len(results) == len(args.sizes)
        machine = (code_line(args.code) + "\n\n" + machine_line() + f" Ray num_cpus={args.num_cpus}. Load average "
                   f"(1, 5, 15 min) at start {' '.join(f'{x:.2f}' for x in load)}, at end "
                   f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}.")  # fmt: skip
        report = markdown(results, command, machine) + ("" if final else "\n*(partial: still running)*\n")
        summary = summary_json(results)
        if final:
            print(report)
            print(json.dumps(summary))
        (args.work_dir / "results.json").write_text(json.dumps(results, indent=1))
        if args.out:
            write_report(args.out, report + "\n\n```json\n" + json.dumps(summary) + "\n```\n")


def summary_json(results: list[dict]) -> dict:
    summary: dict[str, Any] = {"bench": "memory"}
    for r in results:
        summary[f"n{r['n']}"] = {"peak_rss_sum_mib": r["peak"]["total_rss"] / 2**20,
                                 "peak_pss_sum_mib": r["peak"]["total_pss"] / 2**20,
                                 "peak_rss_mib": {k: v / 2**20 for k, v in r["peak"]["rss"].items()},
                                 "store_shmem_peak_mib": r["store"]["shmem_peak"] / 2**20, "wall_s": r["wall_s"]}  # fmt: skip
    if len(results) == 2:
        summary["pss_growth"] = results[1]["peak"]["total_pss"] / max(1, results[0]["peak"]["total_pss"])
        summary["rss_growth"] = results[1]["peak"]["total_rss"] / max(1, results[0]["peak"]["total_rss"])
    return summary


if __name__ == "__main__":
    main()
