"""The shapes world: one flat shape on a plain, lightly noisy background, captioned with what it shows.

A scene is (colour, shape, size, grid cell, background); its caption names all five, e.g.
"a large red circle in the top left corner on a light grey background". A fixed tenth of the scenes
(by a stable hash of the caption) is held out: `generate_shapes` never draws them, so evaluation
(`model.train.shapes_eval`) prompts with combinations the model has never seen.

The images must survive the curation pipeline's default filters and dedup:
- information (grey-histogram entropy >= 3 bits): per-pixel Gaussian noise (sigma 5 levels) turns each
  flat colour into a spread of grey levels (about 4.5 bits for the background alone);
- sharpness (Laplacian variance >= 30): shapes are drawn without anti-aliasing, so edges stay crisp;
- exposure: backgrounds are mid-tone, never near black or white;
- caption dedup (at most 3 samples per caption cluster): captions are mostly unique and
  `generate_shapes` uses every training scene once before any scene repeats, so with
  n <= 3 * len(training_scenes()) no caption appears more than 3 times.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

COLOURS: dict[str, RGB] = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 200, 40),
    "purple": (135, 60, 175),
    "cyan": (40, 190, 205),
}
BACKGROUNDS: dict[str, RGB] = {
    "light grey": (200, 200, 200),
    "beige": (222, 208, 180),
    "dark grey": (72, 72, 78),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
# Shape extent (bounding-box side) as a fraction of the image's short side.
SIZES: dict[str, tuple[float, float]] = {"small": (0.28, 0.36), "large": (0.44, 0.52)}
POSITIONS: dict[tuple[int, int], str] = {
    (0, 0): "in the top left corner",
    (0, 1): "at the top",
    (0, 2): "in the top right corner",
    (1, 0): "on the left",
    (1, 1): "in the center",
    (1, 2): "on the right",
    (2, 0): "in the bottom left corner",
    (2, 1): "at the bottom",
    (2, 2): "in the bottom right corner",
}
NOISE_LEVELS = 6.0  # std of the per-pixel noise, in 0-255 levels
# A faint random "cloud" texture gives every image its own low-frequency layout: without it, scenes
# that differ only in colour share one perceptual hash and pHash dedup would merge them.
CLOUD_WAVES = 6
CLOUD_STD_LEVELS = 10.0
MARGIN = 8  # pixels between a shape and the image border (the judge reads the border as background)
HELD_OUT_EVERY = 10  # one scene in ten is held out for evaluation

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (512, 512), (384, 672))
DEFAULT_SIZE_WEIGHTS: tuple[float, ...] = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class ShapeScene:
    colour: str
    shape: str
    size: str
    cell: tuple[int, int]  # (row, col) on a 3x3 grid
    background: str

    @property
    def caption(self) -> str:
        return (
            f"a {self.size} {self.colour} {self.shape} {POSITIONS[self.cell]} "
            f"on a {self.background} background"
        )


def all_scenes() -> list[ShapeScene]:
    return [
        ShapeScene(colour, shape, size, cell, background)
        for colour, shape, size, cell, background in itertools.product(
            COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS
        )
    ]


def is_held_out(scene: ShapeScene) -> bool:
    """Stable across runs and machines (sha1 of the caption, not Python's salted hash)."""
    digest = hashlib.sha1(scene.caption.encode()).digest()
    return int.from_bytes(digest[:4], "big") % HELD_OUT_EVERY == 0


def training_scenes() -> list[ShapeScene]:
    return [scene for scene in all_scenes() if not is_held_out(scene)]


def held_out_scenes() -> list[ShapeScene]:
    return [scene for scene in all_scenes() if is_held_out(scene)]


def shape_polygon(shape: str, left: int, top: int, extent: int) -> list[tuple[int, int]] | None:
    """Vertices of a polygonal shape in its extent x extent box; None for the circle."""
    right, bottom = left + extent - 1, top + extent - 1
    middle_x, middle_y = left + extent // 2, top + extent // 2
    if shape == "square":
        return [(left, top), (right, top), (right, bottom), (left, bottom)]
    if shape == "triangle":  # apex up, base along the bottom: its mass sits low in the box
        return [(middle_x, top), (right, bottom), (left, bottom)]
    if shape == "diamond":
        return [(middle_x, top), (right, middle_y), (middle_x, bottom), (left, middle_y)]
    if shape == "circle":
        return None
    raise ValueError(f"unknown shape {shape!r}")


def shape_box(
    scene: ShapeScene, width: int, height: int, rng: np.random.Generator
) -> tuple[int, int, int]:
    """(left, top, extent): the shape's square box, jittered inside its grid cell's range."""
    low, high = SIZES[scene.size]
    extent = int(round(min(width, height) * rng.uniform(low, high)))
    row, col = scene.cell

    def corner(cell_index: int, side: int) -> int:
        # Box corners range over [MARGIN, side - MARGIN - extent]; the cell picks a third of it.
        free = side - 2 * MARGIN - extent
        return MARGIN + int(round(free * (cell_index + rng.uniform(0.15, 0.85)) / 3))

    return corner(col, width), corner(row, height), extent


def cloud_texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width) zero-mean levels: a few random low-frequency waves (1-3 cycles per image)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    texture = np.zeros((height, width), dtype=np.float32)
    for _ in range(CLOUD_WAVES):
        cycles_x, cycles_y = rng.integers(-3, 4, size=2)
        if cycles_x == 0 and cycles_y == 0:
            cycles_y = 1
        phase = rng.uniform(0, 2 * np.pi)
        texture += np.cos(2 * np.pi * (cycles_x * x / width + cycles_y * y / height) + phase)
    return texture * CLOUD_STD_LEVELS / max(float(texture.std()), 1e-6)


def render_scene(
    scene: ShapeScene, width: int, height: int, rng: np.random.Generator
) -> Image.Image:
    """The scene as an RGB image: flat background and shape, crisp edges, per-pixel noise on top."""
    image = Image.new("RGB", (width, height), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(image)
    left, top, extent = shape_box(scene, width, height, rng)
    colour = COLOURS[scene.colour]
    polygon = shape_polygon(scene.shape, left, top, extent)
    if polygon is None:
        draw.ellipse((left, top, left + extent - 1, top + extent - 1), fill=colour)
    else:
        draw.polygon(polygon, fill=colour)
    pixels = np.asarray(image, dtype=np.float32)
    pixels += cloud_texture(width, height, rng)[:, :, None]
    pixels += rng.normal(0.0, NOISE_LEVELS, size=pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def shapes_vocabulary() -> list[str]:
    """Every word of every scene's caption, sorted."""
    return sorted({word for scene in all_scenes() for word in scene.caption.split()})


def write_shapes_tokenizer(path: str | Path) -> Path:
    """A word-level `tokenizers` JSON for shapes captions (~14 tokens a caption instead of ~65 bytes),
    with NEO's special tokens under the names `model.train.tokenizer.FileTokenizer` looks up."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from model.train.tokenizer import FileTokenizer

    specials = list(FileTokenizer.SPECIAL_NAMES.values())
    vocabulary = {token: i for i, token in enumerate(["[UNK]", *shapes_vocabulary(), *specials])}
    tokenizer = Tokenizer(models.WordLevel(vocabulary, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(specials)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def generate_shapes(
    folder: str | Path,
    n: int,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    size_weights: Sequence[float] | None = DEFAULT_SIZE_WEIGHTS,
) -> list[Path]:
    """Write n training scenes as `shape_NNNNNN.jpg` + `.txt` caption sidecars; returns the image paths.

    Sizes are (width, height) pairs, each an exact bucket of the pipeline (256x256; 512x512, 384x672
    in the 512 tier), drawn with `size_weights` (None: uniform). Scenes cycle through a seeded
    permutation of the training scenes, so no caption repeats before every scene has been used.
    """
    if size_weights is not None and len(size_weights) != len(sizes):
        raise ValueError("size_weights needs one weight per size")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = training_scenes()
    probabilities = (
        None if size_weights is None else np.asarray(size_weights) / np.sum(size_weights)
    )
    paths = []
    order: list[int] = []
    for i in range(n):
        if not order:
            order = list(rng.permutation(len(scenes)))
        scene = scenes[order.pop()]
        width, height = sizes[int(rng.choice(len(sizes), p=probabilities))]
        path = folder / f"shape_{i:06d}.jpg"
        render_scene(scene, width, height, rng).save(path, quality=92)
        path.with_suffix(".txt").write_text(scene.caption)
        paths.append(path)
    return paths
