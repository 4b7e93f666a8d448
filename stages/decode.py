"""Safe reading and decoding: every way an input can be bad ends as a `Drop` with a reason, never a crash.

Bounds per sample: a byte limit before reading, a pixel limit checked on the header before decoding (and
Pillow's own bomb check), and a wall-clock limit around the decode.
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
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from curation.stage import Drop

# Truncated files must fail loudly (a recorded reason), not decode half an image silently.
ImageFile.LOAD_TRUNCATED_IMAGES = False

EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


class DecodeTimeout(Exception):
    pass


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
    """Pillow's own bomb check reads a process-wide limit; set it for this open only, then restore it."""
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


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse sizes past the pixel limit before any pixel is decoded."""
    try:
        with pillow_guard(), pixel_limit(max_pixels):
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Drop("not_an_image", error="Pillow cannot identify the file") from None
    except Image.DecompressionBombError as e:
        raise Drop("too_many_pixels", error=str(e)[:500]) from None
    except Exception as e:  # noqa: BLE001 - header parsers raise many kinds of errors on hostile files
        raise Drop("decode_error", error=f"{type(e).__name__}: {e}"[:500]) from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise Drop("bad_size", error=f"declared size {w}x{h}")
    if w * h > max_pixels:
        raise Drop("too_many_pixels", value=float(w * h), error=f"declared size {w}x{h}")
    return im


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
    try:
        with time_limit(timeout_s), pillow_guard():
            if draft_short_side and im.format == "JPEG":
                scale = max(draft_short_side / min(width, height), 1 / 8)
                im.draft("RGB", (max(1, round(width * scale)), max(1, round(height * scale))))
            im.seek(0)
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            rgb, alpha = to_rgb(im)
    except Drop:
        raise
    except DecodeTimeout as e:
        raise Drop("decode_timeout", error=str(e)) from None
    except Image.DecompressionBombError as e:
        raise Drop("too_many_pixels", error=str(e)[:500]) from None
    except MemoryError:
        raise Drop("decode_out_of_memory") from None
    except (OSError, SyntaxError) as e:
        reason = "truncated" if "truncated" in str(e).lower() else "decode_error"
        raise Drop(reason, error=f"{type(e).__name__}: {e}"[:500]) from None
    except Exception as e:  # noqa: BLE001 - decoders of exotic formats raise anything
        raise Drop("decode_error", error=f"{type(e).__name__}: {e}"[:500]) from None
    return rgb, alpha, facts
