"""Caption MinHash, vectorised over a batch, equal to datasketch's for the same permutation scheme.

datasketch hashes each shingle with SHA-1, pre-mixes the hash with the MurmurHash3 finaliser and applies
`num_perm` affine permutations, keeping the minimum per permutation. Doing that one caption at a time costs
a Python call per shingle per caption; here every shingle of a batch is hashed once (shingles repeat a lot
across alt-text), and the permutations run as one numpy broadcast with a segmented minimum per caption.
The permutation parameters come from datasketch itself, so a test can compare the two bit for bit.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasketch import MinHash
from datasketch.minhash import _fmix

from stages.dedup.config import DedupConfig

_NON_WORD = re.compile(r"[\W_]+")
# Shingle hashes per numpy chunk: bounds the (shingles x num_perm) intermediate to ~16 MiB at 128 perms.
_CHUNK_SHINGLES = 32_768


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


def _hash_shingles(unique: list[str], scheme: str) -> np.ndarray:
    """datasketch.hashfunc.sha1_hash32 / sha1_hash64 (little-endian prefix of SHA-1), one join for the batch."""
    width = 4 if scheme == "affine32" else 8
    digest = b"".join(hashlib.sha1(s.encode("utf-8")).digest()[:width] for s in unique)
    return np.frombuffer(digest, dtype=np.dtype(signature_dtype(scheme)).newbyteorder("<")).astype(
        signature_dtype(scheme)
    )


def minhash_captions(captions: Sequence[str | None], cfg: DedupConfig) -> np.ndarray:
    """MinHash signatures, shape (len(captions), num_perm), dtype uint32 (affine32) or uint64 (affine64).

    A caption without shingles gets datasketch's empty signature (every value at the maximum).
    """
    dtype = signature_dtype(cfg.minhash_scheme)
    width_bits = 32 if dtype is np.uint32 else 64
    a, b = permutations(cfg.num_perm, cfg.minhash_seed, cfg.minhash_scheme)
    out = np.full((len(captions), cfg.num_perm), np.iinfo(dtype).max, dtype=dtype)

    index: dict[str, int] = {}
    per_caption: list[list[int]] = []
    for caption in captions:
        ids = [index.setdefault(s, len(index)) for s in shingles(caption, cfg.shingle, cfg.shingle_size)]
        per_caption.append(ids)
    if not index:
        return out
    mixed = _fmix(_hash_shingles(list(index), cfg.minhash_scheme), width_bits)

    counts = np.fromiter((len(ids) for ids in per_caption), dtype=np.int64, count=len(per_caption))
    flat = np.fromiter((i for ids in per_caption for i in ids), dtype=np.int64, count=int(counts.sum()))
    ends = np.cumsum(counts)
    row = 0
    while row < len(captions):
        # Rows [row, stop) whose shingles fit one chunk (at least one row, however long).
        stop = max(row + 1, int(np.searchsorted(ends, ends[row] - counts[row] + _CHUNK_SHINGLES, side="right")))
        lo, hi = int(ends[row] - counts[row]), int(ends[stop - 1])
        rows = np.arange(row, stop)[counts[row:stop] > 0]
        if len(rows):
            # (num_perm, shingles): wraps mod 2^w as datasketch's does; the segmented minimum then runs
            # along contiguous rows, ~3x faster than over columns.
            values = a[:, None] * mixed[None, flat[lo:hi]] + b[:, None]
            starts = (ends[rows] - counts[rows]) - lo
            out[rows] = np.minimum.reduceat(values, starts, axis=1).T
        row = stop
    return out


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
    dtype = signature_dtype(cfg.minhash_scheme)
    expected = signature_type(cfg)
    width = expected.byte_width
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
        lengths = pc.binary_length(column)
        if len(column) and pc.any(pc.not_equal(lengths, width)).as_py():
            raise ValueError(f"dedup.minhash values are not {width} bytes long: {_mismatch(cfg)}")
        column = column.cast(expected)
    if column.type != expected:
        raise ValueError(f"dedup.minhash is {column.type}, expected {expected}: {_mismatch(cfg)}")
    filled = column.fill_null(b"\xff" * width) if column.null_count else column
    data = np.frombuffer(filled.buffers()[1], dtype=np.dtype(dtype).newbyteorder("<"))
    start = filled.offset * cfg.num_perm
    return data[start : start + len(filled) * cfg.num_perm].reshape(len(filled), cfg.num_perm).astype(dtype, copy=False)


def _mismatch(cfg: DedupConfig) -> str:
    return f"the signature pass ran with another num_perm or scheme than {cfg.num_perm} / {cfg.minhash_scheme}"


def jaccard_estimate(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal MinHash values: datasketch's MinHash.jaccard."""
    return np.count_nonzero(left == right, axis=1) / left.shape[1]
