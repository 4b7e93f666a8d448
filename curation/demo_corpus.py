"""Generate a multi-source demo corpus with known ground truth.

Three sources of different kinds and priorities share planted duplicates: exact copies across sources,
near-duplicates (resized, re-encoded, cropped, brightened, grayscale), near-duplicate captions, and the
hostile cases a real crawl has (truncated and corrupt files, non-images, tiny and huge images, extreme
aspect ratios, alpha, unsafe captions). `ground_truth.json` says what each planted case is, so the demo can
show what the pipeline caught.
"""

from __future__ import annotations

import io
import json
import random
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

COLORS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 205, 40),
    "purple": (140, 60, 180), "orange": (240, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20),
}  # fmt: skip
SCENES = ["a quiet street at dusk", "mountains above a lake", "a bowl of fruit on a table", "a city skyline",
          "a forest path in autumn", "boats in a small harbour", "a desert road", "snow on pine trees",
          "a market stall with vegetables", "an old stone bridge", "a field of sunflowers", "a lighthouse on rocks"]  # fmt: skip
UNSAFE_CAPTIONS = ["graphic gore and a beheading scene", "explicit porn photo of a naked woman"]


@dataclass
class GroundTruth:
    cases: dict[str, list[str]] = field(default_factory=dict)  # case -> ["source/key", ...]

    def add(self, case: str, source: str, key: str) -> None:
        self.cases.setdefault(case, []).append(f"{source}/{key}")


def synthetic_photo(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """A smooth, textured, photo-like image whose layout is random, so distinct ones never look alike."""
    w, h = size
    nrng = np.random.default_rng(rng.randrange(2**32))
    # A low-resolution random field upsampled gives smooth large-scale structure, like a photo's.
    coarse = nrng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    im = Image.fromarray(coarse, "RGB").resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(4, 9)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(w // 10, w // 2), y0 + rng.randint(h // 10, h // 2)
        color = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=color)
    noise = nrng.normal(0, 6, size=(h, w, 3))
    arr = np.clip(np.asarray(im, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").filter(ImageFilter.GaussianBlur(0.6))


def jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb that costs nothing to store."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def logo_with_alpha(rng: random.Random, size: int = 320) -> Image.Image:
    """Black RGB everywhere; the shape lives only in alpha (the case a plain RGB conversion breaks)."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    x, y = rng.randrange(size // 2), rng.randrange(size // 2)
    draw.ellipse((x, y, x + size // 2, y + size // 2), fill=(0, 0, 0, 255))
    return im


def caption_for(rng: random.Random, i: int) -> str:
    color = rng.choice(list(COLORS))
    return f"photo {i}: {rng.choice(SCENES)} with a {color} accent"


def near_duplicate_variants(im: Image.Image) -> dict[str, bytes]:
    w, h = im.size
    return {
        "resized": jpeg(im.resize((w * 3 // 4, h * 3 // 4), Image.LANCZOS), 88),
        "reencoded": jpeg(im, 70),
        "cropped": jpeg(im.crop((w // 40, h // 40, w - w // 40, h - h // 40)), 90),
        "brightened": jpeg(ImageEnhance.Brightness(im).enhance(1.15), 90),
        "grayscale": jpeg(im.convert("L").convert("RGB"), 90),
    }


def generate(root: Path, n_images: int = 120, seed: int = 0, shapes: int = 0) -> dict:
    """Write the corpus under `root` and return the config dict that curates it.

    `shapes` > 0 adds a source of that many flat-shape scenes (model/train/shapes.py), the task on which
    a tiny NEO-unify shows it learns within minutes on a CPU.
    """
    rng = random.Random(seed)
    web, laion, old = root / "web", root / "laion", root / "old"
    for d in (web, laion / "images", old):
        d.mkdir(parents=True, exist_ok=True)
    truth = GroundTruth()
    base: list[tuple[Image.Image, str]] = []
    for i in range(n_images):
        w, h = rng.choice([(640, 480), (480, 640), (800, 600), (512, 512), (1024, 768), (768, 1024), (960, 540)])
        base.append((synthetic_photo(rng, (w, h)), caption_for(rng, i)))

    # web: a folder of images with .txt / .json sidecars (priority 2)
    for i, (im, cap) in enumerate(base):
        key = f"img_{i:04d}"
        (web / f"{key}.jpg").write_bytes(jpeg(im))
        if i % 3 == 0:
            (web / f"{key}.json").write_text(json.dumps({"caption": cap, "url": f"https://example.org/{key}"}))
        else:
            (web / f"{key}.txt").write_text(cap)
    _write_hostile_files(web, rng, truth)

    # laion: a Parquet table pointing at image files (priority 1): exact and near copies of web images
    rows = []
    for j in range(n_images // 2):
        i = j * 2
        im, cap = base[i]
        if j % 6 == 0:
            name, data, case = f"exact_{i:04d}.jpg", (web / f"img_{i:04d}.jpg").read_bytes(), "exact_duplicate"
        else:
            kind = ["resized", "reencoded", "cropped", "brightened", "grayscale"][j % 6 - 1]
            name, data, case = f"{kind}_{i:04d}.jpg", near_duplicate_variants(im)[kind], f"near_duplicate_{kind}"
        (laion / "images" / name).write_bytes(data)
        rows.append({"path": f"images/{name}", "caption": cap.capitalize() + ".", "key": name})
        truth.add(case, "laion", f"laion.parquet:{len(rows) - 1}")
    for k in range(n_images // 4):
        im = synthetic_photo(rng, (640, 480))
        name = f"unique_{k:04d}.jpg"
        (laion / "images" / name).write_bytes(jpeg(im))
        rows.append({"path": f"images/{name}", "caption": caption_for(rng, 1000 + k), "key": name})
    pq.write_table(pa.Table.from_pylist(rows), laion / "laion.parquet")

    # old: existing WebDataset shards (priority 3) with each sample's members NOT contiguous
    for t in range(2):
        with tarfile.open(old / f"{t:03d}.tar", "w") as tar:
            members = []
            for k in range(10):
                i = 1 + 2 * (t * 10 + k)
                if i >= n_images:
                    break
                im, cap = base[i]
                key = f"{t:03d}{k:04d}"
                members.append((f"{key}.txt", cap.encode()))
                data = (web / f"img_{i:04d}.jpg").read_bytes() if k % 2 == 0 else jpeg(im.resize((im.width // 2, im.height // 2)), 85)
                members.append((f"{key}.jpg", data))
                # old has the highest priority: its copies survive and the web originals are dropped.
                case = "survivor_exact_copy" if k % 2 == 0 else "survivor_small_near_copy"
                truth.add(case, "old", f"{t:03d}.tar/{key}")
            members.sort(key=lambda m: (m[0].split(".")[1], m[0]))  # all .jpg first, then all .txt
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (root / "ground_truth.json").write_text(json.dumps(truth.cases, indent=2, sort_keys=True))
    sources = [
        {"name": "web", "path": str(web), "priority": 2, "partition_size": 64},
        {"name": "laion", "path": str(laion / "*.parquet"), "priority": 1, "image_column": "path",
         "caption_column": "caption", "key_column": None},
        {"name": "old", "path": str(old / "{000..001}.tar"), "priority": 3},
    ]  # fmt: skip
    if shapes:
        from model.train.shapes import generate_shapes  # here: the model package imports torch

        generate_shapes(root / "shapes", shapes, seed=seed)
        sources.append({"name": "shapes", "path": str(root / "shapes"), "partition_size": 128})
    return {"sources": sources}


def _write_hostile_files(folder: Path, rng: random.Random, truth: GroundTruth) -> None:
    good = jpeg(synthetic_photo(rng, (640, 480)))
    cases: dict[str, tuple[str, bytes, str | None]] = {
        "truncated": ("bad_truncated.jpg", good[: len(good) // 3], "a truncated photo"),
        "corrupt": ("bad_corrupt.jpg", good[:200] + bytes(rng.randrange(256) for _ in range(4000)), "corrupt bytes"),
        "not_an_image": ("notes.pdf", b"%PDF-1.4 not really a pdf\n" * 20, None),
        "empty_file": ("empty.png", b"", "an empty file"),
        "too_small": ("tiny.png", png(synthetic_photo(rng, (64, 48))), "a tiny thumbnail"),
        "too_many_pixels": ("bomb.png", png_claiming_size(100_000, 100_000), "a decompression bomb"),
        "extreme_aspect": ("banner.jpg", jpeg(synthetic_photo(rng, (3000, 400))), "a very wide banner"),
        "alpha_logo_a": ("logo_a.png", png(logo_with_alpha(rng)), "a round logo"),
        "alpha_logo_b": ("logo_b.png", png(logo_with_alpha(rng)), "another round logo"),
        "unsafe_caption_1": ("unsafe_1.jpg", jpeg(synthetic_photo(rng, (640, 480))), UNSAFE_CAPTIONS[0]),
        "unsafe_caption_2": ("unsafe_2.jpg", jpeg(synthetic_photo(rng, (640, 480))), UNSAFE_CAPTIONS[1]),
    }
    for case, (name, data, caption) in cases.items():
        (folder / name).write_bytes(data)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_text(caption)
        truth.add(case, "web", name)
