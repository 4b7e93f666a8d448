"""Caption MinHash: bit-for-bit datasketch's, for every scheme and shingle kind, on real alt-text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import MinHash

from curation import schema as rec
from stages.dedup.caption_stage import CaptionMinHashStage
from stages.dedup import minhash
from stages.dedup.config import DedupConfig
from stages.dedup.minhash import (
    jaccard_estimate,
    minhash_captions,
    normalise_caption,
    shingles,
    signature_type,
    signatures_from_arrow,
    signatures_to_arrow,
)
from stages.dedup.signatures import MINHASH

ALTTEXT = Path(__file__).parents[1] / "data" / "captions" / "alttext_300.parquet"  # 60 of them not ASCII


@pytest.fixture(scope="module")
def alttext() -> list[str]:
    return pq.read_table(ALTTEXT, columns=["TEXT"])["TEXT"].to_pylist()


def datasketch_minhash(caption: str, cfg: DedupConfig) -> MinHash:
    m = MinHash(num_perm=cfg.num_perm, seed=cfg.minhash_seed, scheme=cfg.minhash_scheme)
    m.update_batch([s.encode("utf-8") for s in shingles(caption, cfg.shingle, cfg.shingle_size)])
    return m


@pytest.mark.parametrize(
    "cfg",
    [
        DedupConfig(),
        DedupConfig(minhash_scheme="affine64", num_perm=64, minhash_seed=7),
        DedupConfig(shingle="char", shingle_size=5),
        DedupConfig(shingle="word", shingle_size=1, num_perm=256),
    ],
    ids=["default", "affine64", "char5", "word1-256"],
)
@pytest.mark.parametrize("duckdb_from", [0, 10**9], ids=["duckdb-sha1", "hashlib-sha1"])
@pytest.mark.parametrize("width_from", [0, 10**9], ids=["min-by-width", "min-by-reduceat"])
def test_signatures_equal_datasketch(
    alttext: list[str], cfg: DedupConfig, duckdb_from: int, width_from: int, monkeypatch
) -> None:
    monkeypatch.setattr(minhash, "_DUCKDB_MIN_SHINGLES", duckdb_from)  # both ways of hashing a batch
    monkeypatch.setattr(minhash, "_WIDTH_MIN_CAPTIONS", width_from)  # both ways of taking the minimum
    monkeypatch.setattr(minhash, "_WIDTH_MAX_MEAN_SHINGLES", 10**9)
    monkeypatch.setattr(minhash, "_BLOCK_VALUES", 4096)  # several blocks per width group
    captions = alttext + ["", None, "!!!"]
    signatures = minhash_captions(captions, cfg)
    assert signatures.shape == (len(captions), cfg.num_perm)
    for caption, signature in zip(captions, signatures):
        np.testing.assert_array_equal(signature, datasketch_minhash(caption or "", cfg).hashvalues)


@pytest.mark.parametrize("width_from", [0, 10**9], ids=["min-by-width", "min-by-reduceat"])
def test_long_caption_spanning_chunks_equals_datasketch(width_from: int, monkeypatch) -> None:
    monkeypatch.setattr(minhash, "_WIDTH_MIN_CAPTIONS", width_from)
    monkeypatch.setattr(minhash, "_WIDTH_MAX_MEAN_SHINGLES", 10**9)
    cfg = DedupConfig()
    caption = " ".join(f"w{i}" for i in range(40_000))  # more shingles than one numpy chunk
    signatures = minhash_captions(["short one", caption, "another"], cfg)
    np.testing.assert_array_equal(signatures[1], datasketch_minhash(caption, cfg).hashvalues)
    np.testing.assert_array_equal(signatures[2], datasketch_minhash("another", cfg).hashvalues)


def test_arrow_input_sliced_and_chunked_gives_the_same_signatures(alttext: list[str]) -> None:
    cfg = DedupConfig()
    expected = minhash_captions(alttext, cfg)
    chunked = pa.chunked_array([pa.array(alttext[:100]), pa.array(alttext[100:])])
    np.testing.assert_array_equal(minhash_captions(chunked, cfg), expected)
    np.testing.assert_array_equal(minhash_captions(pa.array(alttext).slice(230, 40), cfg), expected[230:270])


def test_jaccard_estimate_is_datasketchs(alttext: list[str]) -> None:
    cfg = DedupConfig()
    signatures = minhash_captions(alttext[:20], cfg)
    for i in range(19):
        expected = datasketch_minhash(alttext[i], cfg).jaccard(datasketch_minhash(alttext[i + 1], cfg))
        assert jaccard_estimate(signatures[i : i + 1], signatures[i + 1 : i + 2])[0] == expected


def test_normalisation_ignores_case_punctuation_and_spacing() -> None:
    assert normalise_caption("  The CAT,  on\tthe mat!! ") == "the cat on the mat"
    assert shingles("The cat, on the mat.", "word", 2) == {"the cat", "cat on", "on the", "the mat"}
    assert shingles("Hi", "word", 3) == {"hi"}
    assert shingles("abcd", "char", 3) == {"abc", "bcd"}
    assert shingles(" ... ", "word", 2) == set()


def test_arrow_round_trip_keeps_values_and_nulls_empty_captions() -> None:
    cfg = DedupConfig(num_perm=16)
    signatures = minhash_captions(["a red car", "", "a blue car"], cfg)
    column = signatures_to_arrow(signatures)
    assert column.type == signature_type(cfg) == pa.binary(64)
    assert column.is_null().to_pylist() == [False, True, False]
    np.testing.assert_array_equal(signatures_from_arrow(column, cfg), signatures)
    # A shuffle may hand the column back as plain binary; a signature of another width is an error.
    np.testing.assert_array_equal(signatures_from_arrow(column.cast(pa.binary()), cfg), signatures)
    with pytest.raises(ValueError, match="num_perm"):
        signatures_from_arrow(column, DedupConfig(num_perm=32))


@pytest.mark.parametrize("type_", [None, pa.binary(), pa.large_binary()], ids=["fixed", "binary", "large_binary"])
def test_signatures_read_back_sliced_with_nulls_or_empty(type_: pa.DataType | None) -> None:
    cfg = DedupConfig(num_perm=16)
    signatures = minhash_captions(["a red car", "", "a blue car", None, "x y z"], cfg)
    column = signatures_to_arrow(signatures)
    column = column if type_ is None else column.cast(type_)
    np.testing.assert_array_equal(signatures_from_arrow(column.slice(1, 3), cfg), signatures[1:4])
    assert signatures_from_arrow(column.slice(0, 0), cfg).shape == (0, 16)
    nulls = signatures_from_arrow(pa.nulls(2, column.type), cfg)
    assert (nulls == np.iinfo(np.uint32).max).all() and nulls.shape == (2, 16)


def test_binary_signatures_sliced_off_a_value_boundary_or_beside_other_lengths() -> None:
    cfg = DedupConfig(num_perm=8)
    signature = np.arange(8, dtype=np.uint32)
    # A null slot outside the slice holds 2 bytes, so the slice's value starts 2 bytes into the buffer.
    data = b"xx" + signature.astype("<u4").tobytes() + b"yy"
    validity = pa.array([False, True, False]).buffers()[1]
    offsets = pa.py_buffer(np.array([0, 2, 34, 36], np.int32))
    column = pa.Array.from_buffers(pa.binary(), 3, [validity, offsets, pa.py_buffer(data)], null_count=2)
    np.testing.assert_array_equal(signatures_from_arrow(column.slice(1, 1), cfg)[0], signature)
    # A row of another length outside the slice does not matter either.
    beside = pa.array([signature.astype("<u4").tobytes(), b"abc"], pa.binary()).slice(0, 1)
    np.testing.assert_array_equal(signatures_from_arrow(beside, cfg)[0], signature)
    # An empty array may come without buffers.
    empty = pa.Array.from_buffers(pa.large_binary(), 0, [None, None, pa.py_buffer(b"")])
    assert signatures_from_arrow(empty, cfg).shape == (0, 8)


def test_caption_stage_writes_the_column_for_kept_rows_only() -> None:
    cfg = DedupConfig(num_perm=32)
    stage = CaptionMinHashStage(cfg)
    schema = rec.record_schema(stage.output_columns)
    stage.bind(schema)
    rows = [
        rec.new_record("s", "1", 1, caption="a red car on a road"),
        rec.new_record("s", "2", 1, caption="a red car on a road", status=rec.DROPPED),
        rec.new_record("s", "3", 1, caption=None),
    ]
    out = stage(rec.to_table(rows, schema))
    assert out.schema == schema
    assert out[MINHASH].is_null().to_pylist() == [False, True, True]
    np.testing.assert_array_equal(
        signatures_from_arrow(out[MINHASH], cfg)[0], datasketch_minhash("a red car on a road", cfg).hashvalues
    )


def test_jaccard_of_rows_equals_the_pairwise_estimate(monkeypatch) -> None:
    monkeypatch.setattr(minhash, "_PAIRS_PER_GATHER", 3)  # several gathers, the last one short
    rng = np.random.default_rng(0)
    signatures = rng.integers(0, 4, size=(20, 16), dtype=np.uint32)
    a, b = rng.integers(0, 20, 10), rng.integers(0, 20, 10)
    expected = jaccard_estimate(signatures[a], signatures[b])
    assert np.array_equal(minhash.jaccard_of_rows(signatures, a, b), expected)
    assert len(minhash.jaccard_of_rows(signatures, a[:0], b[:0])) == 0


def test_long_captions_keep_the_reduceat_minimum(monkeypatch) -> None:
    monkeypatch.setattr(minhash, "_WIDTH_MIN_CAPTIONS", 0)

    def refuse(*args):  # padding 40-shingle captions costs more than reduceat's calls
        raise AssertionError("width path chosen for long captions")

    monkeypatch.setattr(minhash, "_minimum_by_width", refuse)
    captions = [" ".join(f"w{i + j}" for j in range(41)) for i in range(200)]
    cfg = DedupConfig()
    np.testing.assert_array_equal(minhash_captions(captions, cfg)[0], datasketch_minhash(captions[0], cfg).hashvalues)
