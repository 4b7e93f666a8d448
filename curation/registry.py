"""Which annotators and filters a config turns on, in the order the analysis pass runs them."""

from __future__ import annotations

from curation.config import PipelineConfig
from curation.stage import Stage
from stages.annotator import ImageAnnotator


def analysis_annotators(cfg: PipelineConfig) -> list[ImageAnnotator]:
    return []


def filter_stages(cfg: PipelineConfig) -> list[Stage]:
    return []
