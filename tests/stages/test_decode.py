import io
import time
from pathlib import Path

import pytest
from PIL import Image

from curation import schema as rec
from curation.config import DecodeConfig
from stages.analyze import AnalyzeStage
from stages.annotator import AnalysisImage, ImageAnnotator
from stages.decode import decode, display_size, to_rgb


class Recorder(ImageAnnotator):
    """Keeps what the analysis pass handed over, so tests can look at it."""

    name = "recorder"

    def __init__(self):
        self.seen: dict[str, AnalysisImage] = {}

    def annotate(self, row, image):
        self.seen[row["source_key"]] = image
        return {}


def analyze(paths: list[Path], cfg: DecodeConfig | None = None) -> tuple[list[dict], Recorder]:
    recorder = Recorder()
    stage = AnalyzeStage(cfg or DecodeConfig(), [recorder]).bind(rec.record_schema())
    rows = [rec.new_record("t", p.name, 1, image_path=str(p)) for p in paths]
    table = stage(rec.to_table(rows, stage.schema))
    return table.to_pylist(), recorder


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_every_hostile_file_ends_kept_or_with_a_reason_quickly(bad_images_dir: Path):
    files = sorted(p for p in bad_images_dir.iterdir() if p.suffix != ".md")
    assert len(files) >= 69
    start = time.perf_counter()
    rows, _ = analyze(files, DecodeConfig(timeout_s=5))
    assert time.perf_counter() - start < 60
    assert len(rows) == len(files)
    for r in rows:
        assert r["status"] in (rec.KEPT, rec.DROPPED)
        if r["status"] == rec.DROPPED:
            assert r["drop_reason"] and r["drop_stage"] == "decode", r
            assert r["drop_reason"] != "internal_error", r
        else:
            assert r["width"] > 0 and r["height"] > 0 and r["sha256"]
    reasons = {r["source_key"]: r["drop_reason"] for r in rows}
    assert reasons["decompression_bomb.gif"] == "too_many_pixels"
    assert reasons["truncated_image.png"] == "truncated"
    assert reasons["test-ole-file.doc"] == "not_an_image"
    assert reasons["rgb.jpg"] is None


def test_exif_orientation_recorded_and_applied(bad_images_dir: Path):
    rows, rec_ = analyze([bad_images_dir / "orientation_rectangle.jpg", bad_images_dir / "hopper_orientation_6.webp"])
    r = rows[0]
    assert (r["width"], r["height"], r["orientation"]) == (2, 1, 8)  # as stored
    assert rec_.seen["orientation_rectangle.jpg"].image.size == (1, 2)  # as displayed
    assert display_size(1, 2, 8) == (2, 1) and display_size(1, 2, 3) == (1, 2)


def test_odd_modes_become_rgb(bad_images_dir: Path):
    names = ["pil_sample_cmyk.jpg", "16bit.cropped.tif", "10ct_32bit_128.tiff", "p_trns_single.png", "lab.tif"]
    rows, rec_ = analyze([bad_images_dir / n for n in names])
    for n, r in zip(names, rows):
        assert r["status"] == rec.KEPT, r
        assert rec_.seen[n].image.mode == "RGB"
    gray16 = rec_.seen["16bit.cropped.tif"].image
    assert max(gray16.getextrema()[0]) > 0  # scaled, not clipped to black or white


def test_alpha_composited_on_white_keeps_shapes_that_live_in_alpha():
    im = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    im.paste((0, 0, 0, 255), (10, 10, 30, 30))
    rgb, alpha = to_rgb(im)
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((20, 20)) == (0, 0, 0)
    assert alpha is not None and alpha.getpixel((20, 20)) == 255


def test_animation_keeps_first_frame_and_records_frames():
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    rgb, _, facts = decode(data, 10**6, 5)
    assert facts["frames"] == 3
    assert rgb.getpixel((5, 5))[0] > 200


def test_jpeg_draft_decodes_small_but_reports_stored_size():
    im = Image.new("RGB", (2000, 1000), (10, 120, 200))
    rgb, _, facts = decode(encode(im, "JPEG"), 10**8, 5, draft_short_side=256)
    assert (facts["width"], facts["height"]) == (2000, 1000)
    assert 256 <= min(rgb.size) < 1000


@pytest.mark.parametrize("limit,value", [(300, 400.0), (100, None)])  # past 2x the limit Pillow itself refuses
def test_pixel_limit_applies_before_decoding(tmp_path: Path, limit: int, value):
    p = tmp_path / "big.png"
    p.write_bytes(encode(Image.new("RGB", (20, 20)), "PNG"))
    rows, _ = analyze([p], DecodeConfig(max_pixels=limit))
    assert rows[0]["drop_reason"] == "too_many_pixels" and rows[0]["drop_value"] == value


def test_empty_missing_and_too_large_files(tmp_path: Path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "large.png").write_bytes(encode(Image.new("RGB", (300, 300)), "PNG") + b"\0" * 5000)
    rows, _ = analyze([tmp_path / "empty.jpg", tmp_path / "gone.jpg", tmp_path / "large.png"], DecodeConfig(max_bytes=4000))
    assert [r["drop_reason"] for r in rows] == ["empty_file", "file_missing", "file_too_large"]
