"""Decode, orient, crop-resize and encode one image: the pixel work behind resolution bucketing.

This module knows nothing about buckets; ``stages.bucketing`` decides the crop box and the output
size, and calls :func:`render`.

Speed comes from never touching more pixels than needed:

- JPEG sources are decoded with libjpeg's DCT-domain scaling (``Image.draft``) straight to the
  smallest 1/2, 1/4 or 1/8 size that is still at least the target resolution: a 3000 px photo
  bound for 256 px decodes as a 375 px one. The DCT scaling drops the high frequencies itself, so
  it costs little quality (0.5 dB PSNR or less against a full decode, bench/results/bucketing.md).
- What is left is resized from the crop box only (``resize(box=...)``), after an integer box
  ``reduce`` that still leaves the final filter ``reducing_gap`` to shrink (non-JPEG sources, and
  JPEGs beyond the 1/8 draft).
- The final filter is Lanczos for outputs up to 512x512 and for enlargements, Hamming for larger
  reductions (``resample="auto"``). At scale factors between 1/2 and 1, where neither step above
  applies, Lanczos costs about twice Hamming and made 1024 px outputs slower than img2dataset's
  OpenCV INTER_AREA. With Hamming, 1024 px buckets render about 1.2x faster than img2dataset at
  0.3-1 dB lower PSNR against a Lanczos reference; "bicubic" matches img2dataset's speed at 0.7 dB
  above it, "lanczos" adds 1.4 dB at 30 % less speed (bench/results/bucketing.md).
"""

from __future__ import annotations

import io
import math
from typing import Literal

from PIL import Image, ImageOps, JpegImagePlugin

from stages.decode import display_size, exif_orientation, to_rgb

ImageFormat = Literal["jpg", "webp", "png"]
ResampleName = Literal["auto", "lanczos", "bicubic", "hamming"]

# "auto" switches from Lanczos to Hamming above this many output pixels (the 512x512 tier's budget).
AUTO_LANCZOS_MAX_PIXELS = 512 * 512

_FILTERS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "hamming": Image.Resampling.HAMMING,
}

_SAVE_ARGS: dict[str, tuple[str, bool]] = {
    # format -> (Pillow format name, whether `quality` applies)
    "jpg": ("JPEG", True),
    "webp": ("WEBP", True),
    "png": ("PNG", False),
}


class ImageTooLarge(ValueError):
    """The image declares more pixels than the caller allows; it was not decoded."""

    reason = "too_many_pixels"


class SizeMismatch(ValueError):
    """The decoded image does not have the (display) size its plan was made for."""

    reason = "size_mismatch"


def render(
    data: bytes,
    *,
    source_size: tuple[int, int],
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    image_format: ImageFormat,
    quality: int,
    resample: ResampleName,
    reducing_gap: float | None,
    draft: bool,
    max_pixels: int,
) -> bytes:
    """Encoded bytes of the ``box`` region of the image in ``data``, resized to exactly ``size``.

    ``source_size`` and ``box`` are in display coordinates (after EXIF orientation); the image must
    have that display size. Raises ImageTooLarge before decoding anything larger than ``max_pixels``
    and SizeMismatch when the image is not the size the box was planned for; decoder errors
    (truncated or corrupt data) propagate as Pillow raises them.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageTooLarge(str(error)) from None
    stored_width, stored_height = image.size
    if stored_width * stored_height > max_pixels:
        raise ImageTooLarge(
            f"image is {stored_width}x{stored_height} = {stored_width * stored_height} pixels, "
            f"more than max_pixels={max_pixels}"
        )
    orientation = exif_orientation(image)
    shown_width, shown_height = display_size(stored_width, stored_height, orientation)
    if (shown_width, shown_height) != tuple(source_size):
        raise SizeMismatch(
            f"plan was made for {source_size[0]}x{source_size[1]}, image shows as {shown_width}x{shown_height}"
        )
    scale = max(size[0] / (box[2] - box[0]), size[1] / (box[3] - box[1]))
    reduction = _draft_reduction(image, scale) if draft else 1
    image.load()
    upright = ImageOps.exif_transpose(image) if orientation != 1 else image
    rgb, _ = to_rgb(upright)
    resized = rgb.resize(
        size,
        _filter(resample, size, enlarges=scale > 1),
        box=tuple(c / reduction for c in box),
        reducing_gap=reducing_gap,
    )
    return encode(resized, image_format, quality)


def encode(image: Image.Image, image_format: ImageFormat, quality: int) -> bytes:
    """``image`` encoded as JPEG or WebP at ``quality``, or as lossless PNG (``quality`` unused)."""
    pillow_format, lossy = _SAVE_ARGS[image_format]
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **({"quality": quality} if lossy else {}))
    return buffer.getvalue()


def _draft_reduction(image: Image.Image, scale: float) -> int:
    """Ask a JPEG decoder for DCT-domain downscaling that keeps at least ``scale`` of the resolution.

    Returns the linear reduction the decoder will apply (1, 2, 4 or 8). The request is the stored
    (not displayed) size times ``scale``: the scale is the same on both axes, so this is right for
    every EXIF orientation, where asking for the bucket's width and height would be wrong for
    rotated photos.
    """
    # isinstance, not format == "JPEG": camera MPO files are JPEGs too.
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or scale >= 0.5:
        return 1
    width, height = image.size
    drafted = image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    if drafted is None:
        return 1
    _, (_, _, drafted_width, _) = drafted
    return round(width / drafted_width)


def _filter(resample: ResampleName, size: tuple[int, int], enlarges: bool) -> Image.Resampling:
    if resample == "auto":
        # Hamming's one-pixel support only pays off when shrinking; enlarging, it is close to bilinear.
        resample = "lanczos" if enlarges or size[0] * size[1] <= AUTO_LANCZOS_MAX_PIXELS else "hamming"
    return _FILTERS[resample]
