"""Min/max rules on score columns: the one place a numeric threshold becomes a drop.

The same rules run per row in the pipeline (`ThresholdFilter`) and vectorised over a whole manifest
(`apply_thresholds`), so a threshold can be re-tuned from the manifest and "what would this drop" answered
without recomputing any score. A missing score (null or NaN: a text-only sample has no image scores) keeps
the sample: a rule only drops on a value it can see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from filters.base import KEEP, Filter, Reject, Verdict
from filters.config import FiltersConfig, ThresholdRuleConfig

WOULD_DROP_REASON = "would_drop_reason"
WOULD_DROP_VALUE = "would_drop_value"


@dataclass(frozen=True)
class ThresholdRule:
    """Keep when min <= value <= max (bounds inclusive; None means unbounded)."""

    column: str
    min: float | None = None
    max: float | None = None
    below_reason: str = ""
    above_reason: str = ""

    def __post_init__(self) -> None:
        stem = self.column.replace(".", "_")
        if not self.below_reason:
            object.__setattr__(self, "below_reason", f"{stem}_too_low")
        if not self.above_reason:
            object.__setattr__(self, "above_reason", f"{stem}_too_high")

    def check(self, value: Any) -> Verdict:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return KEEP
        if self.min is not None and value < self.min:
            return Reject(self.below_reason, float(value))
        if self.max is not None and value > self.max:
            return Reject(self.above_reason, float(value))
        return KEEP


# ---- rules from the config, one group per pipeline stage ------------------------------------------------


def image_quality_rules(cfg: FiltersConfig) -> list[ThresholdRule]:
    img = cfg.image
    rules: list[ThresholdRule] = []
    if img.size.enabled:
        rules += [
            ThresholdRule("quality.short_side", min=img.size.min_short_side, below_reason="image_too_small"),
            ThresholdRule(
                "quality.aspect_ratio", max=img.size.max_aspect_ratio, above_reason="aspect_ratio_too_extreme"
            ),
            ThresholdRule("quality.megapixels", max=img.size.max_megapixels, above_reason="image_too_large"),
        ]
    # Most specific first: a black image is also flat (low entropy) and a flat image has no edges (blurry).
    if img.exposure.enabled:
        rules += [
            ThresholdRule("quality.dark_fraction", max=img.exposure.max_dark_fraction, above_reason="image_too_dark"),
            ThresholdRule(
                "quality.bright_fraction", max=img.exposure.max_bright_fraction, above_reason="image_too_bright"
            ),
        ]
    if img.information.enabled:
        rules.append(
            ThresholdRule("quality.entropy", min=img.information.min_entropy, below_reason="image_low_information")
        )
    if img.sharpness.enabled:
        rules.append(ThresholdRule("quality.sharpness", min=img.sharpness.min_sharpness, below_reason="image_blurry"))
    if img.compression.enabled:
        rules.append(
            ThresholdRule(
                "quality.bytes_per_pixel", min=img.compression.min_bytes_per_pixel, below_reason="image_over_compressed"
            )
        )
    if img.frames.enabled and img.frames.policy == "drop":
        rules.append(ThresholdRule("frames", max=1, above_reason="image_multi_frame"))
    return rules


def caption_quality_rules(cfg: FiltersConfig) -> list[ThresholdRule]:
    cap = cfg.caption
    rules: list[ThresholdRule] = []
    if cap.length.enabled:
        rules += [
            ThresholdRule("caption.length", min=cap.length.min_chars, below_reason="caption_too_short"),
            ThresholdRule("caption.words", min=cap.length.min_words, below_reason="caption_too_few_words"),
            ThresholdRule("caption.length", max=cap.length.max_chars, above_reason="caption_too_long"),
        ]
    if cap.text.enabled:
        rules += [
            ThresholdRule(
                "caption.letter_fraction", min=cap.text.min_letter_fraction, below_reason="caption_few_letters"
            ),
            ThresholdRule(
                "caption.repeat_fraction", max=cap.text.max_repeat_fraction, above_reason="caption_repetitive"
            ),
        ]
    return rules


def safety_score_rules(cfg: FiltersConfig) -> list[ThresholdRule]:
    nsfw = cfg.safety.nsfw
    return [ThresholdRule("safety.nsfw", max=nsfw.max_score, above_reason="image_nsfw")] if nsfw.enabled else []


def clip_head_rules(cfg: FiltersConfig) -> list[ThresholdRule]:
    heads = cfg.safety.clip_heads
    rules = []
    if heads.nsfw.enabled:
        rules.append(ThresholdRule("safety.nsfw_clip", max=heads.nsfw.max_score, above_reason="image_nsfw_clip"))
    if heads.watermark.enabled:
        rules.append(ThresholdRule("quality.watermark", max=heads.watermark.max_score, above_reason="image_watermark"))
    return rules


def custom_rules(rules: Iterable[ThresholdRuleConfig]) -> list[ThresholdRule]:
    return [ThresholdRule(r.column, r.min, r.max, r.below_reason or "", r.above_reason or "") for r in rules]


def all_rules(cfg: FiltersConfig) -> list[ThresholdRule]:
    """Every enabled rule, in the order the pipeline applies them."""
    return [
        *safety_score_rules(cfg),
        *image_quality_rules(cfg),
        *caption_quality_rules(cfg),
        *clip_head_rules(cfg),
        *custom_rules(cfg.thresholds),
    ]


# ---- the per-row filter --------------------------------------------------------------------------------


class ThresholdFilter(Filter):
    """Drops a row on the first rule its scores break, in rule order."""

    name: ClassVar[str] = "score_thresholds"

    def __init__(self, rules: Iterable[ThresholdRule]):
        super().__init__()
        self.rules = list(rules)

    def bind(self, schema: pa.Schema) -> ThresholdFilter:
        # A rule on a column no stage writes would silently keep everything: refuse it up front.
        missing = sorted({r.column for r in self.rules} - set(schema.names))
        if missing:
            raise ValueError(f"stage {self.name}: no stage writes the column(s) {missing} that its rules read")
        super().bind(schema)
        return self

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        for rule in self.rules:
            verdict = rule.check(row.get(rule.column))
            if verdict is not None:
                return verdict
        return KEEP


class ImageQualityFilter(ThresholdFilter):
    name: ClassVar[str] = "image_quality"


class CaptionQualityFilter(ThresholdFilter):
    name: ClassVar[str] = "caption_quality"


class SafetyScoreFilter(ThresholdFilter):
    name: ClassVar[str] = "safety_scores"


class ClipHeadFilter(ThresholdFilter):
    name: ClassVar[str] = "clip_heads"


# ---- the same rules over a whole manifest ---------------------------------------------------------------


def apply_thresholds(table: Any, rules: Iterable[ThresholdRule]) -> pa.Table:
    """The table (Arrow, or pandas) with `would_drop_reason` / `would_drop_value`: the first rule each row breaks.

    Rows are judged on their scores alone, whatever their current status, so the result answers "what would
    these thresholds drop" for calibration. Rules on columns the table lacks are an error.
    """
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    n = table.num_rows
    reason = pa.nulls(n, pa.string())
    value = pa.nulls(n, pa.float64())
    for rule in rules:
        if rule.column not in table.column_names:
            raise KeyError(f"the table has no column {rule.column!r}")
        col = pc.cast(table[rule.column], pa.float64())
        undecided = pc.is_null(reason)
        for bound, op, code in ((rule.min, pc.less, rule.below_reason), (rule.max, pc.greater, rule.above_reason)):
            if bound is None:
                continue
            # Null and NaN compare as null/false, so a missing score never drops.
            hit = pc.and_kleene(undecided, pc.fill_null(op(col, bound), False))
            reason = pc.if_else(hit, pa.scalar(code), reason)
            value = pc.if_else(hit, col, value)
            undecided = pc.is_null(reason)
    return table.append_column(WOULD_DROP_REASON, reason).append_column(WOULD_DROP_VALUE, value)


def would_drop_counts(table: Any, rules: Iterable[ThresholdRule]) -> dict[str, int]:
    """How many rows each reason would drop (first rule wins), e.g. {"image_blurry": 12}."""
    judged = apply_thresholds(table, rules)
    counts = pc.value_counts(judged[WOULD_DROP_REASON].drop_null()).to_pylist()
    return {c["values"]: c["counts"] for c in sorted(counts, key=lambda c: c["values"])}
