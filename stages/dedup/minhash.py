"""Caption MinHash, vectorised over a batch, equal to datasketch's for the same permutation scheme.

datasketch hashes each shingle with SHA-1, pre-mixes the hash with the MurmurHash3 finaliser and applies
`num_perm` affine permutations, keeping the minimum per permutation. Doing that one caption at a time costs
a Python call per shingle per caption; here the shingles of a whole batch are made with Arrow kernels,
every distinct one is hashed once (in DuckDB), and the permutations run as numpy broadcasts with a
segmented minimum per caption.
The permutation parameters come from datasketch itself, so a test can compare the two bit for bit.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Sequence

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash
from datasketch.minhash import _fmix

from stages.dedup.arrays import single_array
from stages.dedup.config import DedupConfig
from stages.dedup.hexdigits import fixed_width_chars, hex_bytes

_NON_WORD = re.compile(r"[\W_]+")
# Shingles per numpy chunk: the (num_perm x shingles) intermediate, 4 MiB at 128 perms, stays in cache
# (8,192 measured ~1.7x faster than 32,768 on this machine).
_CHUNK_SHINGLES = 8_192
# Distinct shingles below which a hashlib call each beats DuckDB's ~1 ms per query (measured on alt-text:
# DuckDB wins from ~2,000 captions a batch; the pipeline hands this stage 64 at a time).
_DUCKDB_MIN_SHINGLES = 4_096
# Captions in a batch from which the permutation minimum runs per shingle-count group (_minimum_by_width):
# measured per caption on alt-text, reduceat 1.9 / 1.9 / 1.9 us and the groups 2.4 / 1.75 / 1.1 us at 64 /
# 128 / 4,096 captions a batch.
_WIDTH_MIN_CAPTIONS = 128
# ... and whose captions average fewer shingles than this: padding long captions costs more than reduceat's
# calls (time by width / by reduceat, 300k shingles: 0.49 / 0.88 / 1.19 / 1.48 at 8 / 16 / 24 / 40 a caption).
_WIDTH_MAX_MEAN_SHINGLES = 16
# Values per permutation block of _minimum_by_width: 1 MiB of uint32 stays in cache.
_BLOCK_VALUES = 1 << 18


def normalise_caption(caption: str) -> str:
    """NFKC, case-folded, punctuation and runs of whitespace collapsed to one space."""
    text = unicodedata.normalize("NFKC", caption).casefold()
    return _NON_WORD.sub(" ", text).strip()


def shingles(caption: str | None, kind: str, size: int) -> set[str]:
    """The shingle set of a caption; a caption shorter than one shingle is one shingle of what it has."""
    if not caption:
        return set()
    text = normalise_caption(caption)
    if not text:
        return set()
    units: Sequence[str] = text.split(" ") if kind == "word" else text
    if len(units) <= size:
        return {text}
    joiner = " " if kind == "word" else ""
    return {joiner.join(units[i : i + size]) for i in range(len(units) - size + 1)}


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's own permutation parameters (a, b) for this scheme."""
    a, b = MinHash(num_perm=num_perm, seed=seed, scheme=scheme).permutations
    return a.copy(), b.copy()


def signature_dtype(scheme: str) -> type[np.unsignedinteger]:
    return np.uint32 if scheme == "affine32" else np.uint64


def _hash_shingles(unique: pa.Array, scheme: str) -> np.ndarray:
    """datasketch.hashfunc.sha1_hash32 / sha1_hash64 (the little-endian prefix of each shingle's SHA-1).

    Many shingles are hashed in DuckDB, in one C++ loop: ~2.7x faster than a hashlib call per shingle once
    DuckDB's ~1 ms per query is paid (SHA-1 was ~40% of the MinHash pass)."""
    width = 4 if scheme == "affine32" else 8
    dtype = np.dtype(signature_dtype(scheme)).newbyteorder("<")
    if len(unique) < _DUCKDB_MIN_SHINGLES:
        digests = b"".join([hashlib.sha1(s).digest()[:width] for s in unique.cast(pa.large_binary()).to_pylist()])
        return np.frombuffer(digests, dtype=dtype).astype(signature_dtype(scheme))
    digests = _duckdb().from_arrow(pa.table({"s": unique})).project(f"substr(sha1(s), 1, {2 * width})")
    rows, chars = fixed_width_chars(digests.to_arrow_table().column(0), 2 * width)
    valid, values = hex_bytes(chars)
    if len(rows) != len(unique) or not valid.all():
        raise RuntimeError("DuckDB's sha1 returned something other than one hex digest per shingle")
    return values.view(dtype).ravel().astype(signature_dtype(scheme))


@lru_cache(maxsize=1)
def _duckdb() -> "duckdb.DuckDBPyConnection":
    # One thread: a Ray worker is one CPU's worth of work; order of the output rows is the input's.
    return duckdb.connect(config={"threads": 1, "preserve_insertion_order": True})


def _normalised_text(captions: pa.Array) -> pa.Array:
    """normalise_caption of every caption, except that runs of spaces are not collapsed yet (splitting drops
    the empty words). ASCII captions -- most alt-text -- go through a byte table; the others through Python."""
    captions = captions.cast(pa.large_string()).fill_null("")
    offsets = np.frombuffer(captions.buffers()[1], np.int64)[captions.offset : captions.offset + len(captions) + 1]
    data = captions.buffers()[2]
    # Only this array's bytes: a slice of a larger batch shares its parent's whole data buffer.
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] if data is not None else np.empty(0, np.uint8)
    mapped = np.frombuffer(_ASCII_TABLE, dtype=np.uint8)[raw]
    text = pa.LargeStringArray.from_buffers(len(captions), pa.py_buffer(offsets - offsets[0]), pa.py_buffer(mapped))
    other = pc.invert(pc.string_is_ascii(captions))
    if not pc.any(other).as_py():
        return text
    slow = [normalise_caption(c) for c in pc.filter(captions, other).to_pylist()]
    return pc.replace_with_mask(text, other, pa.array(slow, pa.large_string()))


def _ascii_table() -> bytes:
    # Lower-case letters and digits stay (upper case is folded); every other ASCII byte is a separator.
    keep = {c: c for c in range(256) if chr(c).isascii() and chr(c).isalnum()}
    keep.update({c: c + 32 for c in range(ord("A"), ord("Z") + 1)})
    return bytes(keep.get(c, ord(" ")) for c in range(256))


_ASCII_TABLE = _ascii_table()


def _word_shingles(captions: pa.Array, size: int) -> tuple[np.ndarray, pa.Array]:
    """(row of each shingle, shingle) for word shingles, vectorised; a row may repeat a shingle."""
    words = pc.split_pattern(_normalised_text(captions), " ")
    counts = np.diff(words.offsets.to_numpy())
    flat = words.flatten()
    nonempty = pc.greater(pc.binary_length(flat), 0)
    flat = flat.filter(nonempty)
    word_rows = np.repeat(np.arange(len(captions)), counts)[nonempty.to_numpy(zero_copy_only=False)]
    counts = np.bincount(word_rows, minlength=len(captions))
    firsts = np.cumsum(counts) - counts
    # A caption of at most `size` words is one shingle: its whole normalised text.
    short = np.flatnonzero((counts > 0) & (counts <= size))
    word_lists = pa.ListArray.from_arrays(pa.array(np.r_[firsts, len(flat)], pa.int32()), flat)
    short_text = pc.binary_join(word_lists.take(short), pa.scalar(" ", flat.type))
    long_rows = np.flatnonzero(counts > size)
    grams = counts[long_rows] - size + 1
    gram_rows = np.repeat(long_rows, grams)
    starts = firsts[gram_rows] + (np.arange(len(gram_rows)) - np.repeat(np.cumsum(grams) - grams, grams))
    joined = pc.binary_join_element_wise(*[flat.take(starts + k) for k in range(size)], pa.scalar(" ", flat.type))
    rows = np.concatenate([short, gram_rows])
    order = np.argsort(rows, kind="stable")
    return rows[order], pa.concat_arrays([short_text, joined.cast(short_text.type)]).take(order)


def _char_shingles(captions: pa.Array, size: int) -> tuple[np.ndarray, pa.Array]:
    per_row = [sorted(shingles(c, "char", size)) for c in captions.to_pylist()]
    rows = np.repeat(np.arange(len(per_row)), [len(s) for s in per_row])
    return rows, pa.array([s for row in per_row for s in row], pa.large_string())


def minhash_captions(captions: Sequence[str | None] | pa.Array, cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures, shape (len(captions), num_perm), dtype uint32 (affine32) or uint64 (affine64).

    A caption without shingles (or null) gets datasketch's empty signature (every value at the maximum).
    """
    captions = single_array(captions) if isinstance(captions, (pa.Array, pa.ChunkedArray)) else pa.array(captions, pa.large_string())
    dtype = signature_dtype(cfg.minhash_scheme)
    a, b = permutations(cfg.num_perm, cfg.minhash_seed, cfg.minhash_scheme)
    out = np.full((len(captions), cfg.num_perm), np.iinfo(dtype).max, dtype=dtype)
    shingle_of = _word_shingles if cfg.shingle == "word" else _char_shingles
    rows, values = shingle_of(captions, cfg.shingle_size)
    if not len(rows):
        return out
    encoded = pc.dictionary_encode(values)
    mixed = _fmix(_hash_shingles(encoded.dictionary, cfg.minhash_scheme), 32 if dtype is np.uint32 else 64)
    flat = mixed[encoded.indices.to_numpy()]
    firsts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    by_width = len(firsts) >= _WIDTH_MIN_CAPTIONS and len(flat) < _WIDTH_MAX_MEAN_SHINGLES * len(firsts)
    minimum = _minimum_by_width if by_width else _minimum_by_reduceat
    out[rows[firsts]] = minimum(flat, firsts, a, b)
    return out


def _minimum_by_reduceat(values: np.ndarray, firsts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per caption (its shingles' `values` start at `firsts`), the minimum of a * v + b over its shingles for
    every permutation (a, b): shape (captions, num_perm). Few numpy calls: the way for small batches."""
    out = np.empty((len(firsts), len(a)), dtype=values.dtype)
    ends = np.r_[firsts[1:], len(values)]
    values_buffer = np.empty((len(a), _CHUNK_SHINGLES), dtype=values.dtype)
    i = 0
    while i < len(firsts):
        # Captions [i, j) whose shingles fit one chunk (at least one caption, however long).
        j = max(i + 1, int(np.searchsorted(ends, firsts[i] + _CHUNK_SHINGLES, side="right")))
        lo, hi = int(firsts[i]), int(ends[j - 1])
        # (num_perm, shingles): wraps mod 2^w as datasketch's does; the segmented minimum then runs along
        # contiguous rows, ~3x faster than over columns.
        chunk = values_buffer[:, : hi - lo] if hi - lo <= _CHUNK_SHINGLES else np.empty((len(a), hi - lo), values.dtype)
        np.multiply(a[:, None], values[None, lo:hi], out=chunk)
        np.add(chunk, b[:, None], out=chunk)
        out[i:j] = np.minimum.reduceat(chunk, firsts[i:j] - lo, axis=1).T
        i = j
    return out


def _minimum_by_width(values: np.ndarray, firsts: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """_minimum_by_reduceat for batches of many captions. reduceat pays a call per caption and permutation
    (~80% of the permutation step); here captions are grouped by shingle count, padded up to one of a few
    widths by repeating their last shingle (a repeat leaves the minimum alone), and each group reduces a
    (captions, width, num_perm) block along its width: contiguous SIMD minima, 1.5x faster at 31k captions."""
    out = np.empty((len(firsts), len(a)), dtype=values.dtype)
    counts = np.diff(np.append(firsts, len(values)))
    widths = _pad_widths(int(counts.max()))
    group = np.searchsorted(widths, counts)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, group[order][1:] != group[order][:-1]])
    for lo, hi in zip(starts, np.append(starts[1:], len(order))):
        width = int(widths[group[order[lo]]])
        step = max(1, _BLOCK_VALUES // (width * len(a)))
        for start in range(lo, hi, step):
            captions = order[start : min(start + step, hi)]
            shingles = firsts[captions, None] + np.minimum(np.arange(width), counts[captions, None] - 1)
            block = values[shingles][:, :, None] * a  # wraps mod 2^w as datasketch's does
            block += b
            out[captions] = block.min(axis=1)
    return out


def _pad_widths(longest: int) -> np.ndarray:
    """1, 2, 3, 4, 6, 8, 12, 16, 24, ... up to `longest`: a caption is padded by at most half its count."""
    widths = [1, 2, 3]
    while widths[-1] < longest:
        widths.append(2 * widths[-2])
    return np.array(widths)


def is_empty_signature(signatures: np.ndarray) -> np.ndarray:
    """Rows that are datasketch's empty MinHash (the caption had no shingles)."""
    return np.all(signatures == np.iinfo(signatures.dtype).max, axis=1)


def signature_type(cfg: DedupConfig) -> pa.DataType:
    """fixed_size_binary of num_perm little-endian values (4 bytes each for affine32, 8 for affine64)."""
    return pa.binary(cfg.num_perm * np.dtype(signature_dtype(cfg.minhash_scheme)).itemsize)


def signatures_to_arrow(signatures: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Fixed-size binary, little-endian values; null where the caption had no shingles."""
    le = signatures.astype(signatures.dtype.newbyteorder("<"), copy=False)
    width = le.shape[1] * le.dtype.itemsize
    buffer = pa.py_buffer(np.ascontiguousarray(le))  # shares the array's memory
    empty = is_empty_signature(signatures)
    validity = pa.array(~empty).buffers()[1] if empty.any() else None
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(le), [validity, buffer])


def signatures_from_arrow(column: pa.Array | pa.ChunkedArray, cfg: DedupConfig) -> np.ndarray:
    """The stored signatures back as a (rows, num_perm) array; null rows come back empty (all maximum).

    Accepts the fixed-size column or plain binary of the same width (what survives a shuffle)."""
    signatures, valid = signature_view(column, cfg)
    if valid.all():
        return signatures
    out = signatures.copy()
    out[~valid] = np.iinfo(out.dtype).max
    return out


def signature_view(column: pa.Array | pa.ChunkedArray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """(signatures, valid): a (rows, num_perm) view of the column's values without a copy where the
    layout allows, and which rows are not null. A null row's values are unspecified."""
    dtype = np.dtype(signature_dtype(cfg.minhash_scheme)).newbyteorder("<")
    expected = signature_type(cfg)
    width = expected.byte_width
    column = single_array(column)
    if not len(column):  # an empty array may have no buffers at all
        return np.zeros((0, cfg.num_perm), dtype=dtype.newbyteorder("=")), np.zeros(0, dtype=bool)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        offset_type = np.int32 if pa.types.is_binary(column.type) else np.int64
        offsets = np.frombuffer(column.buffers()[1], offset_type)[column.offset : column.offset + len(column) + 1]
        lengths = np.diff(offsets)
        if (lengths[valid] != width).any():
            raise ValueError(f"dedup.minhash values are not {width} bytes long: {_mismatch(cfg)}")
        if lengths[~valid].any():  # null slots with bytes: the fixed-size cast sorts it out
            return signature_view(column.cast(expected), cfg)
        # Bytes first, then values: a slice's first value need not sit on a multiple of the value size.
        data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].view(dtype)
        packed = data.reshape(-1, cfg.num_perm).astype(dtype.newbyteorder("="), copy=False)
        if valid.all():
            return packed, valid
        out = np.empty((len(column), cfg.num_perm), dtype=packed.dtype)
        out[valid] = packed
        return out, valid
    if column.type != expected:
        raise ValueError(f"dedup.minhash is {column.type}, expected {expected}: {_mismatch(cfg)}")
    data = np.frombuffer(column.buffers()[1], dtype)
    start = column.offset * cfg.num_perm
    signatures = data[start : start + len(column) * cfg.num_perm].reshape(len(column), cfg.num_perm)
    return signatures.astype(dtype.newbyteorder("="), copy=False), valid


def _mismatch(cfg: DedupConfig) -> str:
    return f"the signature pass ran with another num_perm or scheme than {cfg.num_perm} / {cfg.minhash_scheme}"


def jaccard_estimate(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal MinHash values: datasketch's MinHash.jaccard."""
    return np.count_nonzero(left == right, axis=1) / left.shape[1]


# Pairs per gather in jaccard_of_rows: two 2 MiB gathers at 128 uint32 values stay in cache (4.6x faster
# than gathering 80k pairs at once, measured here).
_PAIRS_PER_GATHER = 4_096


def jaccard_of_rows(signatures: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """jaccard_estimate(signatures[a], signatures[b]), gathered a cache-sized run of pairs at a time."""
    out = np.empty(len(a), dtype=np.float64)
    for lo in range(0, len(a), _PAIRS_PER_GATHER):
        hi = lo + _PAIRS_PER_GATHER
        out[lo:hi] = jaccard_estimate(signatures[a[lo:hi]], signatures[b[lo:hi]])
    return out
