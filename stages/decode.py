"""Safe reading and decoding: every way an input can be bad ends as a `Drop` with a reason, never a crash.

Bounds per sample: a byte limit before reading, a pixel limit checked on the header before decoding (and
Pillow's own bomb check), a metadata budget, and one wall-clock limit around everything Pillow does with the
file, header parsing included (counting the frames of a long GIF is as slow as decoding it).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import signal
import threading
import warnings
from typing import Any, Iterator, Mapping

import fsspec
import numpy as np
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from curation.stage import Drop

# Truncated files must fail loudly (a recorded reason), not decode half an image silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Metadata that Pillow holds in memory (PNG text chunks, JPEG APPn/COM segments) is of no use here. Past
# this budget a file is refused: it also keeps Pillow's quadratic joining of repeated JPEG EXIF segments
# (1000 of them took 48 s) to milliseconds. Photo metadata, ICC profiles included, stays far below it.
MAX_METADATA_BYTES = 4 * 2**20
PngImagePlugin.MAX_TEXT_MEMORY = MAX_METADATA_BYTES
# How Pillow words its refusals of PNG text past MAX_TEXT_CHUNK or MAX_TEXT_MEMORY.
PILLOW_METADATA_ERRORS = ("MAX_TEXT_CHUNK", "MAX_TEXT_MEMORY")

JPEG_SOI = b"\xff\xd8"
JPEG_SOS, JPEG_EOI, JPEG_COM, JPEG_TEM = 0xDA, 0xD9, 0xFE, 0x01
JPEG_APP = range(0xE0, 0xF0)
JPEG_RST = range(0xD0, 0xD8)
# Encoders write tens of header segments (an ICC profile splits into at most 255); Pillow parses each in
# Python, so a header of millions of empty ones is refused up front rather than timed out.
MAX_JPEG_SEGMENTS = 4096

EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


class DecodeTimeout(BaseException):
    """Not an Exception, so that no `except Exception` in Pillow or in a best-effort step swallows it."""


@contextlib.contextmanager
def pillow_guard() -> Iterator[None]:
    """Silence Pillow's warnings: the pixel limit is checked explicitly and malformed files get reasons."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise DecodeTimeout after `seconds`. Only the main thread can take signals; elsewhere it is a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise DecodeTimeout(f"decode took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow's own bomb check reads a process-wide limit; set it for one decode only, then restore it."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def read_bytes(row: Mapping[str, Any], max_bytes: int) -> bytes:
    """The encoded image of a record: inline bytes, a whole file, or a member at an offset in a tar."""
    if row.get("image_bytes") is not None:
        data = row["image_bytes"]
    else:
        path = row.get("image_path")
        if not path:
            raise Drop("no_image")
        size = row.get("image_size")
        try:
            with fsspec.open(path, "rb") as f:
                if size is None:
                    size = f.size
                if size > max_bytes:
                    raise Drop("file_too_large", value=float(size))
                if row.get("image_offset") is not None:
                    f.seek(row["image_offset"])
                data = f.read(size)
        except FileNotFoundError as e:
            raise Drop("file_missing", error=str(e)[:500]) from None
        except OSError as e:
            raise Drop("read_error", error=f"{type(e).__name__}: {e}"[:500]) from None
    if len(data) == 0:
        raise Drop("empty_file")
    if len(data) > max_bytes:
        raise Drop("file_too_large", value=float(len(data)))
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jpeg_header(data: bytes) -> tuple[int, int]:
    """(segments, bytes in APPn and COM segments) of a JPEG's header; (0, 0) for other formats.

    Walks the segment lengths only, and stops one segment past the limit; a malformed header ends the walk
    and Pillow judges the damage.
    """
    if not data.startswith(JPEG_SOI):
        return 0, 0
    segments, metadata, pos = 0, 0, len(JPEG_SOI)
    while pos + 4 <= len(data) and data[pos] == 0xFF and segments <= MAX_JPEG_SEGMENTS:
        marker = data[pos + 1]
        if marker in (JPEG_SOS, JPEG_EOI):
            break
        segments += 1
        if marker == 0xFF or marker == JPEG_TEM or marker in JPEG_RST:  # fill byte or a marker with no length
            pos += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in JPEG_APP or marker == JPEG_COM:
            metadata += length
        pos += 2 + length
    return segments, metadata


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse sizes past the pixel limit before any pixel is decoded."""
    segments, metadata = jpeg_header(data)
    if metadata > MAX_METADATA_BYTES or segments > MAX_JPEG_SEGMENTS:
        raise Drop("metadata_too_large", value=float(metadata),
                   error=f"JPEG header of {segments} segments, {metadata} bytes of them APPn/COM")  # fmt: skip
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    if w <= 0 or h <= 0:
        raise Drop("bad_size", error=f"declared size {w}x{h}")
    if w * h > max_pixels:
        raise Drop("too_many_pixels", value=float(w * h), error=f"declared size {w}x{h}")
    return im


def as_drop(e: BaseException) -> Drop:
    """The recorded reason for an exception raised while Pillow opens or decodes a file."""
    message = f"{type(e).__name__}: {e}"[:500]
    if isinstance(e, UnidentifiedImageError):
        return Drop("not_an_image", error="Pillow cannot identify the file")
    if isinstance(e, DecodeTimeout):
        return Drop("decode_timeout", error=str(e))
    if isinstance(e, Image.DecompressionBombError):
        return Drop("too_many_pixels", error=str(e)[:500])
    if isinstance(e, MemoryError):
        return Drop("decode_out_of_memory")
    if isinstance(e, ValueError) and any(m in str(e) for m in PILLOW_METADATA_ERRORS):
        return Drop("metadata_too_large", error=message)
    if isinstance(e, (OSError, SyntaxError)) and "truncated" in str(e).lower():
        return Drop("truncated", error=message)
    return Drop("decode_error", error=message)


def exif_orientation(im: Image.Image) -> int:
    try:
        with pillow_guard():
            value = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - broken EXIF: show the image as stored
        return 1
    return value if 1 <= value <= 8 else 1


def display_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    return (height, width) if orientation in TRANSPOSED_ORIENTATIONS else (width, height)


def to_rgb(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """RGB with alpha composited on white (so shapes that live in alpha survive); returns the alpha too."""
    if im.mode.startswith("I") or im.mode == "F":
        # High-bit-depth gray: scale by the image's own peak instead of clipping at 255.
        arr = np.asarray(im, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        im = Image.fromarray((arr * (255.0 / peak) if peak > 255 else arr).clip(0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("LA", "La", "PA"):
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), alpha
    return (im if im.mode == "RGB" else im.convert("RGB")), None


def decode(
    data: bytes, max_pixels: int, timeout_s: float, draft_short_side: int | None = None
) -> tuple[Image.Image, Image.Image | None, dict[str, Any]]:
    """Decode one image safely: (RGB image, alpha or None, facts about the stored file).

    With `draft_short_side`, JPEGs decode at the smallest DCT scale whose short side is still at least
    that many pixels, which is several times faster than a full decode.
    """
    try:
        with time_limit(timeout_s), pillow_guard(), pixel_limit(max_pixels):
            return _decode(data, max_pixels, draft_short_side)
    except Drop:
        raise
    except (Exception, DecodeTimeout) as e:  # noqa: BLE001 - decoders of exotic formats raise anything
        raise as_drop(e) from None


def _decode(
    data: bytes, max_pixels: int, draft_short_side: int | None
) -> tuple[Image.Image, Image.Image | None, dict[str, Any]]:
    im = open_image(data, max_pixels)
    width, height = im.size
    orientation = exif_orientation(im)
    facts = {
        "format": im.format,
        "mode": im.mode,
        "width": width,
        "height": height,
        "orientation": orientation,
        "frames": int(getattr(im, "n_frames", 1) or 1),
    }
    if draft_short_side and im.format == "JPEG":
        scale = max(draft_short_side / min(width, height), 1 / 8)
        im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
    im.seek(0)
    im.load()
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    rgb, alpha = to_rgb(im)
    return rgb, alpha, facts
