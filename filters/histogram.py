"""A histogram of one score column as a PNG, with thresholds marked, drawn with Pillow (no plotting library)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 800, 440
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 50, 60
BAR = (70, 110, 170)
AXIS = (40, 40, 40)
THRESHOLD = (210, 40, 40)


@dataclass(frozen=True)
class Marker:
    """A threshold to draw: its value and a label such as 'min 30: drops 12'."""

    value: float
    label: str


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def draw_histogram(values: np.ndarray, title: str, markers: list[Marker], path: Path, bins: int = 50) -> None:
    font = ImageFont.load_default(size=13)
    lo, hi = float(values.min()), float(values.max())
    for m in markers:  # keep thresholds outside the data range visible
        lo, hi = min(lo, m.value), max(hi, m.value)
    if hi == lo:
        hi = lo + 1.0
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x_of(v: float) -> float:
        return LEFT + (v - lo) / (hi - lo) * plot_w

    peak = max(int(counts.max()), 1)
    for count, left, right in zip(counts, edges[:-1], edges[1:]):
        if count:
            top = TOP + plot_h * (1 - count / peak)
            draw.rectangle([x_of(left), top, max(x_of(right) - 1, x_of(left)), TOP + plot_h], fill=BAR)
    draw.line([LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h], fill=AXIS)
    draw.line([LEFT, TOP, LEFT, TOP + plot_h], fill=AXIS)
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        v = lo + frac * (hi - lo)
        draw.text((x_of(v), TOP + plot_h + 6), _fmt(v), fill=AXIS, font=font, anchor="ma")
    draw.text((LEFT - 6, TOP), str(peak), fill=AXIS, font=font, anchor="ra")
    draw.text((LEFT - 6, TOP + plot_h), "0", fill=AXIS, font=font, anchor="rb")
    draw.text((LEFT, 12), f"{title}  (n={len(values)})", fill=AXIS, font=font)
    for i, m in enumerate(markers):
        x = x_of(m.value)
        draw.line([x, TOP, x, TOP + plot_h], fill=THRESHOLD, width=2)
        draw.text((x + 4, TOP + 4 + 16 * i), m.label, fill=THRESHOLD, font=font)
    draw.text((LEFT + plot_w // 2, HEIGHT - 20), "score", fill=AXIS, font=font, anchor="ma")
    image.save(path)
