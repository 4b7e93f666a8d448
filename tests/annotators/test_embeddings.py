"""The embeddings sidecar: one Parquet file per batch, keyed by sample_id, named by content, committed by rename."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotators.embeddings import EmbeddingSidecar, as_matrix, batch_file_name, read_embeddings

DIM = 4


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_sorted_by_sample_id_with_null_text(tmp_path, dtype):
    ids = ["c", "a", "b"]
    image, text = unit_rows(3, 0), unit_rows(3, 1)
    path = EmbeddingSidecar(str(tmp_path), dtype).write(ids, image, [text[0], None, text[2]], "tiny model")
    table = read_embeddings(str(tmp_path))
    assert table["sample_id"].to_pylist() == ["a", "b", "c"]
    assert table.schema.field("image_embedding").type == pa.list_(pa.from_numpy_dtype(np.dtype(dtype)), DIM)
    atol = 1e-3 if dtype == "float16" else 0
    np.testing.assert_allclose(as_matrix(table["image_embedding"]), image[[1, 2, 0]], atol=atol)
    assert table["text_embedding"].to_pylist()[0] is None  # "a" had no caption
    np.testing.assert_allclose(np.asarray(table["text_embedding"].to_pylist()[1:], np.float32), text[[2, 0]], atol=atol)
    assert table["clip_model"].to_pylist() == ["tiny model"] * 3
    meta = pq.read_schema(path).metadata
    assert (meta[b"clip_model"], meta[b"dim"], meta[b"normalisation"]) == (b"tiny model", b"4", b"l2")


def test_file_name_depends_on_the_ids_not_their_order():
    assert batch_file_name(["b", "a"]) == batch_file_name(["a", "b"])
    assert batch_file_name(["a", "b"]) != batch_file_name(["a", "c"])
    assert batch_file_name(["a", "b"]).endswith("-2.parquet")


def test_rewriting_a_batch_replaces_its_file_and_leaves_no_temporary(tmp_path):
    sidecar = EmbeddingSidecar(str(tmp_path / "emb"))
    first = sidecar.write(["a", "b"], unit_rows(2, 0), [None, None], "m")
    second = sidecar.write(["b", "a"], unit_rows(2, 1), [None, None], "m")
    assert first == second
    assert [p.name for p in (tmp_path / "emb").iterdir()] == [first.rsplit("/", 1)[1]]
    np.testing.assert_allclose(as_matrix(read_embeddings(str(tmp_path / "emb"))["image_embedding"]), unit_rows(2, 1)[[1, 0]], atol=1e-3)


def test_readers_skip_an_unfinished_temporary_file(tmp_path):
    sidecar = EmbeddingSidecar(str(tmp_path))
    sidecar.write(["a"], unit_rows(1), [None], "m")
    (tmp_path / ".half-written.parquet.123.tmp").write_bytes(b"PAR1 truncated")
    assert read_embeddings(str(tmp_path))["sample_id"].to_pylist() == ["a"]


def test_mismatched_lengths_and_null_matrices_are_errors(tmp_path):
    sidecar = EmbeddingSidecar(str(tmp_path))
    with pytest.raises(ValueError, match="2 ids, 1 image and 2 text"):
        sidecar.write(["a", "b"], unit_rows(1), [None, None], "m")
    assert sidecar.write([], np.zeros((0, DIM), np.float32), [], "m") is None
    sidecar.write(["a"], unit_rows(1), [None], "m")
    with pytest.raises(ValueError, match="null embeddings"):
        as_matrix(read_embeddings(str(tmp_path))["text_embedding"])
