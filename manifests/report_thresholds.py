"""The thresholds the report marks on each score's histogram, per score column.

Derived from the run's own config (OUT/config.yaml, section `filters:`) through the filters package's
`all_rules`, the same rules the pipeline applied: `filters.image.sharpness.min_sharpness: 30` becomes
`quality.sharpness >= 30`, dropping as `image_blurry`. Several rules on one column merge into the tightest
bounds. Bounds given by hand (`--threshold quality.sharpness=40:`, or a mapping column -> (min, max)) replace
the derived ones of their column: that is how to preview a new threshold on an old run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

from pydantic import ValidationError

from filters.config import FiltersConfig
from filters.thresholds import all_rules

Bounds = tuple[float | None, float | None]


@dataclass(frozen=True)
class Threshold:
    """Keep min <= value <= max; `reasons` are the drop reasons these bounds give in the pipeline."""

    min: float | None = None
    max: float | None = None
    reasons: tuple[str, ...] = ()

    def outside(self, value: float) -> bool:
        return (self.min is not None and value < self.min) or (self.max is not None and value > self.max)

    def distance(self, value: float) -> float:
        """How far `value` is from the nearest bound (0 on it)."""
        return min((abs(value - b) for b in (self.min, self.max) if b is not None), default=float("inf"))


def _tighter(a: float | None, b: float | None, pick: Any) -> float | None:
    return b if a is None else a if b is None else pick(a, b)


def thresholds_from_filters(section: Mapping[str, Any]) -> dict[str, Threshold]:
    """Per column, the tightest bounds of every enabled rule of a `filters:` config section."""
    out: dict[str, Threshold] = {}
    for rule in all_rules(FiltersConfig.model_validate(section)):
        t = out.get(rule.column, Threshold())
        reasons = t.reasons + tuple(
            r for b, r in ((rule.min, rule.below_reason), (rule.max, rule.above_reason)) if b is not None
        )
        out[rule.column] = Threshold(_tighter(t.min, rule.min, max), _tighter(t.max, rule.max, min), reasons)
    return out


def run_thresholds(
    config: Mapping[str, Any] | None, given: Mapping[str, Bounds] | None = None
) -> tuple[dict[str, Threshold], list[str]]:
    """Thresholds from the run's config, overridden per column by `given`; and notes on what went wrong."""
    notes: list[str] = []
    derived: dict[str, Threshold] = {}
    section = (config or {}).get("filters")
    if section is not None:
        try:
            derived = thresholds_from_filters(section)
        except ValidationError as e:
            notes.append(
                f"config.yaml's filters: section does not validate ({e.error_count()} errors): no thresholds from it"
            )
    for column, (lo, hi) in (given or {}).items():
        derived[column] = replace(derived.get(column, Threshold()), min=lo, max=hi)
    return derived, notes


def parse_threshold(text: str) -> tuple[str, Bounds]:
    """`COLUMN=MIN:MAX` with either side empty: `quality.sharpness=40:`, `safety.nsfw=:0.3`, `clip.sim=0.2:0.9`."""
    column, eq, bounds = text.partition("=")
    lo, colon, hi = bounds.partition(":")
    if not (column and eq and colon) or not (lo or hi):
        raise ValueError(f"threshold {text!r}: write COLUMN=MIN:MAX, leaving one side empty for no bound")
    try:
        return column.strip(), (float(lo) if lo.strip() else None, float(hi) if hi.strip() else None)
    except ValueError:
        raise ValueError(f"threshold {text!r}: MIN and MAX must be numbers") from None
