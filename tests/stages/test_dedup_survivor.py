"""Clusters: connected components, the survivor rule, drop reasons, inherited captions, caption cap."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from stages.dedup.components import EdgeList, components
from stages.dedup.config import DedupConfig
from stages.dedup.identify import row_key
from stages.dedup.minhash import minhash_captions, signatures_to_arrow
from stages.dedup.survivor import (
    DUP_CAPTION_OVERFLOW,
    DUP_EXACT,
    DUP_PHASH,
    DUP_PIXELS,
    DUP_TEXT,
    MEMBER_SCHEMA,
    merge_decisions,
    resolve_caption_clusters,
    resolve_duplicate_clusters,
)


def test_components_label_by_smallest_node_whatever_the_edge_order() -> None:
    a = np.array([5, 9, 2, 100, 7], dtype=np.int64)
    b = np.array([9, 11, 3, 101, 11], dtype=np.int64)
    nodes, labels = components(a, b)
    assert dict(zip(nodes.tolist(), labels.tolist())) == {2: 2, 3: 2, 5: 5, 7: 5, 9: 5, 11: 5, 100: 100, 101: 100}
    shuffled = np.random.default_rng(1).permutation(len(a))
    nodes2, labels2 = components(b[shuffled], a[shuffled])
    assert nodes2.tolist() == nodes.tolist() and labels2.tolist() == labels.tolist()


def test_edge_list_is_distinct_and_filters() -> None:
    edges = EdgeList.distinct(np.array([1, 1, 2, 1]), np.array([2, 2, 3, 2]), np.array([2, 2, 0, 4], np.int8))
    assert list(zip(edges.a, edges.b, edges.space)) == [(1, 2, 2), (1, 2, 4), (2, 3, 0)]
    assert edges.within([4]).a.tolist() == [1]
    assert edges.without_nodes(np.array([3])).b.tolist() == [2, 2]


CFG = DedupConfig(num_perm=32)


def members(rows: list[dict]) -> pa.Table:
    defaults = {"source": "s", "source_priority": 1, "area": 100, "sha256": None, "pixel_hash": None, "phash": None,
                "caption": None, "text_only": False, "cluster": 1}  # fmt: skip
    full = [{**defaults, "key": row_key(row["sample_id"]), **row} for row in rows]
    captions = [r["caption"] for r in full]
    table = pa.Table.from_pylist(full, schema=MEMBER_SCHEMA.remove(9))
    minhash = signatures_to_arrow(minhash_captions(captions, CFG)).cast(pa.binary())
    return table.add_column(9, MEMBER_SCHEMA.field("minhash"), minhash)


def by_id(table: pa.Table) -> dict[str, dict]:
    return {r["sample_id"]: r for r in table.to_pylist()}


def test_survivor_is_highest_priority_then_largest_then_smallest_id() -> None:
    table = members(
        [
            {"sample_id": "big_low_priority", "source_priority": 1, "area": 10_000, "phash": 0},
            {"sample_id": "b_small_high", "source_priority": 5, "area": 100, "phash": 1},
            {"sample_id": "a_small_high", "source_priority": 5, "area": 100, "phash": 3},
            {"sample_id": "c_large_high", "source_priority": 5, "area": 400, "phash": 0},
        ]
    )
    rows = by_id(resolve_duplicate_clusters(table, CFG))
    assert rows["c_large_high"]["drop_reason"] is None
    assert {r["duplicate_of"] for k, r in rows.items() if k != "c_large_high"} == {"c_large_high"}
    assert {r["dup_cluster"] for r in rows.values()} == {"c_large_high"}
    # Ties on priority and size: the smaller sample_id wins.
    tie = by_id(resolve_duplicate_clusters(table.slice(1, 2), CFG))
    assert tie["a_small_high"]["drop_reason"] is None and tie["b_small_high"]["duplicate_of"] == "a_small_high"
    assert tie["b_small_high"]["dup_distance"] == 1.0  # Hamming(1, 3)


def test_reason_is_the_strongest_evidence_against_the_survivor() -> None:
    table = members(
        [
            {"sample_id": "survivor", "source_priority": 9, "sha256": "aa", "pixel_hash": "p1", "phash": 0},
            {"sample_id": "bytes", "sha256": "aa", "pixel_hash": "p1", "phash": 0},
            {"sample_id": "pixels", "sha256": "bb", "pixel_hash": "p1", "phash": 0},
            {"sample_id": "near", "sha256": "cc", "pixel_hash": "p2", "phash": 0b1011},
        ]
    )
    rows = by_id(resolve_duplicate_clusters(table, CFG))
    assert rows["bytes"]["drop_reason"] == DUP_EXACT and rows["bytes"]["dup_distance"] == 0.0
    assert rows["pixels"]["drop_reason"] == DUP_PIXELS
    assert rows["near"]["drop_reason"] == DUP_PHASH and rows["near"]["dup_distance"] == 3.0


def test_survivor_inherits_distinct_captions_with_provenance() -> None:
    table = members(
        [
            {"sample_id": "web", "source": "web", "caption": "IMG_0001.jpg", "phash": 0},
            {"sample_id": "curated", "source": "curated", "source_priority": 3, "caption": "a dog", "phash": 0},
            {"sample_id": "web2", "source": "web", "caption": "IMG_0001.jpg", "phash": 0},
            {"sample_id": "web3", "source": "web", "caption": "a dog", "phash": 0},
            {"sample_id": "web4", "source": "web", "caption": None, "phash": 0},
        ]
    )
    rows = by_id(resolve_duplicate_clusters(table, CFG))
    inherited = json.loads(rows["curated"]["captions_inherited"])
    assert inherited == [{"sample_id": "web", "source": "web", "caption": "IMG_0001.jpg"}]
    assert all(rows[k]["captions_inherited"] is None for k in ("web", "web2", "web3", "web4"))
    capped = by_id(resolve_duplicate_clusters(table, DedupConfig(num_perm=32, max_inherited_captions=0)))
    assert capped["curated"]["captions_inherited"] is None


def test_text_only_copies_are_dup_text_with_their_similarity() -> None:
    text = "the quick brown fox jumps over the lazy dog near the river bank"
    table = members(
        [
            {"sample_id": "t1", "caption": text, "text_only": True},
            {"sample_id": "t2", "caption": text.upper() + "!", "text_only": True},
            {"sample_id": "other", "caption": "unrelated", "text_only": True, "cluster": 2},
        ]
    )
    rows = by_id(resolve_duplicate_clusters(table, CFG))
    assert set(rows) == {"t1", "t2"}  # a cluster of one gets no row
    assert rows["t2"]["drop_reason"] == DUP_TEXT and rows["t2"]["dup_distance"] == 1.0


@pytest.mark.parametrize("cap", [None, 1, 3])
def test_caption_clusters_record_the_size_and_keep_the_first_k(cap: int | None) -> None:
    boilerplate = "click here to enlarge the image"
    table = members(
        [{"sample_id": f"img{i}", "caption": boilerplate, "area": 100 * i} for i in range(5)]
        + [{"sample_id": "alone", "caption": "a dog", "cluster": 9}]
    )
    cfg = DedupConfig(num_perm=32, caption_cap=cap)
    rows = by_id(resolve_caption_clusters(table, cfg))
    assert set(rows) == {f"img{i}" for i in range(5)}
    assert {r["caption_cluster_size"] for r in rows.values()} == {5}
    kept = sorted(k for k, r in rows.items() if r["drop_reason"] is None)
    expected = ["img4", "img3", "img2", "img1", "img0"][: cap or 5]  # largest images first
    assert kept == sorted(expected)
    for r in rows.values():
        assert r["dup_cluster"] == "img4"
        if r["drop_reason"]:
            assert r["drop_reason"] == DUP_CAPTION_OVERFLOW and r["duplicate_of"] == "img4"
            assert r["dup_distance"] == 1.0


def test_merge_gives_one_row_per_key() -> None:
    image = members([{"sample_id": "s", "phash": 0, "caption": "x"}, {"sample_id": "t", "phash": 0, "caption": "y"}])
    duplicate_rows = resolve_duplicate_clusters(image, CFG)
    caption_table = members(
        [{"sample_id": "s", "caption": "x"}, {"sample_id": "u", "caption": "x", "area": 500}, {"sample_id": "v", "caption": "x"}]
    )
    caption_rows = resolve_caption_clusters(caption_table, DedupConfig(num_perm=32, caption_cap=1))
    merged = by_id(merge_decisions(duplicate_rows, caption_rows))
    assert sorted(merged) == ["s", "t", "u", "v"]
    assert merged["s"]["caption_cluster_size"] == 3
    assert merged["s"]["drop_reason"] == DUP_CAPTION_OVERFLOW and merged["s"]["duplicate_of"] == "u"
    assert json.loads(merged["s"]["captions_inherited"])[0]["sample_id"] == "t"
    assert merged["t"]["drop_reason"] == DUP_PHASH and merged["t"]["caption_cluster_size"] is None


def test_inherited_captions_keep_the_first_distinct_ones_in_survivor_order() -> None:
    table = members(
        [
            {"sample_id": "best", "source": "curated", "source_priority": 9, "caption": "own", "phash": 0},
            {"sample_id": "b", "area": 300, "caption": "second", "phash": 0},
            {"sample_id": "a", "area": 300, "caption": "own", "phash": 0},
            {"sample_id": "c", "area": 200, "caption": "third", "phash": 0},
            {"sample_id": "d", "area": 100, "caption": "second", "phash": 0},
            {"sample_id": "x", "caption": "other cluster", "phash": 0, "cluster": 7},
            {"sample_id": "y", "caption": "other cluster", "phash": 0, "cluster": 7},
        ]
    )
    rows = by_id(resolve_duplicate_clusters(table, DedupConfig(num_perm=32, max_inherited_captions=1)))
    assert json.loads(rows["best"]["captions_inherited"]) == [{"sample_id": "b", "source": "s", "caption": "second"}]
    rows = by_id(resolve_duplicate_clusters(table, CFG))
    assert [c["caption"] for c in json.loads(rows["best"]["captions_inherited"])] == ["second", "third"]
    assert rows["x"]["captions_inherited"] is None  # the same caption as its survivor's
