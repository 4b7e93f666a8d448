"""Image signatures through the real analysis pass: what they equate and what they keep apart."""

from __future__ import annotations

import io
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from curation import schema as rec
from curation.config import DecodeConfig
from stages.analyze import AnalyzeStage
from stages.annotator import AnalysisImage
from stages.dedup.signatures import PHASH, PIXEL_HASH, SignatureAnnotator, hamming, phash_int64, pixel_hash

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "dedup"
LAPTOP, RED_LAPTOP = PHOTOS / "train2017_000000084284.jpg", PHOTOS / "val2017_000000553664.jpg"
SIGNS, STOP_SIGN = PHOTOS / "train2017_000000231460.jpg", PHOTOS / "train2017_000000525891.jpg"


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def analyse(blobs: dict[str, bytes]) -> dict[str, dict]:
    """Run the analysis pass with the signature annotator over in-memory files."""
    stage = AnalyzeStage(DecodeConfig(), [SignatureAnnotator()])
    stage.bind(rec.record_schema(stage.extra_columns))
    rows = [rec.new_record("t", name, 1, image_bytes=data) for name, data in blobs.items()]
    out = stage(rec.to_table(rows, stage.schema)).to_pylist()
    assert all(r["status"] == rec.KEPT for r in out), [r["error"] for r in out]
    return {r["source_key"]: r for r in out}


def distance(a: dict, b: dict) -> int:
    return int(hamming(np.array([a[PHASH]]), np.array([b[PHASH]]))[0])


def variants(path: Path) -> dict[str, bytes]:
    """The copies a crawl meets: same bytes, lossless re-encode, resize, re-encode, crop, brighten, grayscale."""
    original = path.read_bytes()
    im = Image.open(path).convert("RGB")
    w, h = im.size
    return {
        "original": original,
        "same_bytes": original,
        "png": encode(im, "PNG"),
        "png_again": encode(im, "PNG", compress_level=1),
        "half": encode(im.resize((w // 2, h // 2), Image.LANCZOS), "JPEG", quality=90),
        "jpeg_q60": encode(im, "JPEG", quality=60),
        "crop_1pct": encode(im.crop((w // 100, h // 100, w - w // 100, h - h // 100)), "JPEG", quality=90),
        "brighter": encode(ImageEnhance.Brightness(im).enhance(1.1), "JPEG", quality=90),
        "gray": encode(im.convert("L"), "JPEG", quality=90),
    }


def test_phash_is_imagehash_of_the_analysis_image() -> None:
    image = Image.open(LAPTOP).convert("RGB")
    analysis = AnalysisImage(image=image, display_width=500, display_height=375, data=b"")
    value = phash_int64(analysis)
    assert format(value & (2**64 - 1), "016x") == str(imagehash.phash(image))
    assert -(2**63) <= value < 2**63


@pytest.mark.parametrize("photo", [LAPTOP, SIGNS])
def test_copies_of_a_photo_are_close_and_lossless_copies_share_pixels(photo: Path) -> None:
    rows = analyse(variants(photo))
    original = rows["original"]
    for name, row in rows.items():
        assert distance(original, row) <= 4, name  # the default radius
    assert rows["same_bytes"]["sha256"] == original["sha256"]
    assert rows["png"][PIXEL_HASH] == rows["png_again"][PIXEL_HASH]  # same pixels, other bytes
    assert rows["png"]["sha256"] != rows["png_again"]["sha256"]
    lossy = {"half", "jpeg_q60", "crop_1pct", "brighter", "gray"}
    assert len({rows[n][PIXEL_HASH] for n in lossy} | {original[PIXEL_HASH]}) == len(lossy) + 1


def test_look_alike_photos_are_far_apart() -> None:
    rows = analyse({p.name: p.read_bytes() for p in (LAPTOP, RED_LAPTOP, SIGNS, STOP_SIGN)})
    assert distance(rows[LAPTOP.name], rows[RED_LAPTOP.name]) > 12
    assert distance(rows[SIGNS.name], rows[STOP_SIGN.name]) > 12


def logo(shape: str) -> bytes:
    """Black RGB everywhere; the shape exists only in the alpha channel."""
    alpha = Image.new("L", (128, 128), 0)
    draw = ImageDraw.Draw(alpha)
    if shape == "disc":
        draw.ellipse((16, 16, 112, 112), fill=255)
    else:
        draw.rectangle((8, 48, 120, 80), fill=255)
    rgba = Image.merge("RGBA", (*Image.new("RGB", (128, 128), 0).split(), alpha))
    return encode(rgba, "PNG")


def test_alpha_only_logos_differ_once_composited_on_white() -> None:
    rows = analyse({"disc": logo("disc"), "bar": logo("bar")})
    # A plain RGB conversion makes the two identical (all black): the test would catch a naive pass.
    plain = [Image.open(io.BytesIO(logo(s))).convert("RGB") for s in ("disc", "bar")]
    assert imagehash.phash(plain[0]) == imagehash.phash(plain[1])
    assert distance(rows["disc"], rows["bar"]) > 4
    assert rows["disc"][PIXEL_HASH] != rows["bar"][PIXEL_HASH]


def test_pixel_hash_tells_same_pixels_from_a_different_alpha_or_display_size() -> None:
    rgb = Image.new("RGB", (64, 48), (200, 10, 10))
    base = AnalysisImage(image=rgb, display_width=640, display_height=480, data=b"")
    assert pixel_hash(base) == pixel_hash(AnalysisImage(image=rgb.copy(), display_width=640, display_height=480, data=b"x"))
    assert pixel_hash(base) != pixel_hash(AnalysisImage(image=rgb, display_width=320, display_height=240, data=b""))
    with_alpha = AnalysisImage(image=rgb, display_width=640, display_height=480, data=b"", alpha=Image.new("L", (64, 48), 255))
    assert pixel_hash(base) != pixel_hash(with_alpha)
