"""Which annotators and stages a config turns on, in the order the analysis phase runs them."""

from __future__ import annotations

from curation.config import PipelineConfig
from curation.stage import Stage
from filters.assemble import filter_stages as configured_filters
from filters.assemble import image_annotators
from stages.annotator import ImageAnnotator
from stages.dedup.caption_stage import CaptionMinHashStage
from stages.dedup.signatures import SignatureAnnotator


def analysis_annotators(cfg: PipelineConfig) -> list[ImageAnnotator]:
    """Everything computed from the one small decode of each image: dedup signatures, quality, safety."""
    annotators: list[ImageAnnotator] = []
    if cfg.dedup.pixels or cfg.dedup.phash:
        annotators.append(SignatureAnnotator())
    return annotators + image_annotators(cfg.filters)


def filter_stages(cfg: PipelineConfig) -> list[Stage]:
    """Caption scrubbing, scoring and every keep/drop decision of the analysis phase."""
    return configured_filters(cfg.filters)


def signature_stages(cfg: PipelineConfig) -> list[Stage]:
    """Signatures computed after the filters, on the captions that survived (and were scrubbed)."""
    return [CaptionMinHashStage(cfg.dedup)] if (cfg.dedup.text or cfg.dedup.captions) else []
