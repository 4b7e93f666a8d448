"""PNG figures drawn with Pillow (no plotting library needed): loss curves and sample grids."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any, Sequence

from PIL import Image, ImageDraw

CURVES = ("loss", "ce", "mse", "lr")
LOG_SCALE = {"loss", "ce", "mse"}  # losses fall by orders of magnitude: a log axis shows the tail
PANEL_SIZE = (640, 180)
MARGIN = 48
RAW_COLOUR = (170, 190, 230)
SMOOTH_COLOUR = (20, 60, 160)


def moving_average(values: Sequence[float], window: int) -> list[float]:
    smoothed, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        smoothed.append(total / min(i + 1, window))
    return smoothed


def _draw_panel(draw: ImageDraw.ImageDraw, top: int, name: str, steps: list[int], values: list[float]) -> None:
    width, height = PANEL_SIZE
    left, right, bottom = MARGIN, width - 10, top + height - 20
    log = name in LOG_SCALE and min(values) > 0
    scale = math.log10 if log else float
    low, high = min(values), max(values)
    span = (scale(high) - scale(low)) or 1.0
    first, last = steps[0], max(steps[-1], steps[0] + 1)

    def point(step: int, value: float) -> tuple[float, float]:
        x = left + (right - left) * (step - first) / (last - first)
        y = bottom - (bottom - top - 16) * (scale(value) - scale(low)) / span
        return x, y

    draw.rectangle((left, top + 16, right, bottom), outline=(160, 160, 160))
    draw.text((left, top), f"{name}{' (log scale)' if log else ''}  last {values[-1]:.4g}", fill=(0, 0, 0))
    draw.text((4, top + 16), f"{high:.3g}", fill=(90, 90, 90))
    draw.text((4, bottom - 10), f"{low:.3g}", fill=(90, 90, 90))
    draw.text((right - 60, bottom + 4), f"step {steps[-1]}", fill=(90, 90, 90))
    if len(values) > 1:
        draw.line([point(s, v) for s, v in zip(steps, values)], fill=RAW_COLOUR, width=1)
        window = max(1, len(values) // 50)
        draw.line([point(s, v) for s, v in zip(steps, moving_average(values, window))], fill=SMOOTH_COLOUR, width=2)


def plot_loss_curves(records: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per logged curve (loss, ce, mse, lr) that has values; raw and smoothed."""
    series = []
    for name in CURVES:
        points = [(r["step"], float(r[name])) for r in records if name in r and math.isfinite(r[name])]
        if points:
            series.append((name, [s for s, _ in points], [v for _, v in points]))
    if not series:
        return
    width, height = PANEL_SIZE
    figure = Image.new("RGB", (width, height * len(series)), "white")
    draw = ImageDraw.Draw(figure)
    for row, (name, steps, values) in enumerate(series):
        _draw_panel(draw, row * height, name, steps, values)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path)


def image_grid(tiles: Sequence[tuple[Image.Image, str]], path: Path, tile: int = 192, columns: int = 4) -> None:
    """Tiles (image, text under it) in rows of `columns`; images are fitted into tile x tile."""
    text_height = 56
    rows = math.ceil(len(tiles) / columns)
    grid = Image.new("RGB", (columns * tile, rows * (tile + text_height)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, text) in enumerate(tiles):
        x, y = (i % columns) * tile, (i // columns) * (tile + text_height)
        fitted = image.copy()
        fitted.thumbnail((tile, tile))
        grid.paste(fitted, (x + (tile - fitted.width) // 2, y + (tile - fitted.height) // 2))
        lines = textwrap.wrap(text, width=tile // 6)[:4]
        draw.multiline_text((x + 4, y + tile + 2), "\n".join(lines), fill=(0, 0, 0), spacing=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
