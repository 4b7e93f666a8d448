"""The embeddings sidecar: CLIP image and caption embeddings per sample, for later consumers (CLIP score,
safety and aesthetic heads, the trainer), so nobody runs the model twice.

Layout: Parquet files under OUT/embeddings/, one per batch the CLIP stage saw. Columns:
- `sample_id` (string): the manifest's key; rows are sorted by it within a file;
- `image_embedding` (fixed_size_list<float16|float32>[dim]): L2-normalised CLIP image embedding;
- `text_embedding` (same type, null without a caption): embedding of `caption`, the caption the shard got;
- `clip_model` (string): the model provenance, as in the manifest's `clip.model`.
The Parquet schema metadata repeats the provenance, the dimension and the normalisation.

A file's name is a hash of the sorted sample_ids it holds, so a rerun of the same batch rewrites the same
file; it is written under a dot-prefixed temporary name (which Parquet dataset readers skip) and renamed
when complete, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import Literal, Sequence

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

EMBEDDINGS_DIR = "embeddings"
EmbeddingDtype = Literal["float16", "float32"]


def embeddings_schema(dim: int, dtype: EmbeddingDtype, provenance: str) -> pa.Schema:
    vector = pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), dim)
    return pa.schema(
        [
            pa.field("sample_id", pa.string(), nullable=False),
            pa.field("image_embedding", vector, nullable=False),
            pa.field("text_embedding", vector),
            pa.field("clip_model", pa.string(), nullable=False),
        ],
        metadata={"clip_model": provenance, "dim": str(dim), "normalisation": "l2"},
    )


def batch_file_name(sample_ids: Sequence[str]) -> str:
    """The same ids give the same name whatever their order."""
    digest = hashlib.blake2b("\n".join(sorted(sample_ids)).encode("utf-8"), digest_size=12).hexdigest()
    return f"{digest}-{len(sample_ids)}.parquet"


def _vectors(matrix: np.ndarray, dtype: EmbeddingDtype, valid: np.ndarray | None = None) -> pa.FixedSizeListArray:
    values = pa.array(np.ascontiguousarray(matrix, dtype=dtype).reshape(-1))
    mask = None if valid is None else pa.array(~valid)
    return pa.FixedSizeListArray.from_arrays(values, matrix.shape[1], mask=mask)


class EmbeddingSidecar:
    """Writes one Parquet file per batch under `directory` (any fsspec path)."""

    def __init__(self, directory: str, dtype: EmbeddingDtype = "float16"):
        self.directory = directory
        self.dtype = dtype

    def write(
        self,
        sample_ids: Sequence[str],
        image_embeddings: np.ndarray,
        text_embeddings: Sequence[np.ndarray | None],
        provenance: str,
    ) -> str | None:
        """Write one batch; returns the file's path (None for an empty batch)."""
        if not sample_ids:
            return None
        n, dim = image_embeddings.shape
        if len(sample_ids) != n or len(text_embeddings) != n:
            raise ValueError(f"{len(sample_ids)} ids, {n} image and {len(text_embeddings)} text embeddings")
        order = np.argsort(np.asarray(sample_ids, dtype=object), kind="stable")
        has_text = np.array([text_embeddings[i] is not None for i in order], dtype=bool)
        text = np.zeros((n, dim), dtype=np.float32)
        for row, i in enumerate(order):
            if has_text[row]:
                text[row] = text_embeddings[i]
        table = pa.Table.from_arrays(
            [
                pa.array([sample_ids[i] for i in order], pa.string()),
                _vectors(image_embeddings[order], self.dtype),
                _vectors(text, self.dtype, has_text),
                pa.array([provenance] * n, pa.string()),
            ],
            schema=embeddings_schema(dim, self.dtype, provenance),
        )
        return self._commit(table, batch_file_name(sample_ids))

    def _commit(self, table: pa.Table, name: str) -> str:
        fs, _ = fsspec.core.url_to_fs(self.directory)
        fs.makedirs(self.directory, exist_ok=True)
        final = posixpath.join(self.directory, name)
        # Unique per writer, so two workers (or a retried task) never write into each other's file.
        tmp = posixpath.join(self.directory, f".{name}.{os.getpid()}.tmp")
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        fs.mv(tmp, final)
        return final


def read_embeddings(directory: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Every committed sidecar file under `directory` as one table, sorted by sample_id."""
    table = pq.read_table(directory, columns=list(columns) if columns else None)
    return table.sort_by("sample_id") if "sample_id" in table.column_names else table


def as_matrix(vectors: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed_size_list column without nulls as an (n, dim) float32 matrix."""
    array = vectors.combine_chunks() if isinstance(vectors, pa.ChunkedArray) else vectors
    if array.null_count:
        raise ValueError("the column has null embeddings; filter them out first")
    return array.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(array), array.type.list_size)
