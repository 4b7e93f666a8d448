"""sample_id ranges: every id in exactly one range, ranges in sort order, bounds and overlaps that agree."""

from __future__ import annotations

import random

import pytest

from curation.schema import id_range, id_range_bounds, make_sample_id, overlapping_ranges

IDS = sorted(make_sample_id("src", str(i)) for i in range(5000))


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 1000])
def test_ranges_cut_the_sorted_ids_into_contiguous_balanced_runs(n: int):
    ranges = [id_range(s, n) for s in IDS]
    assert ranges == sorted(ranges)  # sorted ids -> non-decreasing ranges: concatenated ranges are sorted
    assert set(ranges) <= set(range(n))
    if n <= 7:  # uniform digests: every range gets close to its share
        counts = [ranges.count(r) for r in range(n)]
        assert min(counts) > 0.8 * len(IDS) / n


@pytest.mark.parametrize("n", [1, 2, 3, 7, 1000])
def test_bounds_hold_exactly_the_ids_of_their_range(n: int):
    for s in IDS[::7] + ["00000000000000000000", "ffffffffffffffffffff"]:
        r = id_range(s, n)
        lo, hi = id_range_bounds(r, n)
        assert (lo is None or s >= lo) and (hi is None or s < hi)
        if r + 1 < n:
            assert s < id_range_bounds(r + 1, n)[0]


def test_overlapping_ranges_are_the_ranges_that_share_an_id():
    rng = random.Random(0)
    for _ in range(300):
        n, m = rng.randint(1, 40), rng.randint(1, 40)
        r = rng.randrange(n)
        expected = {id_range(s, m) for s in IDS if id_range(s, n) == r}
        assert expected <= set(overlapping_ranges(r, n, m))
        assert len(overlapping_ranges(r, n, m)) <= m // n + 2
