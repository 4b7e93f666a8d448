"""Arrow column helpers shared by the dedup steps."""

from __future__ import annotations

import pyarrow as pa


def single_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The values as one Array. A column of one chunk is returned as that chunk: Arrow's combine_chunks
    copies even then, and the identify job reads every block's 512-byte signatures this way."""
    if isinstance(values, pa.Array):
        return values
    if values.num_chunks == 1:
        return values.chunk(0)
    return values.combine_chunks()
