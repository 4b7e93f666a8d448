"""Strings of lower-case hex digits read as bytes, for a whole Arrow array at once (no Python call per
string): the pipeline's sample_ids (curation.schema.make_sample_id) and DuckDB's SHA-1 digests are such
strings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stages.dedup.arrays import single_array

_VALUE = np.full(256, 255, dtype=np.uint8)  # an ASCII byte -> its hex digit value; 255: not a digit
_VALUE[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def fixed_width_chars(strings: pa.Array | pa.ChunkedArray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, chars): the rows whose string is `width` bytes long, and their bytes, shape (rows, width)."""
    strings = single_array(strings)
    if not len(strings):  # an empty array may have no buffers at all
        return np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.uint8)
    strings = strings.cast(pa.large_string())
    offsets = np.frombuffer(strings.buffers()[1], dtype=np.int64)[strings.offset : strings.offset + len(strings) + 1]
    data = strings.buffers()[2]
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if (lengths == width).all():  # the usual case: one reshape, no gather
        return np.arange(len(strings)), data[offsets[0] : offsets[-1]].reshape(-1, width)
    rows = np.flatnonzero(lengths == width)
    return rows, data[offsets[rows, None] + np.arange(width)]


def hex_bytes(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, values): which rows of `chars` (an even number of ASCII bytes each) are all lower-case hex
    digits, and the bytes they spell, two digits per byte, shape (rows, width / 2)."""
    digits = _VALUE[chars]
    valid = (digits < 16).all(axis=1)
    return valid, np.ascontiguousarray((digits[:, 0::2] << 4) | digits[:, 1::2])
