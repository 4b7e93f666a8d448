"""End-to-end throughput of the CPU pipeline beside a bare Pillow floor, per core (issue 8).

The corpus (bench/photo_corpus.py, kind `photos`): N (20,000) photos cut from the real photos in
../shared/data/photos, long side 300-4000 px log-uniform, 5 % exact and 5 % resized copies, split across
a folder with .txt captions, Parquet tables of paths and WebDataset tars; captions are real alt-text.

The floor: one process, one thread, a bare Pillow loop doing only the unavoidable work on every image of
the corpus: read its bytes, open it, choose the bucket the pipeline would choose (stages.bucketing
.plan_bucket on the upright size), and if there is one: one decode (JPEG draft to no less than the
bucket's scale, as a well-written loop would), EXIF transpose, the resize of the planned crop to the
bucket (the filter the pipeline's `resample: auto` picks, the same reducing_gap), one encode with the
shard settings (JPEG, quality 95). Images no bucket can take cost only the header read. Its rate in one
process is its rate per core. It does no filtering and no dedup, so it renders the duplicates and the
images the filters drop too; a second figure counts only the images the pipeline kept.

The pipeline: `curation run CONFIG --overwrite` on an embedded Ray with num_cpus=1, then num_cpus=2, each in
a fresh process, through the CPU stages the issue lists (decode, signatures, dedup, quality and caption
filters, bucketing, shard writing) with their defaults. CLIP is off, and so is the open_nsfw safety model
(a ResNet-50, ~20 ms per image on this CPU, which the issue's list leaves out): `--nsfw` adds it back.
End-to-end images/s counts every input over the wall time of the command (Ray start and shutdown
included); per core divides by num_cpus. A sampler reads the CPU seconds of the command's process tree
(driver, gcs, raylet, workers) once a second, so images per CPU-second are reported too: on a shared
machine they say more than wall time. Per-stage seconds come from the run's run.json:
`stage_cpu_seconds` (per stage, summed over workers) when the pipeline writes it, else `stage_seconds`
(wall seconds per phase: analyze, identify, publish).

`--py-spy` also runs the 2-worker pipeline under `py-spy record --subprocesses` (when py-spy is installed:
`.venv/bin/pip install py-spy`; not a project dependency), writes a speedscope profile and the raw
collapsed stacks under the work folder, and adds the top functions by own and by total samples.

    .venv/bin/python bench/bench_pipeline.py --out bench/results/pipeline.md
    .venv/bin/python bench/bench_pipeline.py --n 200 --work-dir /tmp/bench_tiny   # a quick check
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import collections
import io
import json
import math
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from PIL import ExifTags, Image, ImageOps, JpegImagePlugin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_memory import code_line, curation_cmd, run_child, snapshot_code, write_report  # noqa: E402
from photo_corpus import build, corpus_config  # noqa: E402
from stages.bucketing import BucketDrop, BucketingConfig, build_bucket_table, plan_bucket  # noqa: E402
from stages.resize import AUTO_LANCZOS_MAX_PIXELS  # noqa: E402


# -- the floor ---------------------------------------------------------------------------------------------
def floor_one(data: bytes, table: list, cfg: BucketingConfig) -> bool:
    """Decode, resize to the pipeline's bucket and encode one image; False when no bucket takes it."""
    image = Image.open(io.BytesIO(data))
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    width, height = image.size
    upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    plan = plan_bucket(*upright, table, cfg)
    if isinstance(plan, BucketDrop):
        return False
    size = (plan.bucket.width, plan.bucket.height)
    reduction = 1
    if isinstance(image, JpegImagePlugin.JpegImageFile) and plan.scale < 0.5:
        drafted = image.draft(image.mode, (math.ceil(width * plan.scale), math.ceil(height * plan.scale)))
        if drafted is not None:
            reduction = round(width / drafted[1][2])
    if orientation != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    lanczos = plan.scale > 1 or size[0] * size[1] <= AUTO_LANCZOS_MAX_PIXELS
    resample = Image.Resampling.LANCZOS if lanczos else Image.Resampling.HAMMING
    box = tuple(c / reduction for c in plan.crop_box)
    out = image.resize(size, resample, box=box, reducing_gap=cfg.reducing_gap)
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=cfg.quality)
    return True


def run_floor(index: list[dict], limit: int | None) -> dict:
    """Seconds per image (wall, with reading the bytes) over the corpus, or every k-th image of it."""
    cfg = BucketingConfig()
    table = build_bucket_table(cfg)
    rows = index if not limit or limit >= len(index) else index[:: math.ceil(len(index) / limit)]
    times: dict[int, float] = {}
    rendered = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    handles: dict[str, Any] = {}
    for row in rows:
        start = time.perf_counter()
        f = handles.get(row["path"])
        if f is None:
            if len(handles) > 64:
                for h in handles.values():
                    h.close()
                handles.clear()
            f = handles[row["path"]] = open(row["path"], "rb")
        f.seek(row["offset"])
        data = f.read(row["size"])
        rendered += floor_one(data, table, cfg)
        times[row["item"]] = time.perf_counter() - start
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for h in handles.values():
        h.close()
    return {"images": len(rows), "rendered": rendered, "wall_s": wall, "cpu_s": cpu, "times": times,
            "ips": len(rows) / wall, "ips_cpu": len(rows) / cpu}  # fmt: skip


# -- the pipeline ------------------------------------------------------------------------------------------
def profile_subset(root: Path, index: list[dict], n: int) -> tuple[list[dict], int]:
    """Sources that read about n of the corpus's images: its first Parquet tables and tars, alternately."""
    per_file = collections.Counter(
        (r["source"], r["source_key"].split(":")[0] if r["source"] == "laion" else r["source_key"].split("/")[0])
        for r in index if r["source"] in ("laion", "old"))  # fmt: skip
    tables = sorted(f for s, f in per_file if s == "laion")
    tars = sorted(f for s, f in per_file if s == "old")
    chosen: dict[str, list[str]] = {"laion": [], "old": []}
    total = 0
    while total < n and (tables or tars):
        for source, files in (("laion", tables), ("old", tars)):
            if files and total < n:
                f = files.pop(0)
                chosen[source].append(f)
                total += per_file[(source, f)]
    sources = [src for src in corpus_config(root, root)["sources"] if src["name"] in ("laion", "old")]
    for src in sources:
        folder = str(Path(src["path"]).parent)
        names = chosen[src["name"]]
        src["path"] = f"{folder}/{names[0]}" if len(names) == 1 else \
            f"{folder}/{{{','.join(names)}}}"  # fmt: skip
        src["kind"] = "table" if src["name"] == "laion" else "webdataset"
    return [src for src in sources if chosen[src["name"]]], total


def run_pipeline(root: Path, work: Path, code: dict, num_cpus: int, n: int, nsfw: bool, py_spy: str | None = None,
                 sources: list[dict] | None = None) -> dict:  # fmt: skip
    out = work / (f"out-{num_cpus}cpu" + ("-pyspy" if py_spy else ""))
    cfg = corpus_config(root, out, num_cpus=num_cpus, **{"filters.safety.nsfw.enabled": nsfw})
    if sources:
        cfg["sources"] = sources
    config_path = work / f"config-{num_cpus}cpu.yaml"
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd, env = curation_cmd(code, config_path)
    profile = None
    if py_spy:
        profile = work / f"pyspy-{num_cpus}cpu"
        cmd = [py_spy, "record", "--subprocesses", "--rate", "20", "--format", "raw", "-o", f"{profile}.txt",
               "--", *cmd]  # fmt: skip
    label = f"{num_cpus} worker{'s' if num_cpus > 1 else ''}" + (" under py-spy" if py_spy else "")
    print(f"pipeline: {label} ...", file=sys.stderr, flush=True)
    load = os.getloadavg()
    res = run_child(cmd, work / f"log-{num_cpus}cpu{'-pyspy' if py_spy else ''}.txt", 1.0, memory=False, env=env)
    run = json.loads((out / "run.json").read_text())
    sampler = res["sampler"]
    cpu = sampler.cpu_by_role()
    if py_spy:  # py-spy itself is the root process: count it apart
        cpu["py-spy"] = cpu.pop("driver")
    result = {
        "num_cpus": num_cpus,
        "wall_s": res["wall_s"],
        "elapsed_s": run.get("elapsed_s"),
        "stage_seconds": run.get("stage_seconds") or {},
        "stage_cpu_seconds": run.get("stage_cpu_seconds"),
        "counts": run.get("counts") or {},
        "cpu_s": cpu,
        "cpu_total_s": sum(v for k, v in cpu.items() if k != "py-spy"),
        "load": [load, os.getloadavg()],
        "drops": drop_counts(out),
        "kept_keys": kept_keys(out),
        "profile": str(profile) if profile else None,
    }
    result["ips"] = n / result["wall_s"]
    result["ips_per_core"] = result["ips"] / num_cpus
    result["ips_cpu"] = n / result["cpu_total_s"] if result["cpu_total_s"] else float("nan")
    print(f"pipeline: {label}: {result['wall_s']:.0f} s, {result['ips']:.1f} images/s", file=sys.stderr, flush=True)
    return result


def drop_counts(out: Path) -> dict[str, int]:
    table = pq.read_table(out / "manifest", columns=["status", "drop_stage", "drop_reason"]).to_pylist()
    return dict(collections.Counter(
        "kept" if r["status"] == "kept" else f"{r['drop_stage']}/{r['drop_reason']}" for r in table).most_common())  # fmt: skip


def kept_keys(out: Path) -> set[tuple[str, str]]:
    table = pq.read_table(out / "manifest", columns=["source", "source_key", "status"]).to_pylist()
    return {(r["source"], r["source_key"]) for r in table if r["status"] == "kept"}


# -- py-spy ------------------------------------------------------------------------------------------------
def find_py_spy() -> str | None:
    for candidate in (REPO / ".venv" / "bin" / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return None


IDLE_LEAVES = ("main_loop", "wait", "Condition.wait", "get_output_blocking", "select", "poll", "sleep", "_recv",
               "recv", "accept", "get_objects", "run_task_loop")  # fmt: skip


def summarize_profile(raw: Path, top: int = 25) -> list[str]:
    """Where the sampled time went: per process role, and the top functions of the workers and the driver.

    py-spy's raw output has one collapsed stack per line ("process ...;process ...;frame;frame N"); the
    process frames say which process the sample came from. Frames whose leaf is a wait (idle workers,
    the driver waiting on Ray) are counted apart as idle.
    """
    roles: collections.Counter = collections.Counter()
    own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    total: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    busy: collections.Counter = collections.Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        procs = [f for f in frames if f.startswith("process ")]
        frames = [f for f in frames if f and not f.startswith("process ")]
        role = _process_role(procs[-1] if procs else "")
        roles[role] += c
        if not frames:
            continue
        names = [_frame_name(f) for f in frames]
        if any(names[-1].split(" (")[0].endswith(w) for w in IDLE_LEAVES):
            roles[f"{role} (idle)"] += c
            continue
        busy[role] += c
        own[role][names[-1]] += c
        for name in set(names):
            total[role][name] += c
    samples = sum(v for k, v in roles.items() if "(idle)" not in k)
    lines = ["Samples per process (idle = waiting): "
             + ", ".join(f"{k} {v:,}" for k, v in roles.most_common()) + f"; total {samples:,}.", ""]  # fmt: skip
    for role in ("worker", "driver"):
        if not busy[role]:
            continue
        lines += [f"Busy samples of the {role} processes ({busy[role]:,}): top functions by own time and by total time",
                  "", "| function (own) | share | function (total, project and library frames) | share |",
                  "|---|---|---|---|"]  # fmt: skip
        totals = [(n, c) for n, c in total[role].most_common() if not _is_plumbing(n)][:top]
        for (a, ca), (b, cb) in zip(own[role].most_common(top), totals):
            lines.append(f"| `{a}` | {100 * ca / busy[role]:.1f}% | `{b}` | {100 * cb / busy[role]:.1f}% |")
        lines.append("")
    return lines


def _process_role(frame: str) -> str:
    if "curation.cli" in frame or "curation run" in frame:
        return "driver"
    if "default_worker.py" in frame or '"ray::' in frame:
        return "worker"
    if "/raylet " in frame or "gcs_server" in frame:
        return "raylet/gcs"
    return "other"


def _is_plumbing(name: str) -> bool:
    """Frames every busy sample passes through (thread and task entry points), useless in a total ranking."""
    return any(p in name for p in ("<module>", "_bootstrap", "Thread.run", "main_loop", "(worker.py)",
                                   "function_manager.py", "_raylet", "execute_task", "actor_method_executor"))


def _frame_name(frame: str) -> str:
    # "function (path/to/file.py:line)" -> "function (pkg/file.py)": the line dropped, the path shortened.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    parts = path.split("/")
    for anchor in ("site-packages", "code"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    short = "/".join(parts[-2:]) if len(parts) > 1 else (parts[0] if parts else "")
    return f"{name} ({short})" if short else name


# -- report ------------------------------------------------------------------------------------------------
def machine_line() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    import PIL
    import ray
    from PIL import features

    turbo = features.check_feature("libjpeg_turbo")
    return (f"Machine: {cpu}, nproc {os.cpu_count()}; Python {platform.python_version()}; Pillow {PIL.__version__} "
            f"(libjpeg-turbo {turbo}); Ray {ray.__version__}.")  # fmt: skip


def fmt_load(load: tuple) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def markdown(n: int, floor: dict, runs: list[dict], command: str, machine: str, loads: tuple, extra: list[str]) -> str:
    out = [
        "# End-to-end pipeline throughput beside the bare Pillow floor",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        machine,
        f"Load average (1, 5, 15 min) before: {fmt_load(loads[0])}; after: {fmt_load(loads[1])}.",
        "",
        f"Corpus: {n:,} generated photos (bench/photo_corpus.py). Floor: {floor['images']:,} images "
        f"({floor['rendered']:,} rendered, the rest no bucket takes), one process.",
        "",
        "| | images/s | images/s per core | ratio to floor (per core) | images per CPU-second | ratio to floor (CPU) | wall s |",
        "|---|---|---|---|---|---|---|",
        f"| bare Pillow floor | {floor['ips']:.1f} | {floor['ips']:.1f} | 1.00 | {floor['ips_cpu']:.1f} | 1.00 | "
        f"{floor['wall_s']:.0f} |",
    ]
    if floor.get("kept_ips"):
        out.append(f"| floor, rendering only what the pipeline kept | {floor['kept_ips']:.1f} | {floor['kept_ips']:.1f} | "
                   f"- | - | - | - |")  # fmt: skip
    for r in runs:
        out.append(
            f"| pipeline, {r['num_cpus']} CPU{'s' if r['num_cpus'] > 1 else ''} | {r['ips']:.1f} | {r['ips_per_core']:.1f} | "
            f"{r['ips_per_core'] / floor['ips']:.2f} | {r['ips_cpu']:.1f} | {r['ips_cpu'] / floor['ips_cpu']:.2f} | "
            f"{r['wall_s']:.0f} |"
        )
    by_cpus = {r["num_cpus"]: r for r in runs}
    if 1 in by_cpus and 2 in by_cpus:
        out += ["", f"Scaling 1 -> 2 workers (images/s): {by_cpus[2]['ips'] / by_cpus[1]['ips']:.2f}x."]
    out += ["", "Time per stage (from run.json; the wall time outside `elapsed_s` is Python and Ray start-up and "
            "shutdown):", ""]  # fmt: skip
    heads = " | ".join(f"{r['num_cpus']} CPU s | share" for r in runs)
    out += [f"| stage | {heads} |", "|---|" + "---|---|" * len(runs)]
    kinds = [("stage_cpu_seconds", "CPU s summed over workers"), ("stage_seconds", "wall s per phase")]
    for key, what in kinds:
        names = list(dict.fromkeys(k for r in runs for k in (r.get(key) or {})))
        if not names:
            continue
        out.append(f"| *{key} ({what})* |" + " | |" * len(runs))
        for name in names:
            cells = []
            for r in runs:
                values = r.get(key) or {}
                total = sum(values.values()) or 1.0
                v = values.get(name)
                cells.append("- | -" if v is None else f"{v:.1f} | {100 * v / total:.0f}%")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
    out.append("| elapsed_s (run.json) | " + " | ".join(f"{r['elapsed_s']:.1f} | " for r in runs) + "|")
    out.append("| wall of the command | " + " | ".join(f"{r['wall_s']:.1f} | " for r in runs) + "|")
    out += ["", "CPU seconds of the command's processes (sampled once a second):", ""]
    roles = list(dict.fromkeys(k for r in runs for k in r["cpu_s"]))
    out += ["| process | " + " | ".join(f"{r['num_cpus']} CPU" for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for role in roles:
        out.append(f"| {role} | " + " | ".join(f"{r['cpu_s'].get(role, 0):.0f}" for r in runs) + " |")
    out += ["", "What happened to the inputs (manifest):", ""]
    reasons = list(dict.fromkeys(k for r in runs for k in r["drops"]))
    out += ["| status / drop | " + " | ".join(f"{r['num_cpus']} CPU" for r in runs) + " |", "|---|" + "---|" * len(runs)]
    for reason in reasons:
        out.append(f"| {reason} | " + " | ".join(str(r["drops"].get(reason, 0)) for r in runs) + " |")
    return "\n".join(out + [""] + extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="corpus size")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_pipeline"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-workers", type=int, default=2, help="processes that generate the corpus")
    parser.add_argument("--cpus", type=int, nargs="*", default=[1, 2],
                        help="Ray num_cpus of each pipeline run (none: only the floor and the profile)")
    parser.add_argument("--floor-limit", type=int, help="time the floor on every k-th image, about this many")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--py-spy", action="store_true", help="also profile a 2-CPU run under py-spy record")
    parser.add_argument("--py-spy-n", type=int, help="profile on about this many images of the corpus (its first "
                        "tables and tars; default: all of it)")
    parser.add_argument("--nsfw", action="store_true", help="also run the open_nsfw safety model (default: off)")
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    root = build(work / f"corpus-{args.n}-{args.seed}", args.n, args.seed, "photos", args.gen_workers,
                 log=lambda s: print(s, file=sys.stderr, flush=True))  # fmt: skip
    index = pq.read_table(root / "index.parquet").to_pylist()
    code = snapshot_code(work / "code")
    load_before = os.getloadavg()
    floor = {"images": 0, "rendered": 0, "wall_s": float("nan"), "cpu_s": float("nan"), "ips": float("nan"),
             "ips_cpu": float("nan"), "times": {}}  # fmt: skip
    if not args.skip_floor:
        print("floor ...", file=sys.stderr, flush=True)
        floor = run_floor(index, args.floor_limit)
        print(f"floor: {floor['ips']:.1f} images/s ({floor['ips_cpu']:.1f} per CPU-second)", file=sys.stderr, flush=True)
    command = shlex.join([os.path.relpath(sys.executable, REPO), *sys.argv])
    machine = code_line(code) + "\n\n" + machine_line() + (
        "\n\nStages: the issue's CPU stages with their defaults; CLIP off; open_nsfw "
        + ("on (`--nsfw`)." if args.nsfw else "off (`--nsfw` adds it).")
    )
    runs: list[dict] = []
    extra: list[str] = []

    def report(final: bool) -> None:
        """Write what is measured so far (the report is rewritten after every step)."""
        if runs and floor["times"]:
            kept_only_floor(floor, index, runs[-1]["kept_keys"])
        load_after = os.getloadavg()
        pending = [] if final else ["", "*(partial: the benchmark is still running)*"]
        text = markdown(len(index), floor, runs, command, machine, (load_before, load_after), extra + pending)
        line = json.dumps({**summary_json(len(index), code, floor, runs, load_before, load_after), "nsfw": args.nsfw})
        if final:
            print(text)
            print(line)
        if args.out:
            write_report(args.out, text + "\n\n```json\n" + line + "\n```\n")

    for c in args.cpus:
        runs.append(run_pipeline(root, work, code, c, len(index), args.nsfw))
        report(final=False)
    if args.py_spy:
        py_spy = find_py_spy()
        if py_spy is None:
            extra += ["py-spy is not installed (`.venv/bin/pip install py-spy`): no profile."]
        else:
            n_prof = min(args.py_spy_n or len(index), len(index))
            subset = None if n_prof >= len(index) else profile_subset(root, index, n_prof)
            if subset is not None:
                n_prof = subset[1]
            prof = run_pipeline(root, work, code, 2, n_prof, args.nsfw, py_spy=py_spy, sources=subset and subset[0])
            raw = Path(prof["profile"] + ".txt")
            extra += [f"## py-spy profile of a 2-CPU run on {n_prof:,} photos ({prof['wall_s']:.0f} s under the "
                      "profiler, `py-spy record --subprocesses --rate 20 --format raw`)", "",
                      f"Raw collapsed stacks: `{raw}`.", ""]  # fmt: skip
            extra += summarize_profile(raw) if raw.exists() else ["py-spy wrote no profile."]
            print("\n".join(extra), file=sys.stderr, flush=True)
    report(final=True)


def kept_only_floor(floor: dict, index: list[dict], kept: set) -> None:
    """The floor's rate if it rendered only the images the pipeline kept (the others: a header read), over
    the images it timed."""
    timed = [row for row in index if row["item"] in floor["times"]]
    header = [floor["times"][row["item"]] for row in timed if (row["source"], row["source_key"]) not in kept]
    header_s = min(header) if header else 0.0
    seconds = sum(floor["times"][row["item"]] if (row["source"], row["source_key"]) in kept else header_s
                  for row in timed)  # fmt: skip
    floor["kept_ips"] = len(timed) / seconds


def summary_json(n: int, code: dict, floor: dict, runs: list[dict], load_before: tuple, load_after: tuple) -> dict:
    summary = {
        "bench": "pipeline", "n": n, "code": code["sha256"], "nproc": os.cpu_count(), "load_before": load_before,
        "load_after": load_after, "floor_ips_per_core": floor["ips"], "floor_ips_per_cpu_s": floor["ips_cpu"],
        "floor_images": floor["images"], "floor_kept_only_ips": floor.get("kept_ips"),
        **{f"pipeline_{r['num_cpus']}cpu": {"ips": r["ips"], "ips_per_core": r["ips_per_core"],
           "ips_per_cpu_s": r["ips_cpu"], "ratio_to_floor": r["ips_per_core"] / floor["ips"],
           "ratio_to_floor_cpu": r["ips_cpu"] / floor["ips_cpu"], "wall_s": r["wall_s"],
           "stage_seconds": r["stage_seconds"], "stage_cpu_seconds": r["stage_cpu_seconds"]}
           for r in runs},
    }  # fmt: skip
    by_cpus = {r["num_cpus"]: r for r in runs}
    if 1 in by_cpus and 2 in by_cpus:
        summary["scaling_1_to_2"] = by_cpus[2]["ips"] / by_cpus[1]["ips"]
    return summary


if __name__ == "__main__":
    main()
