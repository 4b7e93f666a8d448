"""Band keys and the capped bucket search: no pair within the radius is lost, no bucket is searched
quadratically beyond the cap."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
from datasketch import MinHashLSH

from stages.dedup.banding import Space, lsh_params, phash_band_layout, phash_bands, phash_subbands
from stages.dedup.candidates import search_buckets
from stages.dedup.config import DedupConfig
from stages.dedup.identify import ATTRIBUTE_SCHEMA, band_rows, edges_in_partition, row_key
from stages.dedup.minhash import minhash_captions, signatures_to_arrow
from stages.dedup.signatures import hamming


def flip_bits(values: np.ndarray, counts: int | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of each hash with `counts` (per row, or for all) random bits flipped."""
    out = values.view(np.uint64).copy()
    for i, count in enumerate(np.broadcast_to(counts, out.shape)):
        for bit in rng.choice(64, size=int(count), replace=False):
            out[i] ^= np.uint64(1) << np.uint64(bit)
    return out.view(np.int64)


@pytest.mark.parametrize("radius", [0, 2, 4, 7])
def test_layout_covers_64_bits_in_radius_plus_one_bands(radius: int) -> None:
    layout = phash_band_layout(radius)
    assert len(layout) == radius + 1
    assert sum(width for _, width in layout) == 64
    assert sorted(shift for shift, _ in layout)[0] == 0


@pytest.mark.parametrize("radius", [2, 4, 6])
def test_every_pair_within_the_radius_shares_a_band(radius: int) -> None:
    rng = np.random.default_rng(radius)
    base = rng.integers(-(2**63), 2**63 - 1, size=2000, dtype=np.int64)
    for flips in range(radius + 1):
        near = flip_bits(base, flips, rng)
        shared = (phash_bands(base, radius) == phash_bands(near, radius)).any(axis=1)
        assert shared.all(), flips


@pytest.mark.parametrize("radius", [1, 4, 6])
def test_pairs_sharing_a_band_also_share_a_sub_band(radius: int) -> None:
    rng = np.random.default_rng(10 + radius)
    base = rng.integers(-(2**63), 2**63 - 1, size=3000, dtype=np.int64)
    near = flip_bits(base, rng.integers(0, radius + 1, size=len(base)), rng)
    shared_band = np.argmax(phash_bands(base, radius) == phash_bands(near, radius), axis=1).astype(np.int8)
    sub_base = phash_subbands(base, shared_band, radius)
    sub_near = phash_subbands(near, shared_band, radius)
    assert (sub_base == sub_near).any(axis=1).all()
    # Each sub-band is one of radius+1 pieces of the bits outside the band.
    widest = -(-(64 - min(w for _, w in phash_band_layout(radius))) // (radius + 1))
    assert max(int(v).bit_length() for v in sub_base.max(axis=0)) == widest


def test_lsh_bands_are_datasketchs_choice() -> None:
    for threshold, num_perm in [(0.8, 128), (0.5, 64), (0.9, 256)]:
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        assert lsh_params(threshold, num_perm) == (lsh.b, lsh.r)


def test_identical_signatures_form_a_star_and_small_buckets_compare_all_pairs() -> None:
    bucket = np.array([7, 7, 7, 7, 9, 9, 3], dtype=np.uint64)
    signature = np.array([1, 1, 1, 2, 5, 6, 0], dtype=np.uint64)
    key = np.array([40, 30, 20, 10, 1, 2, 3], dtype=np.int64)
    search = search_buckets(bucket, signature, key, cap=8)
    star = sorted(zip(key[search.identical[0]].tolist(), key[search.identical[1]].tolist()))
    assert star == [(20, 30), (20, 40)]  # linked to the smallest key of the run, not to each other
    window = {tuple(sorted(key[[i, j]].tolist())) for a, b in search.window_pairs() for i, j in zip(a, b)}
    assert window == {(10, 20), (1, 2)}
    assert search.pathological_buckets == 0 and search.largest_bucket == 4


def test_a_bucket_over_the_cap_is_windowed_and_counted() -> None:
    n, cap = 300, 10
    search = search_buckets(np.zeros(n, np.uint64), np.arange(n, dtype=np.uint64), np.arange(n), cap=cap)
    pairs = sum(len(a) for a, _ in search.window_pairs())
    assert pairs == sum(min(cap, n - 1 - i) for i in range(n))  # linear in n, not n^2 / 2
    assert search.pathological_buckets == 1


def attribute_table(phashes: np.ndarray, captions: list[str | None], cfg: DedupConfig) -> pa.Table:
    n = len(phashes)
    ids = [f"s{i}" for i in range(n)]
    return pa.table(
        {
            "key": [row_key(s) for s in ids],
            "sample_id": ids,
            "source": ["s"] * n,
            "source_priority": [1] * n,
            "area": [100] * n,
            "sha256": [None] * n,
            "pixel_hash": [None] * n,
            "phash": phashes,
            "caption": captions,
            "minhash": signatures_to_arrow(minhash_captions(captions, cfg)).cast(pa.binary()),
            "text_only": [False] * n,
        },
        schema=ATTRIBUTE_SCHEMA,
    )


def found_pairs(attrs: pa.Table, cfg: DedupConfig, space: Space) -> set[tuple[int, int]]:
    edges = edges_in_partition(band_rows(attrs, cfg), cfg)
    edges = edges.filter(pa.compute.equal(edges["space"], int(space)))
    index = {k: i for i, k in enumerate(attrs["key"].to_pylist())}
    return {tuple(sorted((index[a], index[b]))) for a, b in zip(edges["a"].to_pylist(), edges["b"].to_pylist())}


def test_phash_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    cfg = DedupConfig(exact=False, pixels=False, text=False, captions=False, phash_radius=4)
    base = rng.integers(-(2**63), 2**63 - 1, size=400, dtype=np.int64)
    near = flip_bits(base[:150], rng.integers(0, 8, size=150), rng)  # half within the radius, half beyond
    phashes = np.concatenate([base, near, flip_bits(base[:100], 3, rng), base[:20]])
    attrs = attribute_table(phashes, [None] * len(phashes), cfg)
    truth = {
        (i, j)
        for i, j in itertools.combinations(range(len(phashes)), 2)
        if hamming(phashes[i : i + 1], phashes[j : j + 1])[0] <= cfg.phash_radius
    }
    assert len(truth) > 100
    found = found_pairs(attrs, cfg, Space.PHASH)
    # Identical hashes are linked as a star, so 'found' spans the same components with fewer edges.
    assert found <= truth
    assert components_of(found, len(phashes)) == components_of(truth, len(phashes))


def components_of(pairs: set[tuple[int, int]], n: int) -> list[int]:
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in sorted(pairs):
        parent[max(root(a), root(b))] = min(root(a), root(b))
    return [root(i) for i in range(n)]


def test_minhash_bands_find_near_duplicate_captions_only() -> None:
    cfg = DedupConfig(exact=False, pixels=False, phash=False)
    captions = [
        "a red vintage car parked on a quiet cobbled street near the old harbour at sunset in late summer",
        "A red vintage car, parked on a quiet cobbled street near the old harbour at sunset in late summer!",
        "a red vintage car parked on a quiet cobbled street near the old harbour at sunset in late summer 2019",
        "a blue bicycle leaning against a brick wall",
        None,
        "",
    ]
    attrs = attribute_table(np.zeros(len(captions), np.int64), captions, cfg)
    assert found_pairs(attrs, cfg, Space.CAPTION) == {(0, 1), (0, 2)}  # (1, 2) collapses into the 0-1 star


def test_sort_order_is_lexsort_by_bucket_signature_key() -> None:
    from stages.dedup.candidates import sort_order

    rng = np.random.default_rng(3)
    bucket = rng.integers(0, 2**63, size=5000, dtype=np.int64).view(np.uint64)
    bucket[:2000] = bucket[rng.integers(0, 50, size=2000)]  # many repeated buckets
    signature = rng.integers(0, 4, size=5000).astype(np.uint64)  # ties on the signature too
    key = rng.permutation(5000).astype(np.int64)
    assert (sort_order(bucket, signature, key) == np.lexsort((key, signature, bucket))).all()


@pytest.mark.parametrize("partitions", [1, 2, 3, 36, 1000])
def test_bucket_ranges_put_every_bucket_in_exactly_one_partition(partitions: int) -> None:
    from stages.dedup.identify import bucket_bounds, bucket_range

    rng = np.random.default_rng(partitions)
    bounds = bucket_bounds(partitions)
    edges = [b for b in bounds if b < 2**64] + [b - 1 for b in bounds if 0 < b <= 2**64]
    bucket = np.concatenate([rng.integers(0, 2**63, size=20_000, dtype=np.int64).view(np.uint64) * np.uint64(2),
                             np.array(edges + [0, 2**64 - 1], dtype=np.uint64)])  # fmt: skip
    order = np.argsort(bucket)
    ranges = [bucket_range(bucket[order], bounds[p], bounds[p + 1]) for p in range(partitions)]
    assert ranges[0].start == 0 and ranges[-1].stop == len(bucket)
    assert all(r.stop == s.start for r, s in zip(ranges, ranges[1:]))  # each row in exactly one range
    partition = np.repeat(np.arange(partitions), [r.stop - r.start for r in ranges])
    expected = ((bucket[order] >> np.uint64(32)) * np.uint64(partitions)) >> np.uint64(32)
    assert (partition == expected).all()
    sizes = np.bincount(partition[order.argsort()][:20_000], minlength=partitions)
    assert sizes.min() > 0.8 * 20_000 / partitions or partitions > 100  # ranges hold about equal shares


def test_row_keys_parse_pipeline_ids_and_hash_others_the_same_in_any_batch() -> None:
    from curation.schema import make_sample_id
    from stages.dedup.identify import row_keys

    digests = [make_sample_id("web", str(i)) for i in range(50)]
    others = ["c1", "ABCDEF0123456789abcd", "0123456789abcdef012z", "", "é" * 10]  # not 20 lower-case hex digits
    ids = pa.array(others + digests)
    keys = row_keys(ids)
    np.testing.assert_array_equal(keys[len(others):].view(np.uint64), [int(d[:16], 16) for d in digests])
    assert len(set(keys.tolist())) == len(ids)
    # A key depends on its id alone: sliced, chunked or alone, every batch gives the same one.
    np.testing.assert_array_equal(row_keys(pa.array(digests)), keys[len(others):])
    np.testing.assert_array_equal(row_keys(pa.chunked_array([ids.slice(0, 3), ids.slice(3, 9)])), keys[:12])
    assert [row_key(s) for s in others] == keys[: len(others)].tolist()
    assert len(row_keys(pa.Array.from_buffers(pa.large_string(), 0, [None, None, pa.py_buffer(b"")]))) == 0
