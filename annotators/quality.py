"""Image quality scores, computed from the small analysis image only (never a second, full-size decode).

Every score is a plain number a threshold rule can act on later (`filters.config.ImageQualityConfig`), so a
threshold can be re-tuned from the manifest without decoding anything again.

Columns:
- `quality.short_side`, `quality.aspect_ratio` (long / short), `quality.megapixels`: from the display size
  (full size after EXIF rotation), not the small image.
- `quality.sharpness`: variance of the Laplacian of the grey image at a fixed scale (see `sharpness`).
- `quality.entropy`: Shannon entropy of the grey-level histogram, in bits (0 for a flat image, at most 8).
- `quality.dark_fraction` / `quality.bright_fraction`: share of pixels clipped to near black / near white.
- `quality.bytes_per_pixel`: encoded file size over display pixels; very low values mean heavy compression.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import numpy as np
import pyarrow as pa
from PIL import Image

from stages.annotator import AnalysisImage, ImageAnnotator

# Sharpness is measured at this short side, the smallest training bucket and the analysis pass's default size.
SHARPNESS_SIDE = 256
# Grey levels at or below / at or above these count as clipped shadows / highlights.
DARK_LEVEL = 10
BRIGHT_LEVEL = 245

QUALITY_COLUMNS: dict[str, pa.DataType] = {
    "quality.short_side": pa.float32(),
    "quality.aspect_ratio": pa.float32(),
    "quality.megapixels": pa.float32(),
    "quality.sharpness": pa.float32(),
    "quality.entropy": pa.float32(),
    "quality.dark_fraction": pa.float32(),
    "quality.bright_fraction": pa.float32(),
    "quality.bytes_per_pixel": pa.float32(),
}


def grey_at_scale(image: Image.Image, short_side: int = SHARPNESS_SIDE) -> Image.Image:
    """The grey image with its short side reduced to `short_side`; smaller images stay as they are."""
    grey = image.convert("L")
    w, h = grey.size
    scale = short_side / min(w, h)
    if scale < 1:
        # The analysis pass's own reduction (bicubic, reducing_gap 2), so a bigger analysis size measures the same.
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        grey = grey.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)
    return grey


def sharpness(grey: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image (0-255 levels).

    The variance of the Laplacian depends on the pixel scale: neighbouring pixels of a sharp 4K photo differ
    little (a wallpaper in shared/data scores 45 at a 1024 px short side and 377 at 256 px). Measuring every
    image at one short side (`grey_at_scale`, 256 px) makes the number comparable across image sizes;
    images smaller than that are measured as they are (and fail the minimum-size rule anyway).
    """
    a = np.asarray(grey, dtype=np.int16)  # the Laplacian of 0-255 levels fits in int16: faster than float
    if a.shape[0] < 3 or a.shape[1] < 3:
        return 0.0
    lap = a[1:-1, :-2] + a[1:-1, 2:]  # in place from here: this runs once per image in the analysis pass
    lap += a[:-2, 1:-1]
    lap += a[2:, 1:-1]
    lap -= 4 * a[1:-1, 1:-1]
    flat = lap.ravel().astype(np.float32)
    mean = flat.mean()
    return float(np.dot(flat, flat) / flat.size - mean * mean)


def histogram_scores(grey: Image.Image) -> tuple[float, float, float]:
    """(entropy in bits, dark fraction, bright fraction) from one histogram of the grey image."""
    hist = np.asarray(grey.histogram(), dtype=np.float64)
    total = hist.sum()
    p = hist[hist > 0] / total
    entropy = float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0 for a flat image
    dark = float(hist[: DARK_LEVEL + 1].sum() / total)
    bright = float(hist[BRIGHT_LEVEL:].sum() / total)
    return entropy, dark, bright


def size_scores(width: int, height: int, encoded_bytes: int) -> dict[str, float]:
    short, long = min(width, height), max(width, height)
    pixels = width * height
    return {
        "quality.short_side": float(short),
        "quality.aspect_ratio": long / short,
        "quality.megapixels": pixels / 1e6,
        "quality.bytes_per_pixel": encoded_bytes / pixels,
    }


class QualityAnnotator(ImageAnnotator):
    name: ClassVar[str] = "quality"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = QUALITY_COLUMNS

    def annotate(self, row: Mapping[str, Any], image: AnalysisImage) -> Mapping[str, Any]:
        grey = grey_at_scale(image.image)
        entropy, dark, bright = histogram_scores(grey)
        return {
            **size_scores(image.display_width, image.display_height, len(image.data)),
            "quality.sharpness": sharpness(grey),
            "quality.entropy": entropy,
            "quality.dark_fraction": dark,
            "quality.bright_fraction": bright,
        }
