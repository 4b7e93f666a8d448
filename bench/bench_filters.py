"""How much the CPU filters add to decoding: quality scores on the small analysis image plus every caption and
safety filter stage, against a plain full decode of the same images. open_nsfw (a ResNet-50) is timed apart.

    .venv/bin/python bench/bench_filters.py [--photos DIR] [--captions PARQUET] [--repeat 5]

CPU milliseconds per image, in one process and thread, best of --repeat interleaved rounds, after setup
(models and lists loaded):
- full decode: `Image.open(bytes).load()`, the file already in memory;
- analysis decode: the analysis pass's own small decode (`stages.decode.decode` with JPEG draft + shrink to 256);
- quality scores: `QualityAnnotator` on the small image;
- filter stages: every stage `filter_stages` builds (PII scrub, caption scores + language, image and caption
  blocklists, safety/image/caption thresholds, caption content, language allow-list) over Arrow batches of 64,
  as the pipeline runs them, on 640 records (the images cycled) with real web alt-text captions;
- open_nsfw: `OpenNsfwAnnotator` on the small image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from annotators.nsfw import OpenNsfwAnnotator
from annotators.quality import QualityAnnotator
from curation import schema as rec
from filters.assemble import filter_stages
from filters.config import FiltersConfig
from stages.analyze import _shrink
from stages.annotator import AnalysisImage
from stages.decode import decode, display_size

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
BATCH = 64  # RayConfig.batch_size: the rows a stage gets per call in the pipeline
FILTER_ROWS = 10 * BATCH  # records the filter stages run over (images cycled), so per-batch costs amortise as in a run


def cpu_seconds(fn: Callable[[], object]) -> float:
    """CPU time of this (single-threaded) process: steady when other jobs share the machine, unlike wall time."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def best_interleaved(steps: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best of `repeat` rounds, each round running every step once, so a busy spell hits all steps alike."""
    best = {name: float("inf") for name in steps}
    for _ in range(repeat):
        for name, fn in steps.items():
            best[name] = min(best[name], cpu_seconds(fn))
    return best


def full_decode(datas: list[bytes]) -> None:
    for data in datas:
        with Image.open(io.BytesIO(data)) as im:
            im.load()


def analysis_images(datas: list[bytes]) -> list[AnalysisImage]:
    out = []
    for data in datas:
        rgb, alpha, facts = decode(data, 200_000_000, 30.0, 256)
        w, h = display_size(facts["width"], facts["height"], facts["orientation"])
        out.append(AnalysisImage(_shrink(rgb, 256), w, h, data, _shrink(alpha, 256) if alpha else None))
    return out


def bench_config(blocklist: Path) -> FiltersConfig:
    """Every CPU filter on, including the optional ones (language allow-list, image blocklist)."""
    return FiltersConfig.model_validate(
        {
            "caption": {"language": {"allowed": ["en", "de", "fr", "es"]}},
            "safety": {"image_blocklist": {"enabled": True, "files": [str(blocklist)]}},
        }
    )


def write_blocklist(path: Path, rng: np.random.Generator) -> Path:
    """100 sha256 and 100 pHash entries, none of them matching, so every row goes through every check."""
    lines = [f"sha256:{hashlib.sha256(bytes([i])).hexdigest()}" for i in range(100)]
    lines += [f"phash:{int(v):016x}" for v in rng.integers(0, 2**63, 100)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scored_records(images: list[AnalysisImage], captions: list[str], rng: np.random.Generator) -> list[dict]:
    """FILTER_ROWS records as the analysis pass leaves them: image facts, quality and NSFW scores, a caption."""
    quality = QualityAnnotator()
    rows = []
    for i in range(FILTER_ROWS):
        image = images[i % len(images)]
        rows.append(
            rec.new_record(
                "bench",
                f"{i}",
                1,
                caption=captions[i % len(captions)],
                sha256=hashlib.sha256(image.data).hexdigest(),
                width=image.display_width,
                height=image.display_height,
                frames=1,
                **quality.annotate({}, image),
                **{"safety.nsfw": float(rng.uniform(0, 0.2)), "dedup.phash": int(rng.integers(-(2**63), 2**63 - 1))},
            )
        )
    return rows


def run_filter_stages(cfg: FiltersConfig, rows: list[dict]) -> Callable[[], None]:
    stages = filter_stages(cfg)
    columns: dict[str, pa.DataType] = {**QualityAnnotator.output_columns, **OpenNsfwAnnotator.output_columns}
    columns["dedup.phash"] = pa.int64()
    for stage in stages:
        columns.update(stage.output_columns)
    schema = rec.record_schema(columns)
    batches = [rec.to_table(rows[i : i + BATCH], schema) for i in range(0, len(rows), BATCH)]
    for stage in stages:
        stage.bind(schema)
        stage.ensure_setup()

    def run() -> None:
        for batch in batches:
            for stage in stages:
                batch = stage(batch)

    return run


def measure(name: str, paths: list[Path], captions: list[str], repeat: int, blocklist: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    datas = [p.read_bytes() for p in paths]
    images = analysis_images(datas)
    quality = QualityAnnotator()
    nsfw = OpenNsfwAnnotator()
    nsfw.setup()
    filters = run_filter_stages(bench_config(blocklist), scored_records(images, captions, rng))
    n = len(paths)
    best = best_interleaved(
        {
            "full decode": lambda: full_decode(datas),
            "analysis decode": lambda: analysis_images(datas),
            "quality scores": lambda: [quality.annotate({}, im) for im in images],
            "filter stages": filters,
        },
        repeat,
    )
    best["open_nsfw"] = best_interleaved({"open_nsfw": lambda: [nsfw.annotate({}, im) for im in images]}, 2)[
        "open_nsfw"
    ]
    rows_per_step = {"filter stages": FILTER_ROWS}
    result = {k: v / rows_per_step.get(k, n) * 1000 for k, v in best.items()}
    result["cpu filters"] = result["quality scores"] + result["filter stages"]
    megapixels = statistics.mean(im.display_width * im.display_height for im in images) / 1e6
    print(f"\n### {name}: {n} images, mean {megapixels:.2f} MP\n")
    print("| step | ms per image | vs full decode |")
    print("|---|---:|---:|")
    for step in ("full decode", "analysis decode", "quality scores", "filter stages", "cpu filters", "open_nsfw"):
        print(f"| {step} | {result[step]:.2f} | {result[step] / result['full decode']:.0%} |")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=SHARED / "photos")
    parser.add_argument("--captions", type=Path, default=SHARED / "captions" / "alttext_10000.parquet")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    captions = [c for c in pq.read_table(args.captions, columns=["TEXT"])["TEXT"].to_pylist() if c]
    with tempfile.TemporaryDirectory() as tmp:
        blocklist = write_blocklist(Path(tmp) / "blocklist.txt", np.random.default_rng(1))
        measure("all photos", paths, captions, args.repeat, blocklist)
        web = [p for p in paths if p.parent.name == "coco"]
        if web:
            measure("COCO photos only (web size, ~640x480)", web, captions, args.repeat, blocklist)


if __name__ == "__main__":
    main()
