"""Resolution buckets: the bucket table, which bucket (and crop) each image gets, and its rendering.

The table has one group of buckets per tier. A tier is a square pixel budget (512 means about
512*512 pixels); its buckets are every width x height whose sides are multiples of
``side_multiple`` (the model's 32 px patch by default), lie in [min_side, max_side], have an aspect
ratio in [min_aspect, max_aspect] and fill the budget as closely as the side step allows from below
(for each short side, the longest long side whose area stays within the budget). With the default
256-2048 sides, the 256 and 2048 tiers hold only their square, because any other aspect ratio at
that budget would need a side outside the range; 512 and 1024 run from 1:4 to 4:1.

An image is planned into the largest tier in which its nearest-aspect bucket (distance measured
as |log(aspect)|, so 2:1 and 1:2 are equally far from 1:1) can be filled without upscaling past
``max_upscale`` and with a crop that loses at most ``max_crop_fraction`` of the image.

Crop policy: center crop, on the axis where the image is relatively longer than its bucket. The
crop box is in source coordinates of the upright image (after EXIF orientation), in whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stages.resize import ImageFormat, ResampleName, render

PATCH_SIZE = 32

DropReason = Literal["too_small", "crop_too_large"]


class BucketingConfig(BaseModel):
    """What buckets exist, which images may go into them, and how rendered images are encoded."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    tiers: list[int] = Field(
        default=[256, 512, 1024, 2048],
        min_length=1,
        description="Side of each tier's square pixel budget: tier 512 holds buckets of about 512*512 pixels.",
    )
    min_side: int = Field(default=256, gt=0, description="Smallest bucket side in pixels.")
    max_side: int = Field(default=2048, gt=0, description="Largest bucket side in pixels.")
    side_multiple: int = Field(
        default=PATCH_SIZE,
        gt=0,
        description=f"Every bucket side is a multiple of this, itself a multiple of the model's {PATCH_SIZE} px patch.",
    )
    min_aspect: float = Field(default=0.25, gt=0, le=1, description="Tallest bucket's width/height (0.25 = 1:4).")
    max_aspect: float = Field(default=4.0, ge=1, description="Widest bucket's width/height (4.0 = 4:1).")
    max_upscale: float = Field(
        default=1.0,
        ge=1.0,
        description="Largest enlargement allowed to fill a bucket; 1.0 never upscales. Images that cannot "
        "fill even the smallest bucket are dropped as too_small.",
    )
    max_crop_fraction: float = Field(
        default=0.25,
        ge=0,
        lt=1,
        description="Largest fraction of the image's area the center crop may cut away; more drops the "
        "image as crop_too_large. 0.25 keeps 4:3 photos that only fit a square bucket (the 256 tier has no "
        "other shape) and panoramas up to 16:3 against the 4:1 bucket.",
    )
    format: ImageFormat = Field(default="jpg", description="Output encoding: JPEG, WebP, or lossless PNG.")
    quality: int = Field(default=95, ge=1, le=100, description="JPEG/WebP quality; PNG ignores it.")
    resample: ResampleName = Field(
        default="auto",
        description="Final resize filter. auto: Lanczos for outputs up to 512x512 and for enlargements, Hamming "
        "for larger reductions, where Lanczos would make 1024 px buckets slower than img2dataset's OpenCV "
        "INTER_AREA (bench/results/bucketing.md).",
    )
    reducing_gap: float | None = Field(
        default=2.0,
        ge=1.0,
        description="Shrink by an integer factor (box average) first, as long as the last filter still "
        "shrinks at least this much; None always filters the full image. See PIL.Image.resize.",
    )
    draft: bool = Field(
        default=True,
        description="Decode JPEGs with DCT-domain downscaling (1/2, 1/4, 1/8) to no less than the target resolution.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> BucketingConfig:
        if self.side_multiple % PATCH_SIZE:
            raise ValueError(f"side_multiple={self.side_multiple} is not a multiple of the {PATCH_SIZE} px patch")
        for name in ("min_side", "max_side"):
            if getattr(self, name) % self.side_multiple:
                raise ValueError(
                    f"{name}={getattr(self, name)} is not a multiple of side_multiple={self.side_multiple}"
                )
        if self.min_side > self.max_side:
            raise ValueError(f"min_side={self.min_side} > max_side={self.max_side}")
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError(f"tiers repeat a value: {self.tiers}")
        for tier in self.tiers:
            if not self.min_side <= tier <= self.max_side:
                raise ValueError(f"tier {tier} is outside [min_side, max_side] = [{self.min_side}, {self.max_side}]")
        return self


@dataclass(frozen=True)
class Bucket:
    """One output shape. ``tier`` is the side of the square pixel budget the bucket was built for."""

    width: int
    height: int
    tier: int

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return self.width / self.height


@dataclass(frozen=True)
class BucketPlan:
    """Where one image goes and how: crop ``crop_box`` out of the upright source, resize it to the bucket.

    ``crop_box`` is (left, top, right, bottom) in source pixels of the image as displayed (after
    EXIF orientation), ``source_size`` that image's (width, height). ``scale`` is bucket side /
    crop side: above 1 is an enlargement. The two axes' ratios differ only by rounding the crop to
    whole pixels; ``scale`` is the larger.
    """

    bucket: Bucket
    scale: float
    crop_box: tuple[int, int, int, int]
    source_size: tuple[int, int]

    @property
    def crop_fraction(self) -> float:
        """Fraction of the source image's area that the crop cuts away."""
        left, top, right, bottom = self.crop_box
        width, height = self.source_size
        return 1 - (right - left) * (bottom - top) / (width * height)


@dataclass(frozen=True)
class BucketDrop:
    """Why an image gets no bucket: ``value`` is the deciding measure, ``limit`` the bound it broke.

    too_small: ``value`` is the smallest enlargement any bucket would need, above ``max_upscale``.
    crop_too_large: ``value`` is the smallest crop fraction among the buckets the image can fill,
    above ``max_crop_fraction``.
    """

    reason: DropReason
    value: float
    limit: float


def build_bucket_table(cfg: BucketingConfig) -> list[Bucket]:
    """Every bucket of every tier, sorted by (tier, width, height).

    A shape that two close tiers both produce is kept once, in the larger tier, so bucket names stay unique.
    """
    step = cfg.side_multiple
    table: dict[tuple[int, int], Bucket] = {}
    for tier in sorted(cfg.tiers, reverse=True):
        budget = tier * tier
        for short in range(cfg.min_side, cfg.max_side + 1, step):
            long = budget // short // step * step
            if long < short:
                break
            if long > cfg.max_side:
                continue
            for width, height in ((long, short), (short, long)):
                if cfg.min_aspect <= width / height <= cfg.max_aspect:
                    table.setdefault((width, height), Bucket(width, height, tier))
    return sorted(table.values(), key=lambda bucket: (bucket.tier, bucket.width, bucket.height))


def plan_for_bucket(width: int, height: int, bucket: Bucket) -> BucketPlan:
    """The centered crop of a width x height (upright) image that has ``bucket``'s aspect ratio."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if width * bucket.height >= height * bucket.width:
        crop_width = min(width, max(1, round(height * bucket.width / bucket.height)))
        crop_height = height
    else:
        crop_width = width
        crop_height = min(height, max(1, round(width * bucket.height / bucket.width)))
    left = (width - crop_width) // 2
    top = (height - crop_height) // 2
    return BucketPlan(
        bucket=bucket,
        scale=max(bucket.width / crop_width, bucket.height / crop_height),
        crop_box=(left, top, left + crop_width, top + crop_height),
        source_size=(width, height),
    )


def plan_bucket(width: int, height: int, table: list[Bucket], cfg: BucketingConfig) -> BucketPlan | BucketDrop:
    """Bucket and crop for an image whose upright (EXIF-transposed) size is width x height.

    Tiers are tried from the largest down; in each, only the bucket nearest in log aspect ratio is
    considered (ties go to the larger bucket). The first that the image fills within
    ``max_upscale`` and with a crop within ``max_crop_fraction`` wins.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not table:
        raise ValueError("empty bucket table")
    log_aspect = math.log(width / height)
    plans: list[BucketPlan] = []
    for tier in sorted({bucket.tier for bucket in table}, reverse=True):
        nearest = min(
            (bucket for bucket in table if bucket.tier == tier),
            key=lambda bucket: (abs(math.log(bucket.aspect) - log_aspect), -bucket.width * bucket.height),
        )
        plan = plan_for_bucket(width, height, nearest)
        if plan.scale <= cfg.max_upscale and plan.crop_fraction <= cfg.max_crop_fraction:
            return plan
        plans.append(plan)
    fillable = [plan for plan in plans if plan.scale <= cfg.max_upscale]
    if fillable:
        return BucketDrop("crop_too_large", min(plan.crop_fraction for plan in fillable), cfg.max_crop_fraction)
    return BucketDrop("too_small", min(plan.scale for plan in plans), cfg.max_upscale)


def render_to_bucket(data: bytes, plan: BucketPlan, cfg: BucketingConfig, max_pixels: int) -> bytes:
    """The image in ``data`` cropped and resized to exactly ``plan.bucket``, encoded as ``cfg.format``.

    Raises stages.resize.ImageTooLarge (reason ``too_many_pixels``) for sources over ``max_pixels``
    pixels, before decoding them, and stages.resize.SizeMismatch when the image is not the size
    the plan was made for.
    """
    return render(
        data,
        source_size=plan.source_size,
        box=plan.crop_box,
        size=(plan.bucket.width, plan.bucket.height),
        image_format=cfg.format,
        quality=cfg.quality,
        resample=cfg.resample,
        reducing_gap=cfg.reducing_gap,
        draft=cfg.draft,
        max_pixels=max_pixels,
    )
