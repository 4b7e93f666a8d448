from __future__ import annotations

from typing import Any, ClassVar, Mapping

import pytest

from curation import schema as rec
from filters.base import KEEP, Filter, FilterStats, Reject, Verdict


class EvenIdFilter(Filter):
    """Keeps rows whose `n` is even; fails on negative n."""

    name: ClassVar[str] = "even"

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        n = int(row["source_key"].split("-", 1)[1])
        if n < 0:
            raise ValueError("negative")
        return KEEP if n % 2 == 0 else Reject("odd_number", float(n))


def rows(*numbers: int) -> list[dict[str, Any]]:
    return [rec.new_record("t", f"n-{n}", 1) for n in numbers]


def test_drop_is_recorded_on_the_row_with_stage_reason_and_value(run):
    out = run([EvenIdFilter()], rows(2, 3))
    assert [r["status"] for r in out] == ["kept", "dropped"]
    assert (out[1]["drop_stage"], out[1]["drop_reason"], out[1]["drop_value"]) == ("even", "odd_number", 3.0)
    assert out[0]["drop_reason"] is None


def test_base_counts_per_reason_and_times_decisions(run):
    f = EvenIdFilter()
    run([f], rows(1, 2, 3, 4, 5))
    assert (f.stats.seen, f.stats.kept, dict(f.stats.dropped), f.stats.errors) == (5, 2, {"odd_number": 3}, 0)
    assert f.stats.seconds > 0
    assert f.stats.as_dict()["dropped"] == {"odd_number": 3}


def test_rows_already_dropped_are_not_decided_again(run):
    batch = rows(1, 3)
    rec.drop(batch[0], "decode", "truncated")
    f = EvenIdFilter()
    out = run([f], batch)
    assert out[0]["drop_stage"] == "decode" and out[0]["drop_reason"] == "truncated"
    assert out[1]["drop_reason"] == "odd_number"
    assert f.stats.seen == 1


def test_a_failing_decision_becomes_internal_error_and_is_counted(run):
    f = EvenIdFilter()
    out = run([f], rows(-1, 2))
    assert out[0]["drop_reason"] == "internal_error" and "negative" in out[0]["error"]
    assert out[1]["status"] == "kept"
    assert f.stats.errors == 1


@pytest.mark.parametrize("reason", ["Odd", "odd number", "odd-number", "_odd", ""])
def test_reason_codes_must_be_snake_case(reason):
    with pytest.raises(ValueError):
        Reject(reason)


def test_stats_of_workers_merge():
    a = FilterStats(seen=3, kept=2, errors=0, seconds=0.5)
    a.dropped["x"] = 1
    b = FilterStats(seen=2, kept=0, errors=1, seconds=0.25)
    b.dropped.update({"x": 1, "y": 0})
    merged = a.merge(b)
    assert (merged.seen, merged.kept, merged.dropped["x"], merged.errors, merged.seconds) == (5, 2, 2, 1, 0.75)
