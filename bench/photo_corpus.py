"""Generated multi-source corpora for the pipeline benchmarks (bench_pipeline.py, bench_memory.py).

Two kinds, both seeded and deterministic whatever the number of worker processes, and written once: a
finished corpus leaves a marker file (`.complete.json`, holding the parameters) and is reused as it is.

photos (bench_pipeline.py, issue 8): N realistic photos cut from the real photos in
    ../shared/data/photos/ (tests/data/photos/ when ../shared is absent): a random crop of a random photo
    (35-100 % of the largest crop of a drawn aspect ratio, which is a common photo shape or log-uniform in
    [1/3, 3]), mirrored half of the time, slightly brightened or darkened, scaled to a long side drawn
    log-uniform in [300, 4000] px (Lanczos) and JPEG-encoded at quality 70-95 (1 in 10 at 4:4:4 chroma,
    1 in 10 stored sideways with an EXIF orientation). Planted duplicates: 5 % exact copies of earlier
    images (same bytes, same caption, any source) and 5 % resized and re-encoded copies (50-85 % of the
    size, quality 60-85, another caption). Three sources of equal size: `web`, a folder of JPEGs with
    .txt sidecar captions; `laion`, Parquet tables (1000 rows each) of relative image paths and captions;
    `old`, WebDataset tars (500 samples each: .jpg, .txt, .json). Captions are real web alt-text
    (../shared/data/captions/alttext_10000.parquet; generated sentences when absent), each unique image
    taking one, each alt-text serving at most ceil(N / 10000) unique images.

small (bench_memory.py, issue 7): N small synthetic JPEGs (96-192 px sides, smooth random fields with
    shapes and grain, quality 80-90, a few KB each, about 1 ms to make), with 2 % exact copies, split
    40 % `files` (a folder with .txt sidecars), 40 % `paths` (Parquet tables of 5000 rows: relative paths
    + captions) and 20 % `inline` (Parquet tables of 5000 rows holding the JPEG bytes). Captions are 6-14
    words drawn from the alt-text vocabulary, so near-duplicate captions are rare.

Every corpus has `index.parquet`: one row per input (item, source, source_key as the pipeline names it,
path, offset and size of the bytes, stored width and height, EXIF orientation, plant: unique | exact |
resized, original item), and `corpus_config(root, output, ...)` gives the pipeline config that reads it.

    .venv/bin/python bench/photo_corpus.py /tmp/bench_pipeline/corpus --n 20000      # photos
    .venv/bin/python bench/photo_corpus.py /tmp/bench_memory/c10k --kind small --n 10000
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import tarfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import ExifTags, Image, ImageEnhance, ImageOps

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
VERSION = 1
MARKER = ".complete.json"
COMMON_ASPECTS = (4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16, 1.0)
TABLE_ROWS = 1000  # photos corpus: rows per Parquet table
TAR_SAMPLES = 500  # photos corpus: samples per tar
FOLDER_CHUNK = 250  # files per generation task
SMALL_TABLE_ROWS = 5000  # small corpus: rows per Parquet table


def default_photos() -> Path:
    shared = SHARED / "photos"
    return shared if shared.is_dir() else REPO / "tests" / "data" / "photos"


def default_captions() -> Path | None:
    path = SHARED / "captions" / "alttext_10000.parquet"
    return path if path.exists() else None


# -- captions ----------------------------------------------------------------------------------------------
FALLBACK_WORDS = (
    "a the quiet old small bright red green blue street house dog cat river mountain lake tree city night "
    "morning boat bridge market garden field road beach window door table chair flower bird car train sky "
    "cloud snow rain light shadow people child woman man running sitting standing near under over with"
).split()


def load_alt_texts(path: Path | None) -> list[str | None]:
    if path is None:
        rng = random.Random(12345)
        return [" ".join(rng.choice(FALLBACK_WORDS) for _ in range(rng.randint(4, 12))) for _ in range(10000)]
    table = pq.read_table(path)
    column = "TEXT" if "TEXT" in table.column_names else table.column_names[-1]
    return table.column(column).to_pylist()


def caption_vocabulary(texts: list[str | None]) -> list[str]:
    words = sorted({w for t in texts if t for w in t.split() if w.isalpha() and 2 <= len(w) <= 14})
    return words or FALLBACK_WORDS


# -- item plans (driver side, cheap) ------------------------------------------------------------------------
@dataclass
class PhotoSpec:
    """Everything needed to make one image, independent of every other image."""

    base: int  # index into the sorted base photos
    crop: tuple[float, float, float, float]  # fractions of the upright base photo
    size: tuple[int, int]  # output size before the optional sideways storage
    mirror: bool
    brightness: float
    quality: int
    subsampling: int  # 2 = 4:2:0, 0 = 4:4:4
    orientation: int  # 1, or 6 / 8: stored sideways with that EXIF orientation
    recode: tuple[float, int] | None = None  # resized copy: (scale, quality) applied to the original's bytes


@dataclass
class Item:
    item: int
    source: str
    key: str  # the file name inside its folder / the table's image folder / the tar
    plant: str  # unique | exact | resized
    original: int
    caption: str | None
    spec: Any = None
    extra: dict = field(default_factory=dict)


def base_photos(photos: Path) -> list[Path]:
    return sorted(p for p in photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def upright_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
        w, h = im.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def plan_photos(n: int, seed: int, photos: Path, captions: Path | None) -> list[Item]:
    rng = random.Random(seed)
    sizes = [upright_size(p) for p in base_photos(photos)]
    if not sizes:
        raise SystemExit(f"no photos under {photos}")
    texts = load_alt_texts(captions)
    n_exact, n_resized = round(0.05 * n), round(0.05 * n)
    n_unique = n - n_exact - n_resized
    # Each alt-text serves at most ceil(n_unique / len(texts)) unique images: a fresh permutation per cycle.
    caption_order: list[int] = []
    while len(caption_order) < n_unique:
        cycle = list(range(len(texts)))
        rng.shuffle(cycle)
        caption_order.extend(cycle)
    roles = ["unique"] * n_unique + ["exact"] * n_exact + ["resized"] * n_resized
    # Copies come after their original: shuffle the tail only among itself, keeping the first 10 % unique.
    head = max(1, n // 10)
    tail = roles[head:]
    rng.shuffle(tail)
    roles = roles[:head] + tail
    sources = ("web", "laion", "old")
    items: list[Item] = []
    uniques: list[int] = []
    for i, role in enumerate(roles):
        source = sources[rng.randrange(3)]
        if role == "unique":
            spec = _photo_spec(rng, sizes)
            caption = texts[caption_order[len(uniques)]]
            uniques.append(i)
            items.append(Item(i, source, "", role, i, caption, spec))
            continue
        original = items[rng.choice(uniques)]
        if role == "exact":
            items.append(Item(i, source, "", role, original.item, original.caption, original.spec))
        else:
            spec = PhotoSpec(**{**asdict(original.spec), "recode": (rng.uniform(0.5, 0.85), rng.randint(60, 85))})
            spec.crop, spec.size = tuple(spec.crop), tuple(spec.size)
            items.append(Item(i, source, "", role, original.item, texts[rng.randrange(len(texts))], spec))
    for it in items:
        it.key = f"{it.item:06d}"
    return items


def _photo_spec(rng: random.Random, sizes: list[tuple[int, int]]) -> PhotoSpec:
    long_side = round(math.exp(rng.uniform(math.log(300), math.log(4000))))
    if rng.random() < 0.6:
        aspect = rng.choice(COMMON_ASPECTS)
    else:
        aspect = math.exp(rng.uniform(math.log(1 / 3), math.log(3)))
    # Prefer photos that hold the target without enlarging by more than 1.4x; else the largest one.
    fitting = [k for k, s in enumerate(sizes) if _largest_crop(s, aspect)[0] * 1.4 >= long_side]
    base = rng.choice(fitting) if fitting else max(range(len(sizes)), key=lambda k: _largest_crop(sizes[k], aspect)[0])
    bw, bh = sizes[base]
    _, (cw, ch) = _largest_crop((bw, bh), aspect)
    shrink = math.sqrt(rng.uniform(0.35, 1.0))
    cw, ch = max(8, cw * shrink), max(8, ch * shrink)
    left, top = rng.uniform(0, bw - cw), rng.uniform(0, bh - ch)
    factor = long_side / max(cw, ch)
    size = (max(1, round(cw * factor)), max(1, round(ch * factor)))
    return PhotoSpec(
        base=base,
        crop=(left / bw, top / bh, (left + cw) / bw, (top + ch) / bh),
        size=size,
        mirror=rng.random() < 0.5,
        brightness=rng.uniform(0.9, 1.1),
        quality=rng.randint(70, 95),
        subsampling=0 if rng.random() < 0.1 else 2,
        orientation=rng.choice((6, 8)) if rng.random() < 0.1 else 1,
    )


def _largest_crop(size: tuple[int, int], aspect: float) -> tuple[float, tuple[float, float]]:
    width, height = size
    cw, ch = (width, width / aspect) if width / height <= aspect else (height * aspect, height)
    return max(cw, ch), (cw, ch)


# -- making images (worker side) ----------------------------------------------------------------------------
_BASES: list[Image.Image] = []


def _init_worker(photos: str) -> None:
    global _BASES
    _BASES = []
    for path in base_photos(Path(photos)):
        im = ImageOps.exif_transpose(Image.open(path))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            im = flat
        _BASES.append(im.convert("RGB"))


def make_photo(spec: PhotoSpec) -> tuple[bytes, int, int]:
    """JPEG bytes of one planned photo, and its stored width and height."""
    base = _BASES[spec.base]
    bw, bh = base.size
    box = (spec.crop[0] * bw, spec.crop[1] * bh, spec.crop[2] * bw, spec.crop[3] * bh)
    image = base.resize(spec.size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    if spec.mirror:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if abs(spec.brightness - 1) > 1e-3:
        image = ImageEnhance.Brightness(image).enhance(spec.brightness)
    params: dict = {"quality": spec.quality, "subsampling": spec.subsampling}
    if spec.orientation != 1:
        image = image.transpose(Image.Transpose.ROTATE_90 if spec.orientation == 6 else Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = spec.orientation
        params["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **params)
    data = buffer.getvalue()
    if spec.recode is not None:
        scale, quality = spec.recode
        copy = Image.open(io.BytesIO(data))
        exif_bytes = copy.info.get("exif")
        w, h = copy.size
        copy = copy.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        copy.save(buffer, "JPEG", quality=quality, **({"exif": exif_bytes} if exif_bytes else {}))
        data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as check:
        width, height = check.size
    return data, width, height


def make_small(spec: dict) -> tuple[bytes, int, int]:
    """A smooth random field with a few shapes and grain: distinct pHashes, passes the quality filters."""
    rng = np.random.default_rng(spec["seed"])
    w, h = spec["size"]
    coarse = rng.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.int16).copy()
    for _ in range(3):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(w // 8, w // 2), y0 + rng.integers(h // 8, h // 2)
        arr[y0:y1, x0:x1] = rng.integers(0, 256, size=3)
    arr += rng.integers(-12, 13, size=arr.shape, dtype=np.int16)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=spec["quality"])
    return buffer.getvalue(), w, h


def _make(kind: str, spec: Any) -> tuple[bytes, int, int]:
    return make_photo(spec) if kind == "photos" else make_small(spec)


def _write_task(task: dict) -> list[dict]:
    """Make and write one task's items (a folder chunk, a table's images, or one tar); return index rows."""
    rows = []
    kind, mode, target = task["kind"], task["mode"], Path(task["target"])
    if mode == "tar":
        tmp = target.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for it in task["items"]:
                data, w, h = _make(kind, it["spec"])
                offset = _add_member(tar, f"{it['key']}.jpg", data)
                _add_member(tar, f"{it['key']}.txt", (it["caption"] or "").encode("utf-8"))
                _add_member(tar, f"{it['key']}.json", json.dumps({"key": it["key"]}).encode())
                rows.append(_row(it, f"{target.name}/{it['key']}", str(target), offset, len(data), w, h))
        os.replace(tmp, target)
        return rows
    for it in task["items"]:
        data, w, h = _make(kind, it["spec"])
        if mode == "inline":
            rows.append({**_row(it, "", "", 0, len(data), w, h), "_bytes": data})
            continue
        path = target / f"{it['key']}.jpg"
        path.write_bytes(data)
        if mode == "folder":
            (target / f"{it['key']}.txt").write_text(it["caption"] or "", encoding="utf-8")
        rows.append(_row(it, f"{it['key']}.jpg", str(path), 0, len(data), w, h))
    return rows


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))
    return tar.offset - len(data) - (-len(data) % 512)


def _row(it: dict, source_key: str, path: str, offset: int, size: int, w: int, h: int) -> dict:
    spec = it["spec"]
    orientation = spec.orientation if isinstance(spec, PhotoSpec) else 1
    return {"item": it["item"], "source": it["source"], "source_key": source_key, "path": path, "offset": offset,
            "size": size, "width": w, "height": h, "orientation": orientation, "plant": it["plant"],
            "original": it["original"], "caption": it["caption"]}  # fmt: skip


# -- the corpora ----------------------------------------------------------------------------------------
def _is_complete(root: Path, params: dict) -> bool:
    marker = root / MARKER
    try:
        return json.loads(marker.read_text()) == params
    except (OSError, ValueError):
        return False


def _tasks(kind: str, root: Path, items: list[Item]) -> tuple[list[dict], dict[str, str]]:
    """Generation tasks per source layout, and each source's layout (folder | table | inline | tar)."""
    layouts = {"web": "folder", "laion": "table", "old": "tar"} if kind == "photos" else \
        {"files": "folder", "paths": "table", "inline": "inline"}  # fmt: skip
    tasks = []
    for source, layout in layouts.items():
        mine = [it for it in items if it.source == source]
        if layout == "folder":
            (root / source).mkdir(parents=True, exist_ok=True)
            for i in range(0, len(mine), FOLDER_CHUNK):
                tasks.append({"mode": "folder", "target": str(root / source), "items": mine[i : i + FOLDER_CHUNK]})
        elif layout == "tar":
            (root / source).mkdir(parents=True, exist_ok=True)
            for j, i in enumerate(range(0, len(mine), TAR_SAMPLES)):
                target = root / source / f"{j:05d}.tar"
                tasks.append({"mode": "tar", "target": str(target), "items": mine[i : i + TAR_SAMPLES]})
        else:
            images = root / source / "images"
            images.mkdir(parents=True, exist_ok=True)
            for i in range(0, len(mine), FOLDER_CHUNK):
                tasks.append({"mode": layout, "target": str(images), "items": mine[i : i + FOLDER_CHUNK]})
    for t in tasks:
        t["kind"] = kind
        t["items"] = [{"item": it.item, "source": it.source, "key": it.key, "plant": it.plant,
                       "original": it.original, "caption": it.caption, "spec": it.spec} for it in t["items"]]  # fmt: skip
    return tasks, layouts


def _plan_small(n: int, seed: int, captions: Path | None) -> list[Item]:
    rng = random.Random(seed)
    vocab = caption_vocabulary(load_alt_texts(captions))
    items: list[Item] = []
    weights = (("files", 0.4), ("paths", 0.4), ("inline", 0.2))
    for i in range(n):
        r, source = rng.random(), "inline"
        for name, w in weights:
            if r < w:
                source = name
                break
            r -= w
        if i > n // 10 and rng.random() < 0.02:
            original = items[rng.randrange(len(items))]
            while original.plant != "unique":
                original = items[original.original]
            items.append(Item(i, source, f"{i:07d}", "exact", original.item, original.caption, original.spec))
            continue
        side = rng.randint(96, 192)
        other = min(192, round(side * rng.uniform(1.0, 1.6)))
        size = (other, side) if rng.random() < 0.5 else (side, other)
        caption = " ".join(rng.choice(vocab) for _ in range(rng.randint(6, 14)))
        spec = {"seed": rng.randrange(2**63), "size": size, "quality": rng.randint(80, 90)}
        items.append(Item(i, source, f"{i:07d}", "unique", i, caption, spec))
    return items


def build(root: Path, n: int, seed: int = 0, kind: str = "photos", workers: int = 2,
          photos: Path | None = None, captions: Path | None = None, log=print) -> Path:  # fmt: skip
    """Generate the corpus under root unless a finished one with the same parameters is there."""
    photos = photos or default_photos()
    captions = captions if captions is not None else default_captions()
    params = {"version": VERSION, "kind": kind, "n": n, "seed": seed,
              "photos": str(photos) if kind == "photos" else None, "captions": str(captions) if captions else None}  # fmt: skip
    if _is_complete(root, params):
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    started = time.time()
    items = plan_photos(n, seed, photos, captions) if kind == "photos" else _plan_small(n, seed, captions)
    tasks, layouts = _tasks(kind, root, items)
    rows: list[dict] = []
    init = (_init_worker, (str(photos),)) if kind == "photos" else (None, ())
    with mp.get_context("fork").Pool(workers, initializer=init[0], initargs=init[1]) as pool:
        for done, part in enumerate(pool.imap(_write_task, tasks), 1):
            rows.extend(part)
            if done % max(1, len(tasks) // 10) == 0:
                log(f"corpus: {done}/{len(tasks)} tasks, {len(rows)} images, {time.time() - started:.0f} s")
    rows.sort(key=lambda r: r["item"])
    _write_tables(root, kind, layouts, rows)
    index = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "_bytes"} for r in rows])
    pq.write_table(index, root / "index.parquet")
    (root / MARKER).write_text(json.dumps(params))
    log(f"corpus: {len(rows)} images in {time.time() - started:.0f} s under {root}")
    return root


def _write_tables(root: Path, kind: str, layouts: dict[str, str], rows: list[dict]) -> None:
    """Parquet tables of the table sources; their index rows get the pipeline's source_key (file:row)."""
    per_file = TABLE_ROWS if kind == "photos" else SMALL_TABLE_ROWS
    for source, layout in layouts.items():
        if layout not in ("table", "inline"):
            continue
        mine = [r for r in rows if r["source"] == source]
        for j, i in enumerate(range(0, len(mine), per_file)):
            name = f"part-{j:05d}.parquet"
            chunk = mine[i : i + per_file]
            if layout == "table":
                image = pa.array([f"images/{Path(r['path']).name}" for r in chunk], pa.string())
            else:
                image = pa.array([r.pop("_bytes") for r in chunk], pa.binary())
            table = pa.table({"image": image, "caption": pa.array([r["caption"] for r in chunk], pa.string())})
            pq.write_table(table, root / source / name, row_group_size=1000)
            for k, r in enumerate(chunk):
                r["source_key"] = f"{name}:{k}"
                if layout == "inline":
                    r["path"], r["offset"] = str(root / source / name), -1  # bytes live in the table's row
        if layout == "inline":
            shutil.rmtree(root / source / "images", ignore_errors=True)


def corpus_config(root: Path, output: Path, num_cpus: int | None = None, **sections: Any) -> dict:
    """The pipeline config (as a dict for YAML) that curates the corpus under root into output."""
    params = json.loads((root / MARKER).read_text())
    if params["kind"] == "photos":
        sources = [
            {"name": "web", "path": str(root / "web"), "priority": 2},
            {"name": "laion", "path": str(root / "laion" / "*.parquet"), "priority": 1,
             "image_column": "image", "caption_column": "caption"},
            {"name": "old", "path": str(root / "old" / "*.tar"), "priority": 3},
        ]  # fmt: skip
    else:
        sources = [
            {"name": "files", "path": str(root / "files"), "priority": 2},
            {"name": "paths", "path": str(root / "paths" / "*.parquet"), "priority": 1},
            {"name": "inline", "path": str(root / "inline" / "*.parquet"), "priority": 3},
        ]
    cfg: dict[str, Any] = {"sources": sources, "output": str(output), "ray": {"progress": "lines"}}
    if num_cpus is not None:
        cfg["ray"]["num_cpus"] = num_cpus
    for key, value in sections.items():
        _deep_set(cfg, key.split("."), value)
    return cfg


def _deep_set(d: dict, path: list[str], value: Any) -> None:
    for k in path[:-1]:
        d = d.setdefault(k, {})
    d[path[-1]] = value


def read_sample_bytes(row: dict) -> bytes:
    """The image bytes of one index row (a file, a tar member, or a row of an inline-bytes table)."""
    if row["offset"] == -1:
        key = row["source_key"].rsplit(":", 1)
        return pq.read_table(row["path"], columns=["image"]).column("image")[int(key[1])].as_py()
    with open(row["path"], "rb") as f:
        f.seek(row["offset"])
        return f.read(row["size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--kind", choices=("photos", "small"), default="photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--photos", type=Path)
    args = parser.parse_args()
    build(args.root, args.n, args.seed, args.kind, args.workers, args.photos)


if __name__ == "__main__":
    main()
