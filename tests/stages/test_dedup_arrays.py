"""Arrow column helpers of the dedup steps."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stages.dedup.arrays import single_array


def test_one_chunk_comes_back_without_a_copy() -> None:
    chunk = pa.array(np.arange(1000))
    out = single_array(pa.chunked_array([chunk]))
    assert out.buffers()[1].address == chunk.buffers()[1].address
    assert single_array(chunk) is chunk


def test_several_chunks_are_joined_in_order() -> None:
    column = pa.chunked_array([pa.array([1, 2]), pa.array([], pa.int64()), pa.array([3])])
    out = single_array(column)
    assert isinstance(out, pa.Array) and out.to_pylist() == [1, 2, 3]
    assert single_array(pa.chunked_array([], pa.int64())).to_pylist() == []
