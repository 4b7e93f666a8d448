"""Image quality filters end to end: the real analysis pass scores each file, the threshold rules decide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from annotators.quality import QualityAnnotator
from curation.config import DecodeConfig
from filters.config import FiltersConfig
from filters.thresholds import ImageQualityFilter, image_quality_rules
from stages.analyze import AnalyzeStage


@pytest.fixture
def judge(run, make_record):
    """Analyse image files (or caption-only records) and apply the image quality rules of a config."""

    def judge(*items: Path | dict, config: dict[str, Any] | None = None) -> list[dict]:
        cfg = FiltersConfig.model_validate({"image": config or {}})
        rows = [item if isinstance(item, dict) else make_record(image_path=str(item)) for item in items]
        stages = [AnalyzeStage(DecodeConfig(), [QualityAnnotator()]), ImageQualityFilter(image_quality_rules(cfg))]
        return run(stages, rows)

    return judge


def reasons(rows: list[dict]) -> list[str | None]:
    return [r["drop_reason"] for r in rows]


def save(image: Image.Image, path: Path, **params: Any) -> Path:
    image.save(path, **params)
    return path


def test_real_sharp_photos_are_kept(judge, sharp_photo, rocket_photo):
    rows = judge(sharp_photo, rocket_photo)
    assert reasons(rows) == [None, None]
    assert all(r["drop_stage"] is None for r in rows)


def test_real_motion_blurred_photo_is_dropped_as_blurry(judge, blurred_photo):
    (row,) = judge(blurred_photo)
    assert (row["drop_stage"], row["drop_reason"]) == ("image_quality", "image_blurry")
    assert row["drop_value"] == pytest.approx(row["quality.sharpness"])


def test_sharpness_threshold_both_sides(judge, sharp_photo, tmp_path):
    blurred = save(Image.open(sharp_photo).filter(ImageFilter.GaussianBlur(5)), tmp_path / "blurred.png")
    assert reasons(judge(sharp_photo, blurred)) == [None, "image_blurry"]
    (kept,) = judge(sharp_photo)
    assert reasons(judge(sharp_photo, config={"sharpness": {"min_sharpness": kept["quality.sharpness"] + 1}})) == [
        "image_blurry"
    ]
    assert reasons(judge(blurred, config={"sharpness": {"enabled": False}})) == [None]


def test_small_images_are_dropped_at_the_short_side_bound(judge, rocket_photo, tmp_path):
    photo = Image.open(rocket_photo)
    small = save(photo.resize((384, 255)), tmp_path / "small.png")
    just_enough = save(photo.resize((386, 256)), tmp_path / "just_enough.png")
    rows = judge(small, just_enough)
    assert reasons(rows) == ["image_too_small", None]
    assert rows[0]["drop_value"] == 255


def test_extreme_aspect_ratios_are_dropped(judge, rocket_photo, tmp_path):
    photo = Image.open(rocket_photo)
    banner = save(photo.resize((1200, 300)), tmp_path / "banner.png")
    wide = save(photo.resize((900, 300)), tmp_path / "wide.png")
    rows = judge(banner, wide)
    assert reasons(rows) == ["aspect_ratio_too_extreme", None]
    assert rows[0]["drop_value"] == pytest.approx(4.0)


def test_max_megapixels(judge, rocket_photo):
    assert reasons(judge(rocket_photo, config={"size": {"max_megapixels": 0.25}})) == ["image_too_large"]  # 640x427
    assert reasons(judge(rocket_photo, config={"size": {"max_megapixels": 0.3}})) == [None]


def test_exposure_dark_and_bright(judge, sharp_photo, tmp_path):
    photo = Image.open(sharp_photo).convert("RGB")
    dark = save(photo.point(lambda v: v // 40), tmp_path / "dark.png")  # every level <= 6
    canvas = Image.new("RGB", (1000, 1000), "white")
    canvas.paste(photo.resize((300, 200)), (350, 400))  # 6 % photo on white
    bright = save(canvas, tmp_path / "bright.png")
    rows = judge(dark, bright)
    assert reasons(rows) == ["image_too_dark", "image_too_bright"]
    assert rows[0]["drop_value"] > 0.85 and rows[1]["drop_value"] > 0.85
    assert reasons(
        judge(
            dark,
            bright,
            config={
                "exposure": {"max_dark_fraction": 1.0, "max_bright_fraction": 1.0},
                "information": {"enabled": False},
                "sharpness": {"enabled": False},
            },
        )
    ) == [None, None]


def test_near_uniform_images_have_low_information(judge, tmp_path):
    rng = np.random.default_rng(0)
    flat = np.clip(128 + rng.normal(0, 1, (400, 400)), 0, 255).astype(np.uint8)
    flat_path = save(Image.fromarray(flat).convert("RGB"), tmp_path / "flat.png")
    (row,) = judge(flat_path)
    assert row["drop_reason"] == "image_low_information"
    assert row["drop_value"] < 3.0
    assert reasons(judge(flat_path, config={"information": {"min_entropy": 1.0}, "sharpness": {"enabled": False}})) == [
        None
    ]


def test_over_compressed_jpeg(judge, sharp_photo, tmp_path):
    photo = Image.open(sharp_photo).convert("RGB")
    crushed = save(photo.resize((1600, 1020)), tmp_path / "crushed.jpg", quality=1)
    fine = save(photo.resize((1600, 1020)), tmp_path / "fine.jpg", quality=90)
    rows = judge(crushed, fine, config={"sharpness": {"enabled": False}})
    assert reasons(rows) == ["image_over_compressed", None]
    assert rows[0]["drop_value"] < 0.03


def test_multi_frame_policy(judge, rocket_photo, tmp_path):
    photo = Image.open(rocket_photo).convert("RGB")
    frames = [photo, photo.rotate(10), photo.rotate(20)]
    animated = tmp_path / "animated.gif"
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100, loop=0)
    (kept,) = judge(animated)
    assert kept["frames"] == 3 and kept["drop_reason"] is None  # default: keep_first_frame
    (dropped,) = judge(animated, config={"frames": {"policy": "drop"}})
    assert (dropped["drop_reason"], dropped["drop_value"]) == ("image_multi_frame", 3.0)
    assert reasons(judge(rocket_photo, config={"frames": {"policy": "drop"}})) == [None]


def test_text_only_samples_pass_image_filters_untouched(judge, make_record):
    text_only = make_record(caption="A poem about the sea, no image.")
    (row,) = judge(text_only)
    assert row["status"] == "kept"
    assert row["quality.sharpness"] is None and row["quality.short_side"] is None
