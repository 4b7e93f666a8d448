"""Safety and quality filters: score columns, threshold rules over them, and the filters that decide.

Public API:
- `FiltersConfig` (the `filters:` config section) and `image_annotators` / `filter_stages` /
  `clip_head_filter`, which turn it into pipeline stages;
- `Filter`, `Reject`, `KEEP`: the base every filter derives from;
- `ThresholdRule`, `ThresholdFilter`, `all_rules`, `apply_thresholds`, `would_drop_counts`: thresholds on
  score columns, per row and over a whole manifest;
- `calibrate`: histograms and keep-counts per score column before a full run.
"""

from filters.assemble import clip_head_filter, filter_stages, image_annotators
from filters.base import KEEP, Filter, FilterStats, Reject
from filters.calibrate import calibrate
from filters.config import FiltersConfig
from filters.thresholds import ThresholdFilter, ThresholdRule, all_rules, apply_thresholds, would_drop_counts

__all__ = [
    "KEEP",
    "Filter",
    "FilterStats",
    "FiltersConfig",
    "Reject",
    "ThresholdFilter",
    "ThresholdRule",
    "all_rules",
    "apply_thresholds",
    "calibrate",
    "clip_head_filter",
    "filter_stages",
    "image_annotators",
    "would_drop_counts",
]
