"""Resolution buckets: the table, the choice of bucket and crop, and rendering into the bucket.

Real photos come from tests/data/photos (COCO, licences in LICENSES.md); rotated, resized, odd-mode
and transparent variants are made from them or drawn here.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, JpegImagePlugin

from stages.bucketing import (
    Bucket,
    BucketDrop,
    BucketingConfig,
    BucketPlan,
    build_bucket_table,
    plan_bucket,
    plan_for_bucket,
    render_to_bucket,
)
from stages.resize import ImageTooLarge, SizeMismatch

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
LANDSCAPE = "val2017_000000229358.jpg"  # 640x423
PORTRAIT = "train2017_000000159269.jpg"  # 427x640
SQUARE = "val2017_000000165518.jpg"  # 612x612
WIDE = "val2017_000000205401.jpg"  # 640x408, aspect 1.57

CFG = BucketingConfig()
TABLE = build_bucket_table(CFG)
MAX_PIXELS = 50_000_000

# For each EXIF orientation, the transpose that turns an upright picture into what a camera stores.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def photo(name: str) -> Image.Image:
    image = Image.open(PHOTOS / name)
    image.load()
    return image


def encoded(image: Image.Image, fmt: str = "JPEG", orientation: int | None = None, **params) -> bytes:
    if orientation is not None:
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = orientation
        params["exif"] = exif.tobytes()
    if fmt == "JPEG":
        params.setdefault("quality", 95)
    if fmt == "PNG":
        params.setdefault("compress_level", 1)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.mean(np.abs(pixels(a) - pixels(b))))


def psnr(a: Image.Image, b: Image.Image) -> float:
    return 10 * math.log10(255**2 / float(np.mean((pixels(a) - pixels(b)) ** 2)))


def planned(width: int, height: int, cfg: BucketingConfig = CFG) -> BucketPlan:
    plan = plan_bucket(width, height, build_bucket_table(cfg), cfg)
    assert isinstance(plan, BucketPlan), plan
    return plan


# --- the table -------------------------------------------------------------------------------------


def test_every_bucket_has_patch_multiple_sides_within_256_to_2048_and_fits_its_budget():
    assert len(TABLE) > 40
    for bucket in TABLE:
        assert bucket.width % 32 == 0 and bucket.height % 32 == 0, bucket
        assert 256 <= bucket.width <= 2048 and 256 <= bucket.height <= 2048, bucket
        assert 0.25 <= bucket.aspect <= 4.0, bucket
        assert 0.9 * bucket.tier**2 <= bucket.width * bucket.height <= bucket.tier**2, bucket
        assert bucket.name == f"{bucket.width}x{bucket.height}"


def test_table_is_deterministic_sorted_unique_and_has_every_portrait_for_each_landscape():
    assert build_bucket_table(BucketingConfig()) == TABLE
    assert TABLE == sorted(TABLE, key=lambda b: (b.tier, b.width, b.height))
    names = [bucket.name for bucket in TABLE]
    assert len(set(names)) == len(names)
    shapes = {(bucket.width, bucket.height) for bucket in TABLE}
    assert all((height, width) in shapes for width, height in shapes)


def test_middle_tiers_run_from_1_to_4_through_4_to_1_and_the_end_tiers_are_square():
    def names(tier: int) -> set[str]:
        return {bucket.name for bucket in TABLE if bucket.tier == tier}

    assert names(256) == {"256x256"}
    assert names(2048) == {"2048x2048"}
    assert {"256x1024", "512x512", "1024x256"} <= names(512)
    assert {"512x2048", "1024x1024", "2048x512"} <= names(1024)


def test_config_shapes_the_table():
    cfg = BucketingConfig(tiers=[512, 1024], side_multiple=64, max_aspect=2.0, min_aspect=0.5)
    table = build_bucket_table(cfg)
    assert {bucket.tier for bucket in table} == {512, 1024}
    assert all(bucket.width % 64 == 0 and bucket.height % 64 == 0 for bucket in table)
    assert 0.5 <= min(bucket.aspect for bucket in table) < 0.6
    assert 1 / 0.6 < max(bucket.aspect for bucket in table) <= 2.0


def test_a_shape_two_close_tiers_share_is_kept_once_in_the_larger():
    table = build_bucket_table(BucketingConfig(tiers=[512, 520]))
    squares = [bucket for bucket in table if bucket.name == "512x512"]
    assert [bucket.tier for bucket in squares] == [520]


@pytest.mark.parametrize(
    "settings",
    [
        {"side_multiple": 48},
        {"min_side": 300},
        {"tiers": [4096]},
        {"tiers": [512, 512]},
        {"tiers": []},
        {"min_side": 1024, "max_side": 512, "tiers": [512]},
        {"max_upscale": 0.9},
        {"max_crop_fraction": 1.0},
        {"quality": 0},
        {"format": "gif"},
        {"buckets": 3},
    ],
)
def test_config_rejects_settings_that_break_the_rules(settings):
    with pytest.raises(ValueError):
        BucketingConfig(**settings)


# --- choosing a bucket -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, bucket",
    [(LANDSCAPE, "608x416"), (PORTRAIT, "416x608"), (SQUARE, "512x512")],
)
def test_real_photos_land_in_buckets_of_their_own_orientation(name, bucket):
    image = photo(name)
    plan = planned(*image.size)
    assert plan.bucket.name == bucket
    assert plan.scale <= 1.0
    rendered = decoded(render_to_bucket(encoded(image), plan, CFG, MAX_PIXELS))
    assert rendered.size == (plan.bucket.width, plan.bucket.height)


@pytest.mark.parametrize("orientation", sorted(STORED_AS))
def test_exif_orientation_is_applied_before_the_bucket_is_chosen_and_rendered(orientation):
    upright = photo(PORTRAIT)
    data = encoded(upright.transpose(STORED_AS[orientation]), orientation=orientation)
    plan = planned(*upright.size)
    assert plan.bucket.name == "416x608"

    rendered = decoded(render_to_bucket(data, plan, CFG, MAX_PIXELS))
    reference = decoded(render_to_bucket(encoded(upright), plan, CFG, MAX_PIXELS))
    assert rendered.size == (416, 608)
    assert mean_abs_diff(rendered, reference) < 3
    # The measure tells a mirrored picture from the right one.
    assert mean_abs_diff(rendered.transpose(Image.Transpose.FLIP_LEFT_RIGHT), reference) > 15


@pytest.fixture
def draft_reductions(monkeypatch) -> list[float]:
    """The linear reductions JPEG decoders are asked for during the test."""
    reductions: list[float] = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        stored_width = self.size[0]
        result = draft(self, mode, size)
        reductions.append(stored_width / result[1][2])
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return reductions


def test_rotated_jpeg_is_draft_decoded_at_the_size_its_orientation_needs(draft_reductions):
    # A 1:4 portrait stored as a 4:1 landscape. Asking the decoder for the bucket's 256x1024 in stored
    # orientation would forbid any DCT scaling; the right request lets it decode at half size.
    upright = photo(PORTRAIT).resize((1000, 4000))
    data = encoded(upright.transpose(STORED_AS[6]), orientation=6)
    cfg = BucketingConfig(tiers=[512])
    plan = planned(1000, 4000, cfg)
    assert plan.bucket.name == "256x1024"

    rendered = decoded(render_to_bucket(data, plan, cfg, MAX_PIXELS))
    assert draft_reductions == [2]
    reference = decoded(render_to_bucket(encoded(upright), plan, cfg.model_copy(update={"draft": False}), MAX_PIXELS))
    assert psnr(rendered, reference) > 35


def test_camera_mpo_files_are_draft_decoded_like_plain_jpegs(draft_reductions):
    image = photo(SQUARE).resize((2448, 2448))
    buffer = io.BytesIO()
    image.save(buffer, "MPO", save_all=True, append_images=[image.rotate(10)])
    cfg = BucketingConfig(tiers=[256])
    rendered = decoded(render_to_bucket(buffer.getvalue(), planned(2448, 2448, cfg), cfg, MAX_PIXELS))
    assert draft_reductions == [8]
    assert rendered.size == (256, 256)


def test_portrait_and_landscape_of_the_same_size_get_transposed_buckets():
    rng = random.Random(11)
    for _ in range(500):
        width, height = rng.randint(150, 5000), rng.randint(150, 5000)
        wide, tall = plan_bucket(width, height, TABLE, CFG), plan_bucket(height, width, TABLE, CFG)
        if isinstance(wide, BucketDrop):
            assert isinstance(tall, BucketDrop) and tall.reason == wide.reason
        else:
            assert isinstance(tall, BucketPlan)
            assert (tall.bucket.width, tall.bucket.height) == (wide.bucket.height, wide.bucket.width)


@pytest.mark.parametrize("max_upscale", [1.0, 1.5])
def test_images_are_never_upscaled_past_the_limit(max_upscale):
    cfg = BucketingConfig(max_upscale=max_upscale)
    table = build_bucket_table(cfg)
    rng = random.Random(5)
    scales = []
    for _ in range(2000):
        plan = plan_bucket(rng.randint(100, 4000), rng.randint(100, 4000), table, cfg)
        if isinstance(plan, BucketPlan):
            assert plan.scale <= max_upscale
            scales.append(plan.scale)
    assert max(scales) > (1.2 if max_upscale > 1 else 0.99)


def test_image_exactly_the_smallest_bucket_is_kept_and_one_pixel_less_is_too_small():
    plan = planned(256, 256)
    assert (plan.bucket.name, plan.scale, plan.crop_box) == ("256x256", 1.0, (0, 0, 256, 256))
    assert plan_bucket(255, 255, TABLE, CFG) == BucketDrop("too_small", 256 / 255, 1.0)


def test_max_upscale_moves_the_too_small_threshold():
    cfg = BucketingConfig(max_upscale=1.1)
    assert planned(233, 233, cfg).scale == pytest.approx(256 / 233)  # 1.0987
    assert plan_bucket(232, 232, build_bucket_table(cfg), cfg) == BucketDrop("too_small", 256 / 232, 1.1)


def test_crop_limit_on_both_sides_for_a_4_to_3_photo_that_only_fits_the_square():
    plan = planned(400, 300)
    assert plan.bucket.name == "256x256"
    assert plan.crop_box == (50, 0, 350, 300)
    assert plan.crop_fraction == 0.25
    drop = plan_bucket(401, 300, TABLE, CFG)
    assert isinstance(drop, BucketDrop) and drop.reason == "crop_too_large"
    assert drop.value == pytest.approx(1 - 300 / 401) and drop.limit == 0.25


def test_crop_limit_on_both_sides_for_panoramas_against_the_4_to_1_bucket():
    cfg = BucketingConfig(max_crop_fraction=0.2)
    table = build_bucket_table(cfg)
    plan = plan_bucket(2000, 400, table, cfg)  # 5:1 loses exactly 20 % to reach 4:1
    assert isinstance(plan, BucketPlan) and plan.bucket.name == "1024x256"
    assert plan.crop_box == (200, 0, 1800, 400)
    drop = plan_bucket(2010, 400, table, cfg)
    assert isinstance(drop, BucketDrop) and drop.reason == "crop_too_large"
    assert drop.value == pytest.approx(1 - 1600 / 2010)


def test_real_wide_photo_between_tiers_is_dropped_unless_a_tier_fits_it():
    width, height = photo(WIDE).size
    drop = plan_bucket(width, height, TABLE, CFG)
    assert isinstance(drop, BucketDrop) and drop.reason == "crop_too_large"
    assert drop.value == pytest.approx(1 - 408 / 640)  # only the 256 square is small enough
    with_384 = BucketingConfig(tiers=[256, 384, 512, 1024, 2048])
    plan = planned(width, height, with_384)
    assert plan.bucket.tier == 384 and plan.bucket.aspect > 1 and plan.crop_fraction < 0.15


def test_bigger_photos_take_the_largest_tier_they_fill():
    assert planned(1100, 1100).bucket.name == "1024x1024"
    assert planned(1000, 1000).bucket.name == "512x512"
    assert planned(2048, 2048).bucket.name == "2048x2048"


def test_center_crop_box_is_centered_on_the_longer_axis():
    bucket = Bucket(512, 512, 512)
    assert plan_for_bucket(1001, 600, bucket).crop_box == (200, 0, 800, 600)
    assert plan_for_bucket(600, 1001, bucket).crop_box == (0, 200, 600, 800)


# --- rendering -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(256, 256), (257, 1029), (1999, 401), (3001, 2003), (1200, 1600)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_rendered_images_have_exactly_their_bucket_size(size, fmt):
    source = photo(LANDSCAPE).resize(size)
    plan = planned(*size)
    rendered = decoded(render_to_bucket(encoded(source, fmt), plan, CFG, MAX_PIXELS))
    assert (rendered.format, rendered.mode) == ("JPEG", "RGB")
    assert rendered.size == (plan.bucket.width, plan.bucket.height)


def test_every_bucket_in_the_table_renders_at_its_exact_size():
    data = encoded(photo(SQUARE))
    for bucket in TABLE:
        plan = plan_for_bucket(612, 612, bucket)
        assert decoded(render_to_bucket(data, plan, CFG, MAX_PIXELS)).size == (bucket.width, bucket.height)


def test_center_crop_keeps_the_middle_of_the_picture():
    source = Image.new("RGB", (1536, 512), (0, 200, 0))
    source.paste((255, 0, 0), (0, 0, 512, 512))
    source.paste((0, 0, 255), (1024, 0, 1536, 512))
    plan = plan_for_bucket(1536, 512, Bucket(256, 256, 256))
    assert plan.crop_box == (512, 0, 1024, 512)
    png = BucketingConfig(format="png")
    rendered = pixels(decoded(render_to_bucket(encoded(source, "PNG"), plan, png, MAX_PIXELS)))
    assert np.abs(rendered[:, 4:-4] - (0, 200, 0)).max() <= 2


def test_png_output_is_the_lossless_resize_of_the_crop():
    source = photo(LANDSCAPE)
    cfg = BucketingConfig(format="png", resample="lanczos", reducing_gap=None)
    plan = planned(*source.size, cfg)
    rendered = decoded(render_to_bucket(encoded(source, "PNG"), plan, cfg, MAX_PIXELS))
    assert rendered.format == "PNG"
    expected = source.resize((plan.bucket.width, plan.bucket.height), Image.Resampling.LANCZOS, box=plan.crop_box)
    assert np.array_equal(np.asarray(rendered), np.asarray(expected))


def test_webp_and_jpeg_quality_options():
    source = encoded(photo(LANDSCAPE))
    plan = planned(640, 423)
    lossless = decoded(render_to_bucket(source, plan, BucketingConfig(format="png"), MAX_PIXELS))
    webp = decoded(render_to_bucket(source, plan, BucketingConfig(format="webp", quality=90), MAX_PIXELS))
    assert (webp.format, webp.size) == ("WEBP", lossless.size)
    assert mean_abs_diff(webp, lossless) < 4
    small = render_to_bucket(source, plan, BucketingConfig(quality=40), MAX_PIXELS)
    large = render_to_bucket(source, plan, BucketingConfig(quality=95), MAX_PIXELS)
    assert decoded(small).format == decoded(large).format == "JPEG"
    assert len(small) < 0.6 * len(large)


@pytest.mark.parametrize("resample", ["lanczos", "bicubic", "hamming", "auto"])
def test_draft_decoding_costs_little_quality(resample):
    source = photo(LANDSCAPE).resize((2560, 1692), Image.Resampling.LANCZOS)
    data = encoded(source)
    cfg = BucketingConfig(tiers=[256, 512], resample=resample)
    plan = planned(*source.size, cfg)
    fast = decoded(render_to_bucket(data, plan, cfg, MAX_PIXELS))
    slow = cfg.model_copy(update={"draft": False, "reducing_gap": None})
    full = decoded(render_to_bucket(data, plan, slow, MAX_PIXELS))
    assert psnr(fast, full) > 33


@pytest.mark.parametrize(
    "source_size, bucket, filter_used",
    [
        ((1500, 1500), Bucket(1024, 1024, 1024), "hamming"),
        ((700, 700), Bucket(1024, 1024, 1024), "lanczos"),
        ((1500, 1500), Bucket(512, 512, 512), "lanczos"),
    ],
)
def test_auto_filter_is_lanczos_for_small_outputs_and_enlargements_and_hamming_for_large_reductions(
    source_size, bucket, filter_used
):
    data = encoded(photo(SQUARE).resize(source_size), "PNG")
    plan = plan_for_bucket(*source_size, bucket)
    auto = BucketingConfig(format="png")
    rendered = render_to_bucket(data, plan, auto, MAX_PIXELS)
    assert rendered == render_to_bucket(data, plan, auto.model_copy(update={"resample": filter_used}), MAX_PIXELS)
    other = "lanczos" if filter_used == "hamming" else "hamming"
    assert rendered != render_to_bucket(data, plan, auto.model_copy(update={"resample": other}), MAX_PIXELS)


def test_transparent_pixels_are_composited_on_white():
    source = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    source.paste((200, 0, 0, 255), (128, 128, 384, 384))
    plan = planned(512, 512)
    for data in (encoded(source, "PNG"), encoded(source.convert("P"), "PNG", transparency=0)):
        rendered = pixels(decoded(render_to_bucket(data, plan, CFG.model_copy(update={"format": "png"}), MAX_PIXELS)))
        assert np.array_equal(rendered[10, 10], (255, 255, 255))
        assert np.abs(rendered[256, 256] - (200, 0, 0)).max() <= 2


def test_cmyk_gray_and_bilevel_sources_become_rgb():
    plan = planned(300, 300)
    cases = [
        (Image.new("CMYK", (300, 300), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (Image.new("L", (300, 300), 90), "PNG", (90, 90, 90)),
        (Image.new("1", (300, 300), 1), "PNG", (255, 255, 255)),
    ]
    for source, fmt, colour in cases:
        rendered = decoded(render_to_bucket(encoded(source, fmt), plan, CFG, MAX_PIXELS))
        assert rendered.mode == "RGB"
        assert np.abs(pixels(rendered).mean(axis=(0, 1)) - colour).max() < 4, source.mode


def test_16_bit_gray_is_scaled_to_8_bits_not_clipped():
    values = np.full((300, 300), 16384, dtype=np.uint16)
    values[:, :150] = 65535
    source = Image.fromarray(values)
    assert source.mode.startswith("I;16")
    rendered = pixels(decoded(render_to_bucket(encoded(source, "PNG"), planned(300, 300), CFG, MAX_PIXELS)))
    assert np.abs(rendered[128, 10] - 255).max() <= 2
    assert np.abs(rendered[128, 245] - 64).max() <= 2


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    data = encoded(photo(SQUARE))
    plan = planned(612, 612)
    with pytest.raises(ImageTooLarge, match="max_pixels=374543") as refused:
        render_to_bucket(data, plan, CFG, max_pixels=612 * 612 - 1)
    assert refused.value.reason == "too_many_pixels"
    assert decoded(render_to_bucket(data, plan, CFG, max_pixels=612 * 612)).size == (512, 512)


def test_a_plan_made_for_another_size_is_refused():
    plan = planned(640, 480)
    with pytest.raises(SizeMismatch, match="640x480"):
        render_to_bucket(encoded(photo(LANDSCAPE)), plan, CFG, MAX_PIXELS)
