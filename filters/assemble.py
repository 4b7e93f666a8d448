"""From a `FiltersConfig` to the annotators of the analysis pass and the filter stages that follow it."""

from __future__ import annotations

from annotators.nsfw import OpenNsfwAnnotator
from annotators.quality import QualityAnnotator
from curation.stage import Stage
from filters.blocklist import CaptionBlocklistFilter, load_terms
from filters.caption_content import CaptionContentFilter
from filters.caption_scores import CaptionScorer
from filters.config import FiltersConfig
from filters.image_blocklist import ImageBlocklist, ImageBlocklistFilter
from filters.language import LanguageFilter
from filters.pii import PiiFilter, PiiScrubber
from filters.thresholds import (
    CaptionQualityFilter,
    ClipHeadFilter,
    ImageQualityFilter,
    SafetyScoreFilter,
    ThresholdFilter,
    caption_quality_rules,
    clip_head_rules,
    custom_rules,
    image_quality_rules,
    safety_score_rules,
)
from stages.annotator import ImageAnnotator


def image_annotators(cfg: FiltersConfig) -> list[ImageAnnotator]:
    """Annotators the analysis pass runs on each small decoded image for these filters."""
    annotators: list[ImageAnnotator] = []
    if cfg.image.needs_scores:
        annotators.append(QualityAnnotator())
    nsfw = cfg.safety.nsfw
    if nsfw.enabled:
        annotators.append(OpenNsfwAnnotator(nsfw.model_path, nsfw.optional, nsfw.threads))
    return annotators


def filter_stages(cfg: FiltersConfig) -> list[Stage]:
    """The stages after the analysis pass, in order.

    Captions are rewritten (PII scrub) and scored before any filter runs, so every sample that reaches the
    filters has all its scores in the manifest for calibration. Safety filters come first, so a sample that is
    both unsafe and low quality is recorded as unsafe.
    """
    stages: list[Stage] = []
    pii = cfg.safety.pii
    if pii.enabled:
        stages.append(PiiScrubber(pii.kinds) if pii.mode == "scrub" else PiiFilter(pii.kinds))
    stages.append(CaptionScorer(detect_language=cfg.caption.language.enabled))

    image_blocklist = cfg.safety.image_blocklist
    if image_blocklist.enabled:
        stages.append(
            ImageBlocklistFilter(ImageBlocklist.from_files(image_blocklist.files), image_blocklist.max_hamming)
        )
    blocklist = cfg.safety.blocklist
    if blocklist.enabled:
        stages.append(CaptionBlocklistFilter(load_terms(blocklist.builtin_lists, blocklist.files, blocklist.terms)))
    if rules := safety_score_rules(cfg):
        stages.append(SafetyScoreFilter(rules))

    if rules := image_quality_rules(cfg):
        stages.append(ImageQualityFilter(rules))
    content = cfg.caption.content
    if content.enabled:
        stages.append(
            CaptionContentFilter(
                content.drop_empty, content.drop_filenames, content.drop_html, content.boilerplate_phrases
            )
        )
    if rules := caption_quality_rules(cfg):
        stages.append(CaptionQualityFilter(rules))
    language = cfg.caption.language
    if language.enabled and language.allowed:
        stages.append(LanguageFilter(language.allowed, language.min_confidence))
    if cfg.thresholds:
        stages.append(ThresholdFilter(custom_rules(cfg.thresholds)))
    return stages


def clip_head_filter(cfg: FiltersConfig) -> ClipHeadFilter | None:
    """The threshold stage for CLIP-head scores; it runs after the stage that computes CLIP embeddings."""
    rules = clip_head_rules(cfg)
    return ClipHeadFilter(rules) if rules else None
