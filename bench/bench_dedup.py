"""Near-duplicate search at a million: captions (MinHash LSH) and pHashes (pigeonhole bands), beside
datasketch's MinHashLSH, datatrove's 4-stage MinHash pipeline and a brute-force check on a sample.

Data, built once and shared by every method:
- captions: real web alt-text (/work/shared/data/captions/alttext_10000.parquet) mixed word by word into
  distinct captions of the same lengths and vocabulary, plus planted copies: edited near-duplicates (case and
  punctuation, one word added, replaced or deleted, two edits), exact copies and boilerplate strings.
- pHashes: uniform random 64-bit values, plus planted copies at Hamming distance 0..8 from distinct
  originals (radius 4: 0..4 are duplicates, 5..8 are not), and a dense blob of near-identical hashes that
  overflows the band-bucket cap on purpose.

Methods (each in its own process; peak memory, sampled every 0.2 s, is the largest sum over the process and
all its descendants -- Ray's raylet, GCS, agents and every worker and actor -- of their private and file
memory (Pss_Anon + Pss_File), plus the allocated size of the shared-memory files they hold, i.e. Ray's
object store as the kernel holds it, freed-but-still-allocated pages included; see PeakMemory):
- core: this project's vectorised functions in one process, no Ray (the floor).
- ray: the identify job (curation.dedup_job) on a local Ray with 2 CPUs, after a signature pass of plain Ray
  tasks, one per input Parquet file (see _ray_identify).
- datasketch: MinHash with shared permutations + update_batch, MinHashLSH insert + query, in one process.
- datatrove: MinhashDedupSignature -> Buckets -> Cluster -> Filter on LocalPipelineExecutor, 2 workers,
  with the same shingles (word bigrams, whitespace tokens after its own normalisation) and the same LSH
  bands (b=9, r=13), so it has the same S-curve; it does not verify candidates.

Quality: a sample of rows is compared with every row exactly (sparse shingle-set intersections for
captions, popcounts for pHashes). Recall: true pairs (Jaccard >= 0.8 / distance <= 4) that a method put in
one cluster. Precision: pairs a method put in one cluster whose true similarity passes the same bar.

    /work/main/.venv/bin/python -m venv /tmp/benchenv --system-site-packages
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/benchenv/lib/python3.11/site-packages/project.pth
    /tmp/benchenv/bin/pip install datatrove psutil
    RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled /tmp/benchenv/bin/python bench/bench_dedup.py \
        --out bench/results/dedup.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.dedup.banding import lsh_params, mix64  # noqa: E402
from stages.dedup.components import components  # noqa: E402
from stages.dedup.config import DedupConfig  # noqa: E402
from stages.dedup.identify import ATTRIBUTE_SCHEMA, band_rows, edges_in_partition, row_keys, with_partition  # noqa: E402
from stages.dedup.minhash import jaccard_estimate, minhash_captions, shingles, signatures_to_arrow  # noqa: E402
from stages.dedup.signatures import hamming  # noqa: E402

ALTTEXT = Path("/work/shared/data/captions/alttext_10000.parquet")
CFG = DedupConfig()
# Ray's object store for the Ray runs (a fixed size, so that runs on other machines compare).
OBJECT_STORE_BYTES = 1_000_000_000
# Rows per input Parquet file of the Ray runs (32 files at a million, as many as records units would be).
INPUT_FILE_ROWS = 31_250
CAPTION_IDS, PHASH_IDS = 1, 2  # salts of the two runs' sample_ids
BOILERPLATE = ["Click to enlarge", "image", "Photo", "No image available", "Product image 1"]


# -- data ------------------------------------------------------------------------------------------------
def make_captions(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    real = pq.read_table(ALTTEXT, columns=["TEXT"])["TEXT"].to_pylist()
    real = [t for t in real if t and t.strip()]
    pool = [w for t in real for w in t.split()]
    n_near, n_exact, n_boiler = n * 6 // 100, n * 2 // 100, n // 100
    n_base = n - n_near - n_exact - n_boiler
    base = []
    for t in rng.integers(len(real), size=n_base):
        words = real[t].split()
        swap = rng.random(len(words)) < 0.5
        picks = rng.integers(len(pool), size=len(words))
        base.append(" ".join(pool[p] if s else w for w, s, p in zip(words, swap, picks)))
    originals = rng.choice(n_base, size=n_near + n_exact, replace=False)
    near = [edit(base[i], rng, pool) for i in originals[:n_near]]
    exact = [base[i] for i in originals[n_near:]]
    boiler = [BOILERPLATE[i] if rng.random() < 0.5 else BOILERPLATE[i].upper() for i in rng.integers(5, size=n_boiler)]
    captions = base + near + exact + boiler
    return [captions[i] for i in rng.permutation(n)]


def edit(caption: str, rng: np.random.Generator, pool: list[str]) -> str:
    """One of the edits copies of alt-text go through."""
    words = caption.split()
    kind = rng.integers(5)
    if kind == 0:
        return caption.upper() + " !"
    position = int(rng.integers(len(words) + 1))
    if kind == 1:
        return " ".join(words + [pool[rng.integers(len(pool))]])
    if kind == 2 and words:
        words[min(position, len(words) - 1)] = pool[rng.integers(len(pool))]
    if kind == 3 and len(words) > 1:
        del words[min(position, len(words) - 1)]
    if kind == 4:
        words = words + [pool[rng.integers(len(pool))]]
        words[0] = words[0].lower() + ","
    return " ".join(words)


def make_phashes(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_near, n_exact, n_blob = n // 10, n // 100, 2_000
    n_base = n - n_near - n_exact - n_blob
    base = rng.integers(-(2**63), 2**63 - 1, size=n_base, dtype=np.int64)
    originals = rng.choice(n_base, size=n_near + n_exact, replace=False)
    near = flip(base[originals[:n_near]], rng.integers(0, 9, size=n_near), rng)
    exact = base[originals[n_near:]]
    blob = flip(np.full(n_blob, base[0]), rng.integers(0, 3, size=n_blob), rng)  # near-blank images
    hashes = np.concatenate([base, near, exact, blob])
    return hashes[rng.permutation(n)]


def flip(values: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each value with `counts[i]` distinct random bits flipped."""
    keys = rng.random((len(values), 64)).argsort(axis=1)
    masks = (keys < counts[:, None]).astype(np.uint64) << np.arange(64, dtype=np.uint64)
    return (values.view(np.uint64) ^ np.bitwise_or.reduce(masks, axis=1)).view(np.int64)


# -- the methods (each runs in its own process) ------------------------------------------------------------
def labels_from_pairs(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cluster label per row: the smallest row of its component (itself when unlinked)."""
    labels = np.arange(n, dtype=np.int64)
    nodes, component = components(a.astype(np.int64), b.astype(np.int64))
    labels[nodes] = component
    return labels


def _core_attributes(n: int, phash: np.ndarray | None, minhash: pa.Array | None, text_only: bool) -> pa.Table:
    """The identify job's attribute table, keyed by row number, without Ray."""
    return pa.table(
        {"key": np.arange(n, dtype=np.int64), "sample_id": pa.nulls(n, pa.string()), "source": pa.nulls(n, pa.string()),
         "source_priority": np.ones(n, np.int64), "area": np.zeros(n, np.int64), "sha256": pa.nulls(n, pa.string()),
         "pixel_hash": pa.nulls(n, pa.string()), "phash": phash if phash is not None else pa.nulls(n, pa.int64()),
         "caption": pa.nulls(n, pa.string()), "minhash": minhash if minhash is not None else pa.nulls(n, pa.binary()),
         "text_only": np.full(n, text_only)},
        schema=ATTRIBUTE_SCHEMA,
    )  # fmt: skip


def _core_edges(attrs: pa.Table, cfg: DedupConfig) -> tuple[pa.Table, dict]:
    """The job's band and per-partition steps, partition after partition in this one process."""
    bands = pa.concat_tables([band_rows(block, cfg) for block in attrs.to_batches(100_000)])
    partitions = max(1, -(-bands.num_rows // cfg.rows_per_partition))
    bands = with_partition(bands, "bucket", partitions)
    bands = bands.take(pa.compute.sort_indices(bands["part"]))
    bounds = np.searchsorted(bands["part"].to_numpy(), np.arange(partitions + 1))
    found = [edges_in_partition(bands.slice(lo, hi - lo), cfg) for lo, hi in zip(bounds[:-1], bounds[1:])]
    del bands
    edges = pa.concat_tables(found)
    stats = edges.filter(pa.compute.is_null(edges["a"]))
    return edges.filter(pa.compute.is_valid(edges["a"])), {
        "pathological_buckets": pa.compute.sum(stats["pathological_buckets"]).as_py(),
        "partitions": partitions,
    }


def core_captions(captions: list[str]) -> tuple[np.ndarray, dict]:
    cfg = CFG.model_copy(update={"exact": False, "pixels": False, "phash": False, "captions": False})
    t0 = time.perf_counter()
    signatures = np.empty((len(captions), cfg.num_perm), dtype=np.uint32)
    for i in range(0, len(captions), 50_000):
        signatures[i : i + 50_000] = minhash_captions(captions[i : i + 50_000], cfg)
    t1 = time.perf_counter()
    attrs = _core_attributes(len(captions), None, signatures_to_arrow(signatures).cast(pa.binary()), text_only=True)
    edges, stats = _core_edges(attrs, cfg)
    a, b = edges["a"].to_numpy(), edges["b"].to_numpy()
    close = jaccard_estimate(signatures[a], signatures[b]) >= cfg.threshold
    labels = labels_from_pairs(len(captions), a[close], b[close])
    return labels, {"signatures_s": t1 - t0, "identify_s": time.perf_counter() - t1, **stats}


def core_phash(hashes: np.ndarray) -> tuple[np.ndarray, dict]:
    cfg = CFG.model_copy(update={"exact": False, "pixels": False, "text": False, "captions": False})
    t0 = time.perf_counter()
    edges, stats = _core_edges(_core_attributes(len(hashes), hashes, None, text_only=False), cfg)
    labels = labels_from_pairs(len(hashes), edges["a"].to_numpy(), edges["b"].to_numpy())
    return labels, {"identify_s": time.perf_counter() - t0, **stats}


def sample_ids(n: int, salt: int) -> pa.Array:
    """n distinct ids shaped like the pipeline's (20 lower-case hex digits, curation.schema.make_sample_id),
    so the identify job keys them as it keys a real run's: the hex digits of mix64 (a bijection) of the row."""
    digits = _HEX_PAIRS[_id_values(n, salt).astype(">u8").view(np.uint8).reshape(n, 8)].reshape(n, 16)
    chars = np.concatenate([digits, np.full((n, 4), ord("0"), np.uint8)], axis=1)
    offsets = np.arange(0, 20 * n + 1, 20, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes()))


def _id_values(n: int, salt: int) -> np.ndarray:
    return mix64(np.arange(n, dtype=np.uint64) + np.uint64(salt << 40))


_HEX_PAIRS = np.array([[ord(c) for c in f"{b:02x}"] for b in range(256)], dtype=np.uint8)


def _ray_labels(decisions: pa.Table, n: int, salt: int) -> np.ndarray:
    """Row labels (the row of each row's cluster's survivor) from the decisions' sample_ids."""
    values = _id_values(n, salt)
    order = np.argsort(values)

    def rows(ids: pa.ChunkedArray) -> np.ndarray:
        return order[np.searchsorted(values[order], row_keys(ids).view(np.uint64))]

    labels = np.arange(n, dtype=np.int64)
    labels[rows(decisions["sample_id"])] = rows(decisions["dup_cluster"])
    return labels


def _ray_identify(box: list[pa.Table], cfg: DedupConfig, signature_pass: Callable | None) -> tuple[pa.Table, dict]:
    """Like the pipeline: records sit in Parquet files (written here, before Ray starts, as datatrove's
    method writes its JSONL input), a pass of Ray tasks adds the signatures and writes the records back
    (for captions), and the identify job reads the records files in its tasks, as the pipeline passes
    them. Ray starts as the pipeline starts it (curation.ray_adapter.ray_session), with 2 CPUs and the
    object store capped at OBJECT_STORE_BYTES."""
    import shutil

    import ray

    from curation.config import RayConfig
    from curation.dedup_job import file_pieces, identify, piece_rows
    from curation.ray_adapter import ray_session

    inputs, path = Path("/tmp/bench_dedup/inputs"), Path("/tmp/bench_dedup/records")
    for folder in (inputs, path):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    table = box.pop()
    written = inputs if signature_pass is not None else path
    written.mkdir(parents=True)
    path.mkdir(exist_ok=True)
    for i, start in enumerate(range(0, table.num_rows, INPUT_FILE_ROWS)):
        pq.write_table(table.slice(start, INPUT_FILE_ROWS), written / f"{i:05d}.parquet")
    del table
    pa.default_memory_pool().release_unused()
    inputs_written = time.perf_counter()
    with ray_session(RayConfig(num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, progress="off")):
        MEMORY.take()
        t0 = time.perf_counter()
        if signature_pass is not None:  # one Ray task per input file, like the pipeline's analysis units
            unit = ray.remote(_signature_unit)
            ray.get([unit.remote(f, path, signature_pass) for f in sorted(inputs.iterdir())])
        t1, signatures_peak = time.perf_counter(), MEMORY.take()
        files = [(str(f), pq.ParquetFile(f).metadata.num_rows) for f in sorted(path.glob("*.parquet"))]
        result = identify(file_pieces(files, piece_rows(sum(n for _, n in files), cfg)), cfg)
        decisions = pa.concat_tables(list(result.decisions.iter_batches(batch_format="pyarrow", batch_size=None)))
        t2, identify_peak = time.perf_counter(), MEMORY.take()
        spilled = _spilled_summary()
    stats = {"inputs_s": inputs_written - started, "ray_start_s": t0 - inputs_written,
             "ray_stop_s": time.perf_counter() - t2, "signatures_s": t1 - t0, "identify_s": t2 - t1, "signatures_peak_gib": signatures_peak,
             "identify_peak_gib": identify_peak, "phases": result.stats.seconds,
             "signatures_breakdown": MEMORY.phase_breakdowns[-2], "identify_breakdown": MEMORY.phase_breakdowns[-1],
             "object_store_spilled": spilled, "partitions": result.stats.partitions,
             "pathological_buckets": result.stats.pathological_buckets,
             "minhash_candidates": result.stats.minhash_candidates, "edges": result.stats.edges}  # fmt: skip
    return decisions, stats


def _signature_unit(source: Path, out: Path, fn: Callable[[pa.Table], pa.Table]) -> None:
    """One input file in, its records with signatures out (a records file of the pipeline's). Plain Ray
    tasks: through Ray Data (from_items + map_batches, as the pipeline's analysis runs) the 32 units of
    a million captions took 9.0 s instead of 4.9 s, Ray Data running 1.2 of these 0.3 s tasks at a time on
    2 CPUs on average (bench/results/dedup.md)."""
    pq.write_table(fn(pq.read_table(source)), out / source.name)


def _spilled_summary() -> str:
    """Ray's own account of object spilling: the raylet logs a 'Spilled ... MiB' line when it spills (Ray's
    memory_summary API needs grpc, which this environment lacks)."""
    import ray

    try:
        log = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "raylet.out"
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if "Spilled " in line]
    except Exception as e:  # internal paths: report rather than fail the benchmark
        return f"unavailable ({type(e).__name__})"
    return lines[-1][-160:] if lines else "no spilling"


def _minhash_column(batch: pa.Table) -> pa.Table:
    return batch.append_column("dedup.minhash", signatures_to_arrow(minhash_captions(batch["caption"], CFG)))


def ray_captions(box: list) -> tuple[np.ndarray, dict]:
    captions = box.pop()
    n = len(captions)
    records = pa.table({"sample_id": sample_ids(n, CAPTION_IDS), "source": pa.array(["alt"] * n),
                        "source_priority": pa.array(np.ones(n, np.int32)), "status": pa.array(["kept"] * n),
                        "width": pa.nulls(n, pa.int32()), "height": pa.nulls(n, pa.int32()), "caption": captions,
                        "image_path": pa.nulls(n, pa.string()), "image_bytes": pa.nulls(n, pa.binary())})  # fmt: skip
    del captions
    cfg = CFG.model_copy(update={"exact": False, "pixels": False, "phash": False, "captions": False})
    box.append(records)
    del records
    decisions, stats = _ray_identify(box, cfg, _minhash_column)
    return _ray_labels(decisions, n, CAPTION_IDS), stats


def ray_phash(box: list) -> tuple[np.ndarray, dict]:
    hashes = box.pop()
    n = len(hashes)
    records = pa.table({"sample_id": sample_ids(n, PHASH_IDS), "source": pa.array(["web"] * n),
                        "source_priority": pa.array(np.ones(n, np.int32)), "status": pa.array(["kept"] * n),
                        "width": pa.array(np.full(n, 640, np.int32)), "height": pa.array(np.full(n, 480, np.int32)),
                        "caption": pa.nulls(n, pa.string()), "image_path": pa.array(["x"] * n),
                        "image_bytes": pa.nulls(n, pa.binary()), "dedup.phash": hashes})  # fmt: skip
    del hashes
    cfg = CFG.model_copy(update={"exact": False, "pixels": False, "text": False, "captions": False})
    box.append(records)
    del records
    decisions, stats = _ray_identify(box, cfg, None)
    return _ray_labels(decisions, n, PHASH_IDS), stats


def datasketch_captions(captions: list[str]) -> tuple[np.ndarray, dict]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    template = MinHash(num_perm=CFG.num_perm, seed=CFG.minhash_seed, scheme=CFG.minhash_scheme)
    lsh = MinHashLSH(threshold=CFG.threshold, num_perm=CFG.num_perm)
    sketches = []
    for i, caption in enumerate(captions):
        m = MinHash(num_perm=CFG.num_perm, permutations=template.permutations, scheme=CFG.minhash_scheme)
        m.update_batch([s.encode("utf-8") for s in shingles(caption, CFG.shingle, CFG.shingle_size)])
        sketches.append(m)
        lsh.insert(i, m)
    t1 = time.perf_counter()
    left, right = [], []
    for i, m in enumerate(sketches):
        for j in lsh.query(m):
            if j != i:
                left.append(i)
                right.append(j)
    t2 = time.perf_counter()
    labels = labels_from_pairs(len(captions), np.array(left, np.int64), np.array(right, np.int64))
    return labels, {"signatures_s": t1 - t0, "identify_s": t2 - t1}


def datatrove_captions(captions: list[str]) -> tuple[np.ndarray, dict]:
    import shutil
    import struct

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.word_tokenizers import WordTokenizer

    class Whitespace(WordTokenizer):
        def word_tokenize(self, text: str) -> list[str]:
            return text.split()

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            raise NotImplementedError

    root = Path("/tmp/bench_dedup/datatrove")
    shutil.rmtree(root, ignore_errors=True)
    files, per_file = 2, -(-len(captions) // 2)
    (root / "input").mkdir(parents=True)
    for f in range(files):
        with open(root / "input" / f"{f:05d}.jsonl", "w") as fh:
            for i in range(f * per_file, min(len(captions), (f + 1) * per_file)):
                fh.write(json.dumps({"text": captions[i], "id": str(i)}) + "\n")
    bands, rows = lsh_params(CFG.threshold, CFG.num_perm)
    config = MinhashConfig(n_grams=CFG.shingle_size, num_buckets=bands, hashes_per_bucket=rows,
                           hash_config=HashConfig(precision=64, hash_fc="sha1"))  # fmt: skip
    stages = [
        [JsonlReader(str(root / "input")), MinhashDedupSignature(output_folder=str(root / "sigs"), config=config, language=Whitespace())],
        [MinhashDedupBuckets(input_folder=str(root / "sigs"), output_folder=str(root / "buckets"), config=config)],
        [MinhashDedupCluster(input_folder=str(root / "buckets"), output_folder=str(root / "remove"), config=config)],
        [JsonlReader(str(root / "input")), MinhashDedupFilter(input_folder=str(root / "remove")), JsonlWriter(str(root / "out"))],
    ]
    tasks = [files, bands, 1, files]
    t0 = time.perf_counter()
    for i, (pipeline, n_tasks) in enumerate(zip(stages, tasks)):
        LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=2, logging_dir=str(root / f"logs{i}")).run()
    elapsed = time.perf_counter() - t0
    left, right = [], []
    for dups in sorted((root / "buckets").glob("*.dups")):
        data = np.frombuffer(dups.read_bytes(), dtype=np.uint32).reshape(-1, 4)
        left.append(data[:, 0].astype(np.int64) * per_file + data[:, 1])
        right.append(data[:, 2].astype(np.int64) * per_file + data[:, 3])
    assert struct.calcsize("<4I") == 16
    labels = labels_from_pairs(len(captions), np.concatenate(left), np.concatenate(right))
    return labels, {"identify_s": elapsed}


METHODS: dict[str, Callable] = {
    "core_captions": core_captions,
    "core_phash": core_phash,
    "ray_captions": ray_captions,
    "ray_phash": ray_phash,
    "datasketch_captions": datasketch_captions,
    "datatrove_captions": datatrove_captions,
}


def smaps_rollup(pid: int) -> dict[str, int]:
    """Pss_Anon, Pss_File and Pss_Shmem of a process, in bytes (shared pages split among their users)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("Pss_Anon", "Pss_File", "Pss_Shmem"):
                out[name] = int(rest.split()[0]) * 1024
    return out


def shm_files(pid: int) -> dict[tuple[int, int], int]:
    """Files in /dev/shm a process holds open (Ray's plasma object store: created there, then unlinked),
    by (device, inode), with the bytes the file really occupies (tmpfs pages allocated, touched or not by
    any process still alive)."""
    files = {}
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith("/dev/shm/"):
                st = os.stat(f"{fd_dir}/{fd}")
                files[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        except OSError:
            pass
    return files


def process_kind(cmdline: list[str], me: int, pid: int) -> str:
    """driver (the benchmark process itself), worker (Ray workers and actors: 'ray::<task or actor>'),
    or ray_system (raylet, GCS, dashboard agent, runtime-env agent, log monitor, autoscaler monitor)."""
    if pid == me:
        return "driver"
    agent = cmdline and cmdline[0] in ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
    return "worker" if cmdline and cmdline[0].startswith("ray::") and not agent else "ray_system"


class PeakMemory:
    """Samples memory of this process and all its descendants (Ray's raylet, GCS, agents and workers are
    started by `ray.init` here, workers by the raylet) every `interval` s in a thread.

    total = sum over processes of (Pss_Anon + Pss_File) + the allocated size of every /dev/shm file they
    hold (Ray's object store). The object store is counted by what its file occupies, not by the pages each
    process happens to have mapped (Pss_Shmem), so freed-but-allocated store pages and pages of exited
    workers count too; nothing is counted twice. The breakdown at the peak (driver, workers, Ray's system
    processes, object store) and the plain PSS sum are kept beside it. `take()` returns the peak since the
    last take (GiB), so a method can report its phases apart."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.interval = interval
        self.stop, self.peak, self.overall = threading.Event(), 0, 0
        self.peak_breakdown: dict[str, float] = {}
        self.overall_breakdown: dict[str, float] = {}
        self.phase_breakdowns: list[dict[str, float]] = []
        self.timeline: list[tuple[float, dict]] | None = None  # (time, breakdown) of every sample, when a list
        self.cpu: dict[int, float] = {}  # user + system CPU seconds of every process seen, at its last sample
        self.lock = threading.Lock()
        self.psutil, self.me = psutil, psutil.Process()
        threading.Thread(target=self.sample, daemon=True).start()

    def measure(self) -> tuple[int, dict[str, float]]:
        parts = {"driver": 0, "worker": 0, "ray_system": 0, "object_store": 0, "pss_sum": 0}
        shm: dict[tuple[int, int], int] = {}
        processes = []
        for p in [self.me, *self.me.children(recursive=True)]:
            try:
                cmdline = p.cmdline()
                kind = process_kind(cmdline, self.me.pid, p.pid)
                mem = smaps_rollup(p.pid)
                shm.update(shm_files(p.pid))
                times = p.cpu_times()
            except (OSError, ValueError, StopIteration, self.psutil.Error):
                continue
            with self.lock:
                self.cpu[p.pid] = times.user + times.system
            own = mem.get("Pss_Anon", 0) + mem.get("Pss_File", 0)
            parts[kind] += own
            parts["pss_sum"] += sum(mem.values())
            if kind == "worker":
                processes.append(f"{cmdline[0][5:45]} {own / 2**20:.0f}M")
        parts["object_store"] = sum(shm.values())
        total = parts["driver"] + parts["worker"] + parts["ray_system"] + parts["object_store"]
        return total, {**{k: round(v / 2**30, 3) for k, v in parts.items()}, "workers": processes}

    def sample(self) -> None:
        while not self.stop.is_set():
            total, parts = self.measure()
            if self.timeline is not None:
                self.timeline.append((time.perf_counter(), parts))
            if total > self.peak:
                self.peak, self.peak_breakdown = total, parts
            if total > self.overall:
                self.overall, self.overall_breakdown = total, parts
            self.stop.wait(self.interval)

    def tree_cpu(self) -> float:
        """CPU seconds of this process and every descendant seen so far (exited ones at their last sample,
        so a process that lived less than one interval may be missed): unlike wall time, not inflated by
        other programs competing for the cores."""
        self.measure()
        with self.lock:
            return sum(self.cpu.values())

    def take(self) -> float:
        peak, self.peak = self.peak, 0
        self.phase_breakdowns.append(self.peak_breakdown)
        self.peak_breakdown = {}
        return peak / 2**30


MEMORY: PeakMemory | None = None  # set in the method's own process


def cpu_seconds() -> float:
    """User + system time of this process and its waited-for children (Ray's workers are not waited for:
    the Ray runs also report their own wall time, which contention on a shared machine inflates)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_method(name: str, data: Path, n: int, out: Path) -> None:
    global MEMORY
    MEMORY = PeakMemory()
    t0 = time.perf_counter()
    if name.endswith("captions"):
        inputs = pq.read_table(data / "captions.parquet")["caption"].to_pylist()[:n]
    else:
        inputs = np.load(data / "phash.npy")[:n]
    t1, cpu, tree_cpu = time.perf_counter(), cpu_seconds(), MEMORY.tree_cpu()
    if name.startswith("ray_"):  # boxed: the method drops the driver's copy once Ray has the rows
        box = [inputs]
        del inputs
        labels, stats = METHODS[name](box)
    else:
        labels, stats = METHODS[name](inputs)
    t2, cpu, tree_cpu = time.perf_counter(), cpu_seconds() - cpu, MEMORY.tree_cpu() - tree_cpu
    MEMORY.stop.set()
    np.save(out.with_suffix(".npy"), labels)
    out.write_text(json.dumps({"method": name, "n": n, "wall_s": t2 - t1, "cpu_s": cpu, "tree_cpu_s": tree_cpu,
                               "load_s": t1 - t0, "loadavg": os.getloadavg(),
                               "peak_gib": MEMORY.overall / 2**30,
                               "peak_breakdown": MEMORY.overall_breakdown,
                               **stats}))  # fmt: skip


# -- ground truth on a sample --------------------------------------------------------------------------------
def shingle_matrix(captions: list[str]) -> sp.csr_matrix:
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for caption in captions:
        indices.extend(vocab.setdefault(s, len(vocab)) for s in shingles(caption, CFG.shingle, CFG.shingle_size))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.int32)
    return sp.csr_matrix((data, np.array(indices), np.array(indptr)), shape=(len(captions), len(vocab)))


def caption_similarity(matrix: sp.csr_matrix, sample: np.ndarray) -> sp.csr_matrix:
    """Exact Jaccard of each sampled row with every row (only the non-zero ones)."""
    sizes = np.diff(matrix.indptr)
    shared = (matrix[sample] @ matrix.T).tocoo()
    union = sizes[sample][shared.row] + sizes[shared.col] - shared.data
    return sp.csr_matrix((shared.data / union, (shared.row, shared.col)), shape=(len(sample), matrix.shape[0]))


def pair_quality(labels: np.ndarray, sample: np.ndarray, is_true: Callable[[int, np.ndarray], np.ndarray]) -> dict:
    """Recall over true pairs of the sampled rows; precision over the pairs a method clustered with them."""
    true_pairs = found_true = clustered = clustered_true = 0
    for k, s in enumerate(sample):
        truth = is_true(k, np.arange(len(labels)))
        truth[s] = False
        same = labels == labels[s]
        same[s] = False
        true_pairs += int(truth.sum())
        found_true += int((truth & same).sum())
        clustered += int(same.sum())
        clustered_true += int((truth & same).sum())
    return {"true_pairs": true_pairs, "recall": found_true / max(true_pairs, 1),
            "clustered_pairs": clustered, "precision": clustered_true / max(clustered, 1)}  # fmt: skip


# -- driver ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--baseline-n", type=int, default=100_000, help="rows for datasketch and datatrove")
    parser.add_argument("--sample", type=int, default=1_000, help="rows checked against every row")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--datatrove-n", type=int, default=None, help="also run datatrove at this size")
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_dedup"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--run", nargs=3, metavar=("METHOD", "N", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_method(args.run[0], args.work, int(args.run[1]), Path(args.run[2]))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    captions = make_captions(args.n, seed=0)
    pq.write_table(pa.table({"caption": captions}), args.work / "captions.parquet")
    hashes = make_phashes(args.n, seed=1)
    np.save(args.work / "phash.npy", hashes)
    print(f"data: {args.n:,} captions and pHashes in {time.perf_counter() - t0:.1f} s", flush=True)

    runs = []
    for name in args.methods.split(","):
        sizes = [args.baseline_n] if name.startswith(("datasketch", "datatrove")) else [args.n, args.baseline_n]
        if name.startswith("datatrove") and args.datatrove_n:
            sizes.append(args.datatrove_n)
        sizes = list(dict.fromkeys(sizes))
        for n in sizes:
            out = args.work / f"{name}_{n}.json"
            cmd = [sys.executable, __file__, "--work", str(args.work), "--run", name, str(n), str(out)]
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            result = json.loads(out.read_text())
            result["labels"] = np.load(out.with_suffix(".npy"))
            runs.append(result)
            print(f"{name} n={n:,}: {result['wall_s']:.1f} s, {result['peak_gib']:.2f} GiB", flush=True)

    rng = np.random.default_rng(2)
    rows = []
    for n in sorted({r["n"] for r in runs}):
        sample = np.sort(rng.choice(n, size=min(args.sample, n), replace=False))
        t = time.perf_counter()
        similarity = caption_similarity(shingle_matrix(captions[:n]), sample)
        caption_truth = lambda k, _all, sim=similarity, n=n: np.asarray(  # noqa: E731
            (sim[k] >= CFG.threshold).todense()
        ).ravel()[:n]
        phash_truth = lambda k, _all, h=hashes[:n]: hamming(np.full(n, h[sample[k]]), h) <= CFG.phash_radius  # noqa: E731
        print(f"brute force on {len(sample)} rows of {n:,}: {time.perf_counter() - t:.1f} s", flush=True)
        for r in (r for r in runs if r["n"] == n):
            truth = caption_truth if r["method"].endswith("captions") else phash_truth
            rows.append({**{k: v for k, v in r.items() if k != "labels"}, **pair_quality(r["labels"], sample, truth)})
    report = render(rows, args)
    print(report)
    if args.out:
        args.out.write_text(report)


def render(rows: list[dict], args: argparse.Namespace) -> str:
    command = "RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled /tmp/benchenv/bin/python bench/bench_dedup.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]
    )
    lines = [
        "# Dedup identify: captions (MinHash LSH) and pHashes (pigeonhole bands)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Config: num_perm {CFG.num_perm}, threshold {CFG.threshold}, word bigrams, LSH (b, r) = "
        f"{lsh_params(CFG.threshold, CFG.num_perm)}, pHash radius {CFG.phash_radius} "
        f"({CFG.phash_radius + 1} bands), band bucket cap {CFG.band_bucket_cap}.",
        "",
        "Command:",
        "",
        f"    {command}",
        "",
        "| method | rows | wall s | CPU s (own process) | CPU s (all processes) | signatures s | identify s | peak GiB |"
        " true pairs | recall | clustered pairs | precision | pathological buckets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n']:,} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r.get('tree_cpu_s', float('nan')):.1f} | "
            f"{r.get('signatures_s', float('nan')):.1f} | "
            f"{r['identify_s']:.1f} | {r['peak_gib']:.2f} | {r['true_pairs']:,} | {r['recall']:.4f} | "
            f"{r['clustered_pairs']:,} | {r['precision']:.4f} | {r.get('pathological_buckets', '')} |"
        )
    lines += [
        "",
        "Ray runs, seconds per identify phase, peak GiB of the signature pass / the identify job, and what made",
        "the identify job's peak (GiB: the driver, Ray's worker processes, Ray's other processes, the object",
        "store's allocated shared memory; PSS: the plain sum of PSS of the same processes) and spilling:",
        "",
    ]
    for r in (r for r in rows if "phases" in r):
        lines.append(
            f"- {r['method']} {r['n']:,}, wall time: input files written {r['inputs_s']:.1f}, Ray start "
            f"{r['ray_start_s']:.1f}, signature pass {r['signatures_s']:.1f}, identify {r['identify_s']:.1f}, Ray stop "
            f"{r['ray_stop_s']:.1f}, the rest (imports, building the records, reading the labels) "
            f"{r['wall_s'] - r['inputs_s'] - r['ray_start_s'] - r['signatures_s'] - r['identify_s'] - r['ray_stop_s']:.1f}"
        )
    for r in (r for r in rows if "phases" in r):
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items())
        b = r.get("identify_breakdown", {})
        where = ", ".join(f"{k} {b[k]:.2f}" for k in ("driver", "worker", "ray_system", "object_store", "pss_sum") if k in b)
        lines.append(
            f"- {r['method']} {r['n']:,}: {phases}; peak {r['signatures_peak_gib']:.2f} / {r['identify_peak_gib']:.2f} "
            f"({where}; workers: {', '.join(b.get('workers', []))}); spilling: {r.get('object_store_spilled', '?')}"
        )
    lines += ["", "Against datatrove on the same captions, same run (its time over ours):", ""]
    for baseline in (r for r in rows if r["method"] == "datatrove_captions"):
        for r in (r for r in rows if r["method"] in ("ray_captions", "core_captions") and r["n"] == baseline["n"]):
            lines.append(
                f"- {r['method']} {r['n']:,}: wall {baseline['wall_s'] / r['wall_s']:.1f}x "
                f"({baseline['wall_s']:.1f} / {r['wall_s']:.1f} s), CPU s of all processes "
                f"{baseline['tree_cpu_s'] / r['tree_cpu_s']:.1f}x, recall {r['recall']:.4f} vs {baseline['recall']:.4f}"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
