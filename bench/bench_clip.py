"""Images/s of the CLIP stage on CPU for two model sizes, batched and one by one.

The weights are random (no CLIP weights can be downloaded here; speed does not depend on their values). Each
model is saved to a temporary checkpoint and loaded through the stage's own path (`ClipConfig.checkpoint` ->
`ClipStage.setup` -> `ClipEncoder`). Inputs: the COCO photos of shared/data with their first human caption,
as rows holding the JPEG bytes, repeated up to `--images`.

Two measures per model and mode:
- stage: `ClipStage.process` over the rows: read, JPEG draft decode, preprocess, image and caption encode,
  the margin rule and the sidecar write;
- encoder: `ClipEncoder.encode_images` on images decoded beforehand (the model alone).
Batched hands `--batch-size` rows per call; one by one hands one row per call, as an unbatched UDF would.
Modes alternate within each repeat (so load from other processes hits them alike); the best repeat counts.

    .venv/bin/python bench/bench_clip.py --out bench/results/clip.md
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from annotators.clip import ClipStage  # noqa: E402
from annotators.clip_config import ClipConfig  # noqa: E402
from curation import schema as rec  # noqa: E402
from curation.config import DecodeConfig  # noqa: E402
from stages.dedup_apply import ApplyDedupStage  # noqa: E402
from stages.decode import decode  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos"
MODES = ("batched", "one by one")


@dataclass(frozen=True)
class Result:
    model: str
    params_m: float
    mode: str
    stage_ips: float
    encoder_ips: float


def coco_photos() -> list[dict[str, str]]:
    with open(PHOTOS / "photos.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["file"].startswith("coco/")]


def coco_rows(n: int) -> list[dict]:
    coco = coco_photos()
    rows = []
    for i in range(n):
        photo = coco[i % len(coco)]
        caption = photo["captions"].split("||")[0].strip()
        data = (PHOTOS / photo["file"]).read_bytes()
        rows.append(rec.new_record("coco", f"{i}:{photo['file']}", 1, caption=caption, caption_original=caption, image_bytes=data))
    return rows


def random_checkpoint(model: str, folder: Path) -> tuple[Path, float]:
    torch.manual_seed(0)
    clip = open_clip.create_model(model)
    path = folder / f"{model}.pt"
    torch.save(clip.state_dict(), path)
    return path, sum(p.numel() for p in clip.parameters()) / 1e6


def rate(n: int, run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return n / (time.perf_counter() - t0)


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def bench_model(model: str, rows: list[dict], args: argparse.Namespace, work: Path) -> list[Result]:
    checkpoint, params_m = random_checkpoint(model, work)
    stages = {}
    for mode, batch in (("batched", args.batch_size), ("one by one", 1)):
        cfg = ClipConfig(enabled=True, model=model, pretrained=None, checkpoint=str(checkpoint), device="cpu",
                         batch_size=batch, num_cpus=args.threads, margin=0.03)  # fmt: skip
        stage = ClipStage(cfg, DecodeConfig(), str(work / "embeddings" / model / mode.replace(" ", "_")))
        stage.bind(rec.record_schema({**ApplyDedupStage.output_columns, **stage.extra_columns}))
        stage.ensure_setup()
        stages[mode] = stage
    encoder = stages["batched"].encoder
    images = [decode(r["image_bytes"], 10**8, 30.0, encoder.image_side)[0] for r in rows]
    tables = {m: [rec.to_table(c, stages[m].schema) for c in chunks(rows, stages[m].cfg.batch_size)] for m in MODES}
    image_chunks = {"batched": chunks(images, args.batch_size), "one by one": chunks(images, 1)}
    for mode in MODES:  # warm-up: first calls allocate
        stages[mode].process(tables[mode][0])
    stage_rates: dict[str, list[float]] = {m: [] for m in MODES}
    encoder_rates: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            stage_rates[mode].append(rate(len(rows), lambda: [stages[mode].process(t) for t in tables[mode]]))
            encoder_rates[mode].append(rate(len(rows), lambda: [encoder.encode_images(c) for c in image_chunks[mode]]))
    return [Result(model, params_m, m, max(stage_rates[m]), max(encoder_rates[m])) for m in MODES]


def report(results: list[Result], args: argparse.Namespace, load_before: tuple, load_after: tuple) -> str:
    command = ".venv/bin/python bench/bench_clip.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    sides = [int(r[k]) for r in coco_photos() for k in ("width", "height")]
    sizes = f"{min(sides)}-{max(sides)} px a side"
    lines = [
        "# CLIP stage speed on CPU",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores shared with other jobs, no GPU; "
        f"torch {torch.__version__} with {args.threads} threads, open_clip {open_clip.__version__}. "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.1f}' for x in load_before)}; "
        f"after: {', '.join(f'{x:.1f}' for x in load_after)}.",
        "",
        f"Random weights (none can be downloaded here; speed does not depend on them), {args.images} COCO photos "
        f"(shared/data, JPEG, {sizes}) with one caption each, fp32, best of {args.repeats} repeats. "
        f"Batched: {args.batch_size} rows per call; one by one: 1 row per call.",
        "",
        "| model | params (M) | mode | stage images/s | image encoder images/s |",
        "|---|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r.model} | {r.params_m:.0f} | {r.mode} | {r.stage_ips:.1f} | {r.encoder_ips:.1f} |")
    lines += [
        "",
        "stage: `ClipStage.process` end to end (read bytes, JPEG draft decode, preprocess, image and caption "
        "encode, margin rule, sidecar Parquet write). image encoder: `ClipEncoder.encode_images` on images "
        "decoded beforehand.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ViT-S-32-alt", "ViT-B-32"])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()
    rows = coco_rows(args.images)
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_clip_") as tmp:
        for model in args.models:
            results += bench_model(model, rows, args, Path(tmp))
            print(results[-2], results[-1], sep="\n", flush=True)
    text = report(results, args, load_before, os.getloadavg())
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
