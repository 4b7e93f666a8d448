"""Per-core speed and quality of render_to_bucket beside a bare Pillow loop, img2dataset's resizer and pyvips.

Every method makes the same thing: a T x T center crop, JPEG q95, for T in 256, 512, 1024. Methods run
interleaved on each image (so load from other processes hits them alike) on one pinned core, each image
`--repeats` times, and the best time per image counts. Speed is reported over all images (upscaling the
ones smaller than T) and over those that need no upscaling (what the pipeline renders with max_upscale=1).
Quality is PSNR of the decoded output against a float32 Lanczos resize of the full-resolution image over
each method's own crop, on a sample of images without EXIF rotation (img2dataset ignores EXIF orientation).

Needs img2dataset (OpenCV) and pyvips beside the project's packages, e.g.:
    /work/main/.venv/bin/python -m venv /tmp/benchenv --system-site-packages
    echo /work/main/.venv/lib/python3.11/site-packages > /tmp/benchenv/lib/python3.11/site-packages/project.pth
    /tmp/benchenv/bin/pip install img2dataset opencv-python-headless pyvips pyvips-binary
    /tmp/benchenv/bin/python bench/bench_bucketing.py --out bench/results/bucketing.md
"""

from __future__ import annotations

import os

# Single-threaded libraries, set before they load.
os.environ.setdefault("VIPS_CONCURRENCY", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import argparse
import io
import math
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import ExifTags, Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages.bucketing import Bucket, BucketingConfig, plan_for_bucket, render_to_bucket  # noqa: E402
from stages.decode import display_size, exif_orientation  # noqa: E402

TIERS = (256, 512, 1024)
MAX_PIXELS = 100_000_000
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    width: int  # as displayed, after EXIF orientation
    height: int
    rotated: bool  # stored sideways with an EXIF orientation that swaps the axes


@dataclass(frozen=True)
class Method:
    name: str
    render: Callable[[Sample, int], bytes]
    source_box: Callable[[Sample, int], Box]  # the crop it takes, in display coordinates


def load_samples(paths: list[Path]) -> list[Sample]:
    samples = []
    for path in paths:
        data = path.read_bytes()
        image = Image.open(io.BytesIO(data))
        orientation = exif_orientation(image)
        width, height = display_size(*image.size, orientation)
        samples.append(Sample(path.name, data, width, height, orientation in (5, 6, 7, 8)))
    return samples


def generate_set(photos: Path, out: Path, count: int, seed: int) -> list[Path]:
    """`count` JPEGs, long side 600-3000 px, cut and scaled from the real photos; 1 in 10 stored rotated."""
    marker = out / f".complete-{count}-{seed}"
    paths = [out / f"gen_{i:04d}.jpg" for i in range(count)]
    if marker.exists():
        return paths
    out.mkdir(parents=True, exist_ok=True)
    sources = []
    for path in sorted(photos.rglob("*")):
        if path.suffix.lower() in (".jpg", ".png"):
            image = Image.open(path)
            if max(image.size) >= 600:
                sources.append(ImageOps.exif_transpose(image).convert("RGB"))
    rng = random.Random(seed)
    for path in paths:
        long_side = rng.randint(600, 3000)
        aspect = math.exp(rng.uniform(math.log(1 / 2.5), math.log(2.5)))
        fitting = [s for s in sources if _largest_crop(s.size, aspect)[0] * 0.95 >= long_side]
        source = rng.choice(fitting) if fitting else max(sources, key=lambda s: _largest_crop(s.size, aspect)[0])
        crop_long, (crop_w, crop_h) = _largest_crop(source.size, aspect)
        shrink = rng.uniform(min(1.0, long_side / crop_long), 1.0)
        crop_w, crop_h = max(1, round(crop_w * shrink)), max(1, round(crop_h * shrink))
        left = rng.randint(0, source.width - crop_w)
        top = rng.randint(0, source.height - crop_h)
        factor = min(1.0, long_side / max(crop_w, crop_h))
        size = (max(1, round(crop_w * factor)), max(1, round(crop_h * factor)))
        box = (left, top, left + crop_w, top + crop_h)
        image = source.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
        params: dict = {"quality": rng.randint(85, 95)}
        if rng.random() < 0.1:
            orientation = rng.choice((6, 8))
            image = image.transpose(Image.Transpose.ROTATE_90 if orientation == 6 else Image.Transpose.ROTATE_270)
            exif = Image.Exif()
            exif[ExifTags.Base.Orientation] = orientation
            params["exif"] = exif.tobytes()
        image.save(path, "JPEG", **params)
    marker.touch()
    return paths


def _largest_crop(size: tuple[int, int], aspect: float) -> tuple[int, tuple[int, int]]:
    width, height = size
    crop_w, crop_h = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
    return round(max(crop_w, crop_h)), (round(crop_w), round(crop_h))


def methods(cfg: BucketingConfig) -> list[Method]:
    import cv2
    import pyvips
    from img2dataset.resizer import Resizer

    cv2.setNumThreads(1)
    resizers = {t: Resizer(t, "center_crop", False, encode_quality=95, encode_format="jpg") for t in TIERS}

    def plan_box(sample: Sample, t: int) -> Box:
        return plan_for_bucket(sample.width, sample.height, Bucket(t, t, t)).crop_box

    def ours(sample: Sample, t: int) -> bytes:
        plan = plan_for_bucket(sample.width, sample.height, Bucket(t, t, t))
        return render_to_bucket(sample.data, plan, cfg, MAX_PIXELS)

    def bare_pillow(sample: Sample, t: int) -> bytes:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(sample.data))).convert("RGB")
        out = image.resize((t, t), Image.Resampling.LANCZOS, box=plan_box(sample, t))
        buffer = io.BytesIO()
        out.save(buffer, "JPEG", quality=95)
        return buffer.getvalue()

    def img2dataset(sample: Sample, t: int) -> bytes:
        encoded, *_, error = resizers[t](io.BytesIO(sample.data))
        if error:
            raise RuntimeError(f"img2dataset failed on {sample.name}: {error}")
        return encoded

    def cover(sample: Sample, t: int) -> tuple[int, int, int, int]:
        """Size the image is scaled to so its short side is t, and the centered crop's offset in it."""
        scale = t / min(sample.width, sample.height)
        new_w, new_h = round(sample.width * scale), round(sample.height * scale)
        return new_w, new_h, (new_w - t) // 2, (new_h - t) // 2

    def cover_box(sample: Sample, t: int) -> Box:
        # img2dataset (albumentations SmallestMaxSize, CenterCrop) and the pyvips path share this geometry.
        # img2dataset works on the stored pixels, which for the unrotated images compared is the display.
        new_w, new_h, x0, y0 = cover(sample, t)
        sx, sy = sample.width / new_w, sample.height / new_h
        return (x0 * sx, y0 * sy, (x0 + t) * sx, (y0 + t) * sy)

    def vips(sample: Sample, t: int) -> bytes:
        # thumbnail: shrink-on-load for JPEG, then Lanczos3; EXIF orientation applied. Chroma subsampled
        # like Pillow's and OpenCV's JPEGs (libvips turns it off at Q >= 90), so PSNRs compare resizing.
        new_w, new_h, x0, y0 = cover(sample, t)
        image = pyvips.Image.thumbnail_buffer(sample.data, new_w, height=new_h, size="force")
        return image.crop(x0, y0, t, t).jpegsave_buffer(Q=95, subsample_mode="on")

    return [
        Method("render_to_bucket", ours, plan_box),
        Method("bare Pillow (LANCZOS)", bare_pillow, plan_box),
        Method("img2dataset (OpenCV)", img2dataset, cover_box),
        Method("pyvips thumbnail", vips, cover_box),
    ]


def time_tier(samples: list[Sample], methods_: list[Method], t: int, repeats: int) -> dict[str, list[float]]:
    """Best of `repeats` seconds per image and method; methods interleaved per image, order rotated."""
    best = {m.name: [math.inf] * len(samples) for m in methods_}
    for repeat in range(repeats):
        for i, sample in enumerate(samples):
            shift = (i + repeat) % len(methods_)
            for method in methods_[shift:] + methods_[:shift]:
                start = time.perf_counter()
                method.render(sample, t)
                best[method.name][i] = min(best[method.name][i], time.perf_counter() - start)
    return best


def reference(sample: Sample, box: Box, t: int) -> np.ndarray:
    image = Image.open(io.BytesIO(sample.data))
    rgb = ImageOps.exif_transpose(image).convert("RGB")
    channels = [c.convert("F").resize((t, t), Image.Resampling.LANCZOS, box=box) for c in rgb.split()]
    return np.clip(np.stack([np.asarray(c) for c in channels], axis=-1), 0, 255)


def psnr(encoded: bytes, ref: np.ndarray) -> float:
    out = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"), dtype=np.float64)
    mse = float(np.mean((out - ref) ** 2))
    return 10 * math.log10(255**2 / mse)


def quality_tier(samples: list[Sample], methods_: list[Method], t: int) -> dict[str, tuple[float, float]]:
    """Mean PSNR per method over all `samples` and over those that need no upscaling to reach t."""
    scores: dict[str, list[float]] = {m.name: [] for m in methods_}
    for sample in samples:
        refs: dict[Box, np.ndarray] = {}
        for method in methods_:
            box = tuple(float(c) for c in method.source_box(sample, t))
            if box not in refs:
                refs[box] = reference(sample, box, t)
            scores[method.name].append(psnr(method.render(sample, t), refs[box]))
    down = [i for i, s in enumerate(samples) if min(s.width, s.height) >= t]
    return {
        name: (float(np.mean(values)), float(np.mean([values[i] for i in down])) if down else float("nan"))
        for name, values in scores.items()
    }


def run_set(label: str, samples: list[Sample], methods_: list[Method], repeats: int, quality_sample: int) -> list[dict]:
    rows = []
    unrotated = [s for s in samples if not s.rotated]
    step = max(1, len(unrotated) // quality_sample)
    for t in TIERS:
        started = time.perf_counter()
        best = time_tier(samples, methods_, t, repeats)
        no_upscale = [i for i, s in enumerate(samples) if min(s.width, s.height) >= t]
        scored = unrotated[::step][:quality_sample]
        quality = quality_tier(scored, methods_, t)
        for method in methods_:
            times = best[method.name]
            rows.append(
                {
                    "set": label,
                    "tier": t,
                    "method": method.name,
                    "all_n": len(samples),
                    "all_ips": len(times) / sum(times),
                    "down_n": len(no_upscale),
                    "down_ips": len(no_upscale) / sum(times[i] for i in no_upscale) if no_upscale else float("nan"),
                    "psnr_all": quality[method.name][0],
                    "psnr_down": quality[method.name][1],
                    "psnr_n": len(scored),
                    "psnr_down_n": sum(min(s.width, s.height) >= t for s in scored),
                }
            )
        print(f"{label} {t}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def filter_rows(samples: list[Sample], img2dataset: Method, repeats: int, quality_sample: int) -> list[str]:
    """render_to_bucket's final filters at 1024x1024 on images that need no upscaling, beside img2dataset."""
    t = 1024
    candidates = [s for s in samples if min(s.width, s.height) >= t][:150]
    variants = [
        replace(methods(BucketingConfig(resample=name))[0], name=f"render_to_bucket resample={name}")
        for name in ("auto", "bicubic", "lanczos")
    ] + [img2dataset]
    best = time_tier(candidates, variants, t, repeats)
    scored = [s for s in candidates if not s.rotated][:quality_sample]
    quality = quality_tier(scored, variants, t)
    rows = [
        f"Final filter at 1024x1024, {len(candidates)} generated images that need no upscaling "
        f"({len(scored)} scored for PSNR):",
        "",
        "| method | images/s | PSNR (dB) |",
        "|---|---|---|",
    ]
    for v in variants:
        rows.append(f"| {v.name} | {len(candidates) / sum(best[v.name]):.1f} | {quality[v.name][0]:.2f} |")
    return rows + [""]


def versions() -> str:
    import cv2
    import img2dataset
    import pyvips
    import PIL

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    from importlib.metadata import version

    return (
        f"CPU: {cpu}; Python {platform.python_version()}; Pillow {PIL.__version__}; "
        f"OpenCV {cv2.__version__}; img2dataset {version(img2dataset.__name__)}; "
        f"pyvips {version('pyvips')} (libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}); "
        f"numpy {np.__version__}"
    )


def markdown(rows: list[dict], filters: list[str], command: str, setup: str, load: tuple[str, str]) -> str:
    names = list(dict.fromkeys(r["method"] for r in rows))
    out = [
        "# Bucket rendering: speed per core and quality",
        "",
        f"Command (from the repository root): `{command}`",
        "",
        setup,
        "",
        f"Load average (1, 5, 15 min) at start: {load[0]}; at end: {load[1]}. The machine is shared with other",
        "jobs; methods run interleaved per image and each image's best of the repeats counts, so a busy",
        "moment slows all methods alike.",
        "",
        "Every method makes a T x T center crop encoded as JPEG q95 with 4:2:0 chroma. render_to_bucket runs",
        "with the default BucketingConfig (JPEG draft decoding to at least the target size, reducing_gap 2,",
        "Lanczos for outputs up to 512x512 and for enlargements, Hamming for larger reductions). The bare",
        "Pillow loop decodes in full and resizes the same crop with LANCZOS. img2dataset's Resizer runs in",
        "center_crop mode (INTER_AREA down, Lanczos4 up). pyvips uses thumbnail (shrink-on-load, Lanczos3) to",
        "img2dataset's geometry. Timing includes planning the crop (microseconds) and nothing outside the call.",
        "PSNR is scored on images without EXIF rotation, since img2dataset ignores EXIF orientation; pyvips",
        "places upscaled pixels up to half a pixel off that geometry, which lowers its PSNR where it upscales.",
        "",
    ]
    for label in dict.fromkeys(r["set"] for r in rows):
        subset = [r for r in rows if r["set"] == label]
        out += [f"## {label}", "", "Images per second on one core (all images / only those needing no upscaling):", ""]
        out += ["| tier | images | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for t in TIERS:
            cells = {r["method"]: r for r in subset if r["tier"] == t}
            first = cells[names[0]]
            out.append(
                f"| {t}x{t} | {first['all_n']} / {first['down_n']} | "
                + " | ".join(f"{cells[n]['all_ips']:.1f} / {cells[n]['down_ips']:.1f}" for n in names)
                + " |"
            )
        out += [
            "",
            "Mean PSNR (dB) against a float Lanczos resize of the full image over the method's own crop "
            "(all scored images / only those needing no upscaling):",
            "",
        ]
        out += ["| tier | images | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
        for t in TIERS:
            cells = {r["method"]: r for r in subset if r["tier"] == t}
            first = cells[names[0]]
            out.append(
                f"| {t}x{t} | {first['psnr_n']} / {first['psnr_down_n']} | "
                + " | ".join(f"{cells[n]['psnr_all']:.2f} / {cells[n]['psnr_down']:.2f}" for n in names)
                + " |"
            )
        out.append("")
    out += ["## Final filter for large buckets", "", *filters]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=Path("/work/shared/data/photos"))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bench_bucketing"), help="for the generated set")
    parser.add_argument("--generated", type=int, default=1000, help="size of the generated set")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quality-sample", type=int, default=60, help="images per set and tier scored for PSNR")
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    args = parser.parse_args()

    os.sched_setaffinity(0, {args.core})
    real = load_samples(sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in (".jpg", ".png")))
    generated = load_samples(generate_set(args.photos, args.work_dir, args.generated, args.seed))
    methods_ = methods(BucketingConfig())
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rows = run_set(
        f"Real photos ({len(real)}, 102-5312 px, JPEG and PNG)", real, methods_, args.repeats, args.quality_sample
    )
    rows += run_set(
        f"Generated set ({len(generated)} JPEGs, long side 600-3000 px, 1 in 10 EXIF-rotated)",
        generated,
        methods_,
        args.repeats,
        args.quality_sample,
    )
    filters = filter_rows(generated, methods_[2], args.repeats, args.quality_sample)
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv])
    report = markdown(rows, filters, command, versions() + f"; pinned to core {args.core}.", (load_start, load_end))
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
