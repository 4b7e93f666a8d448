"""Judges for the shapes task: which colour and shape an image shows, and which a caption names.

Pixel judge: the background is the median of the image border (shapes keep a margin from it). Every
2x2 block (averaging away the noise) goes to the nearest of {background, palette colours}; the
dominant palette colour among non-background blocks is the answer. The shape comes from that colour's
mask: how much of its bounding box it fills (square 1, circle pi/4, triangle and diamond 1/2) and
where its mass sits vertically (a triangle with its apex up is bottom-heavy, a diamond is not).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from model.train.shapes import COLOURS, SHAPES

BLOCK = 2  # pixels per side of the blocks classified: averages noise, keeps edges within a pixel or two
BORDER = 4  # pixels of the border that estimate the background
MIN_FOREGROUND_FRACTION = 0.01  # below this share of blocks there is no shape at all
# (fill ratio of the bounding box, vertical centre of mass in the box from 0 = top to 1 = bottom)
SHAPE_PROTOTYPES: dict[str, tuple[float, float]] = {
    "square": (1.0, 0.5),
    "circle": (math.pi / 4, 0.5),
    "triangle": (0.5, 2 / 3),
    "diamond": (0.5, 0.5),
}
CENTRE_WEIGHT = 2.0  # the centre-of-mass axis spans less range than the fill axis: scale it up


@dataclass(frozen=True)
class Judgement:
    colour: str | None  # None: no shape found / named
    shape: str | None


def background_colour(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (3,): per-channel median of a BORDER-pixel frame."""
    frame = np.concatenate(
        [
            pixels[:BORDER].reshape(-1, 3),
            pixels[-BORDER:].reshape(-1, 3),
            pixels[:, :BORDER].reshape(-1, 3),
            pixels[:, -BORDER:].reshape(-1, 3),
        ]
    )
    return np.median(frame.astype(np.float32), axis=0)


def block_means(pixels: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H / BLOCK, W / BLOCK, 3) float means (sides cropped to a multiple of BLOCK)."""
    height, width = pixels.shape[0] // BLOCK * BLOCK, pixels.shape[1] // BLOCK * BLOCK
    blocks = (
        pixels[:height, :width]
        .astype(np.float32)
        .reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK, 3)
    )
    return blocks.mean(axis=(1, 3))


def majority_filter(mask: np.ndarray) -> np.ndarray:
    """Keep a cell when most of its 3x3 neighbourhood is set: stray cells would stretch the box."""
    padded = np.pad(mask.astype(np.int8), 1)
    height, width = mask.shape
    votes = sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))
    return votes >= 5


def shape_from_mask(mask: np.ndarray) -> str:
    """Nearest prototype in (fill ratio, vertical centre) of a boolean mask's bounding box."""
    cleaned = majority_filter(mask)
    mask = cleaned if cleaned.any() else mask
    rows, cols = np.nonzero(mask)
    top, bottom = rows.min(), rows.max() + 1
    left, right = cols.min(), cols.max() + 1
    fill = mask[top:bottom, left:right].mean()
    centre = (rows.mean() + 0.5 - top) / (bottom - top)

    def distance(prototype: tuple[float, float]) -> float:
        return (fill - prototype[0]) ** 2 + (CENTRE_WEIGHT * (centre - prototype[1])) ** 2

    return min(SHAPE_PROTOTYPES, key=lambda name: distance(SHAPE_PROTOTYPES[name]))


def judge_image(pixels: np.ndarray) -> Judgement:
    """Colour and shape of the dominant non-background object in an (H, W, 3) uint8 image."""
    colours = list(COLOURS)
    references = np.array(
        [background_colour(pixels), *(COLOURS[c] for c in colours)], dtype=np.float32
    )
    blocks = block_means(pixels)
    distances = np.linalg.norm(blocks[:, :, None, :] - references[None, None], axis=-1)
    nearest = distances.argmin(axis=-1)  # 0 = background, i > 0 = colours[i - 1]
    counts = np.bincount(nearest.ravel(), minlength=len(references))[1:]
    if counts.sum() < MIN_FOREGROUND_FRACTION * nearest.size:
        return Judgement(None, None)
    winner = int(counts.argmax())
    return Judgement(colours[winner], shape_from_mask(nearest == winner + 1))


_COLOUR_WORD = re.compile(r"\b(" + "|".join(COLOURS) + r")\b")
_SHAPE_WORD = re.compile(r"\b(" + "|".join(SHAPES) + r")\b")


def judge_caption(text: str) -> Judgement:
    """The first palette colour and the first shape word the caption names."""
    colour = _COLOUR_WORD.search(text.lower())
    shape = _SHAPE_WORD.search(text.lower())
    return Judgement(colour.group(1) if colour else None, shape.group(1) if shape else None)
