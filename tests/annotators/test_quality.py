from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from annotators.quality import QUALITY_COLUMNS, QualityAnnotator, grey_at_scale, histogram_scores, sharpness
from curation import schema as rec
from curation.config import DecodeConfig
from stages.analyze import AnalyzeStage
from stages.annotator import AnalysisImage

DATA = Path(__file__).resolve().parents[1] / "data"
PHOTOS = sorted((DATA / "photos").glob("*.jpg")) + sorted((DATA / "filters").glob("*.*[gG]"))


def analysed(paths: list[Path]) -> list[dict]:
    """Run the real analysis pass (one small decode) with the quality annotator."""
    stage = AnalyzeStage(DecodeConfig(), [QualityAnnotator()])
    schema = rec.record_schema(stage.extra_columns)
    stage.bind(schema)
    rows = [rec.new_record("t", str(p), 1, image_path=str(p)) for p in paths]
    return stage(rec.to_table(rows, schema)).to_pylist()


def small(image: Image.Image) -> AnalysisImage:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return AnalysisImage(
        image=image.convert("RGB"), display_width=image.width, display_height=image.height, data=buf.getvalue()
    )


def test_real_photos_get_every_score_in_a_plausible_range():
    assert len(PHOTOS) >= 5
    for row in analysed(PHOTOS):
        assert row["status"] == "kept", row["source_key"]
        assert set(QUALITY_COLUMNS) <= row.keys()
        assert 4.0 < row["quality.entropy"] <= 8.0
        assert 0 <= row["quality.dark_fraction"] < 0.3 and 0 <= row["quality.bright_fraction"] < 0.4
        assert row["quality.bytes_per_pixel"] > 0.1
        assert row["quality.sharpness"] > 0


def test_size_scores_come_from_the_display_size_not_the_small_image(tmp_path):
    # A 1600x400 panorama stored rotated (EXIF orientation 6): displayed 400 wide, 1600 tall.
    im = Image.effect_noise((1600, 400), 40).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    im.save(path, "JPEG", exif=exif)
    (row,) = analysed([path])
    assert row["quality.short_side"] == 400
    assert row["quality.aspect_ratio"] == pytest.approx(4.0)
    assert row["quality.megapixels"] == pytest.approx(0.64)
    assert row["quality.bytes_per_pixel"] == pytest.approx(path.stat().st_size / 640_000, rel=1e-6)


def test_sharpness_separates_sharp_real_photos_from_blurred_ones():
    sharp, motion = analysed([DATA / "photos" / "val2017_000000205401.jpg", DATA / "filters" / "clock_motion.png"])
    assert sharp["quality.sharpness"] > 300
    assert motion["quality.sharpness"] < 30
    photo = Image.open(DATA / "photos" / "val2017_000000205401.jpg").convert("RGB")
    blurred = QualityAnnotator().annotate({}, small(photo.filter(ImageFilter.GaussianBlur(6))))
    assert blurred["quality.sharpness"] < 30


def test_sharpness_is_measured_at_a_fixed_scale_so_image_size_does_not_matter():
    photo = Image.open(DATA / "filters" / "rocket.jpg").convert("RGB")  # 640x427
    big = photo.resize((2560, 1708), Image.Resampling.BICUBIC)  # the same content at 4x the pixels
    at_scale = [sharpness(grey_at_scale(im)) for im in (photo, big)]
    assert at_scale[0] == pytest.approx(at_scale[1], rel=0.25)  # the up-and-down resize softens a little
    # Per pixel at full size, the big copy would look blurry.
    assert sharpness(big.convert("L")) < 0.1 * at_scale[1]


def test_histogram_scores_of_flat_noisy_dark_and_bright_images():
    flat = Image.new("L", (300, 300), 128)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300), dtype=np.uint8))
    black = Image.new("L", (300, 300), 3)
    white = Image.new("L", (300, 300), 252)
    assert histogram_scores(flat) == (0.0, 0.0, 0.0)
    assert histogram_scores(noise)[0] > 7.9
    assert histogram_scores(black)[1:] == (1.0, 0.0)
    assert histogram_scores(white)[1:] == (0.0, 1.0)


def test_alpha_composited_on_white_counts_as_bright():
    transparent = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    white = Image.alpha_composite(Image.new("RGBA", transparent.size, "white"), transparent)
    scores = QualityAnnotator().annotate({}, small(white))
    assert scores["quality.bright_fraction"] == 1.0 and scores["quality.entropy"] == 0.0
