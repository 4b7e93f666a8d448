"""The filter base: subclasses only decide; the base owns counting, timing and recording rejects.

A filter returns `KEEP` (None) or a `Reject(reason, value)`: a short snake_case reason code and the number
that decided it (the score, the count of matches...). The base turns a reject into the row's
drop_stage/drop_reason/drop_value through `RowStage`'s `Drop`, and keeps per-reason counters, so the
bookkeeping is written once for every filter (datatrove's BaseFilter).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from curation.stage import Drop, RowStage

REASON_CODE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


@dataclass(frozen=True)
class Reject:
    """A filter's decision to drop a sample: why (snake_case code) and the value that decided."""

    reason: str
    value: float | None = None

    def __post_init__(self) -> None:
        if not REASON_CODE.match(self.reason):
            raise ValueError(f"reason codes are short snake_case words, got {self.reason!r}")


KEEP: None = None
Verdict = Reject | None


@dataclass
class FilterStats:
    """What one filter instance saw: rows decided, kept, dropped per reason, failures, time spent deciding."""

    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    seconds: float = 0.0

    def merge(self, other: FilterStats) -> FilterStats:
        """Combine the counters of two workers running the same filter."""
        return FilterStats(
            seen=self.seen + other.seen,
            kept=self.kept + other.kept,
            dropped=self.dropped + other.dropped,
            errors=self.errors + other.errors,
            seconds=self.seconds + other.seconds,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "errors": self.errors,
            "seconds": round(self.seconds, 6),
        }


class Filter(RowStage):
    """A per-sample keep/drop decision. Subclasses implement `decide` and nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.stats = FilterStats()

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        """Return KEEP, or Reject(reason, value). Rows already dropped never reach this."""
        raise NotImplementedError

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        start = time.perf_counter()
        try:
            verdict = self.decide(row)
        except Exception:
            # RowStage records the failure as internal_error on the row; count it here too.
            self.stats.errors += 1
            raise
        finally:
            self.stats.seconds += time.perf_counter() - start
            self.stats.seen += 1
        if verdict is None:
            self.stats.kept += 1
            return None
        self.stats.dropped[verdict.reason] += 1
        raise Drop(verdict.reason, verdict.value)
