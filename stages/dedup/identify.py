"""The per-block steps of the identify job, as plain functions over Arrow tables (curation.dedup_job runs
them on Ray). Each takes one block or one exchange partition, so none needs more than that in memory."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curation import schema as rec
from stages.dedup.arrays import single_array
from stages.dedup.banding import (
    MINHASH_SPACES,
    Space,
    bucket_ids,
    lsh_params,
    minhash_bands,
    mix64,
    phash_bands,
    phash_subbands,
    signature_digest,
)
from stages.dedup.candidates import search_buckets
from stages.dedup.components import components
from stages.dedup.config import DedupConfig
from stages.dedup.hexdigits import fixed_width_chars, hex_bytes
from stages.dedup.minhash import is_empty_signature, jaccard_of_rows, signature_view, signatures_from_arrow
from stages.dedup.signatures import MINHASH, PHASH, PIXEL_HASH, hamming
from stages.dedup.survivor import MEMBER_SCHEMA

# Record columns the job reads (the signature columns only when their kind of dedup is on).
RECORD_COLUMNS = [
    "sample_id",
    "source",
    "source_priority",
    "status",
    "width",
    "height",
    "caption",
]
ATTRIBUTE_SCHEMA = MEMBER_SCHEMA.remove(MEMBER_SCHEMA.get_field_index("cluster"))
BAND_SCHEMA = pa.schema(
    [
        ("bucket", pa.uint64()),
        ("signature", pa.uint64()),  # what must be equal (exact spaces) or is verified (pHash)
        ("key", pa.int64()),
        ("space", pa.int8()),
        ("band", pa.int8()),
    ]
)
EDGE_SCHEMA = pa.schema(
    [
        ("a", pa.int64()),
        ("b", pa.int64()),
        ("space", pa.int8()),
        # Set on the one statistics row each partition adds (a and b null there).
        ("pathological_buckets", pa.int64()),
        ("largest_bucket", pa.int64()),
    ]
)


def signature_columns(cfg: DedupConfig) -> list[str]:
    """The signature columns the enabled kinds of dedup need from the records."""
    wanted = [("sha256", cfg.exact), (PIXEL_HASH, cfg.pixels), (PHASH, cfg.phash), (MINHASH, cfg.text or cfg.captions)]
    return [name for name, on in wanted if on]


def row_key(sample_id: str) -> int:
    """A compact int64 stand-in for sample_id in shuffles and on the driver; see `row_keys`."""
    return int(row_keys(pa.array([sample_id], pa.string()))[0])


def row_keys(sample_ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An int64 key per sample_id. The pipeline's sample_ids are 20-hex-digit BLAKE2b digests
    (curation.schema.make_sample_id): their first 16 digits are the key, parsed without a Python call per
    row. Any other id is hashed (64-bit BLAKE2b). Two rows share a key with probability n^2 / 2^65: 3e-8
    for a million rows, 3e-2 for a billion; such a pair would be treated as one node, so the other row
    could join that node's cluster. (That bound needs uniform digests: 20-hex-digit ids from elsewhere
    that share their first 16 digits would always share a key.)"""
    ids = single_array(sample_ids)
    keys = np.zeros(len(ids), dtype=np.uint64)
    digest, chars = fixed_width_chars(ids, _DIGEST_HEX)
    valid, values = hex_bytes(chars)
    digest = digest[valid]
    keys[digest] = np.ascontiguousarray(values[valid, :8]).view(">u8").ravel()  # the first 8 bytes, big-endian
    other = np.ones(len(ids), dtype=bool)
    other[digest] = False
    other_rows = np.flatnonzero(other)
    if len(other_rows):
        names = ids.take(pa.array(other_rows)).to_pylist()
        hashed = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in names)
        keys[other_rows] = np.frombuffer(hashed, dtype="<u8")
    return keys.view(np.int64)


_DIGEST_HEX = 20


def kept_rows(records: pa.Table) -> pa.Table:
    """The rows earlier stages kept (no copy when they all are)."""
    kept = pc.equal(records["status"], rec.KEPT)
    if kept.null_count == 0 and pc.all(kept).as_py() is not False:
        return records
    return records.filter(kept)


def _text_only(kept: pa.Table) -> pa.ChunkedArray | pa.Array:
    # A kept image sample was decoded, so it has a width; reading that, not the byte references, keeps
    # inline image bytes out of the job.
    return pc.is_null(kept["width"])


def band_inputs(records: pa.Table, cfg: DedupConfig) -> pa.Table:
    """The kept records reduced to what `band_rows` reads: the key and the enabled signatures (no copy of
    the signature columns, no survivor-rule facts)."""
    kept = kept_rows(records)
    columns: dict[str, pa.Array | pa.ChunkedArray | np.ndarray] = {"key": row_keys(kept["sample_id"])}
    for enabled, name, column in (
        (cfg.exact, "sha256", "sha256"),
        (cfg.pixels, "pixel_hash", PIXEL_HASH),
        (cfg.phash, "phash", PHASH),
        (cfg.text or cfg.captions, "minhash", MINHASH),
    ):
        if enabled:
            columns[name] = kept[column] if column in kept.column_names else pa.nulls(kept.num_rows, ATTRIBUTE_SCHEMA.field(name).type)
    if cfg.text or cfg.captions:
        columns["text_only"] = _text_only(kept)
    return pa.table(columns)


def band_block(records: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Records in, their band rows (BAND_SCHEMA) out: the map side of the band exchange."""
    return band_rows(band_inputs(records, cfg), cfg)


def attributes(records: pa.Table, cfg: DedupConfig, keys: np.ndarray | None = None) -> pa.Table:
    """Kept records reduced to what clustering and the survivor rule need (`keys`: their row keys, when
    the caller has them already)."""
    kept = kept_rows(records)
    n = kept.num_rows

    def column(name: str, type_: pa.DataType) -> pa.Array | pa.ChunkedArray:
        return kept[name].cast(type_) if name in kept.column_names else pa.nulls(n, type_)

    area = pc.multiply(column("width", pa.int64()).fill_null(0), column("height", pa.int64()).fill_null(0))
    text_only = _text_only(kept)
    return pa.table(
        {
            "key": row_keys(kept["sample_id"]) if keys is None else keys,
            "sample_id": kept["sample_id"],
            "source": kept["source"],
            "source_priority": column("source_priority", pa.int64()).fill_null(0),
            "area": area,
            "sha256": column("sha256", pa.string()),
            "pixel_hash": column(PIXEL_HASH, pa.string()),
            "phash": column(PHASH, pa.int64()),
            "caption": kept["caption"],
            "minhash": column(MINHASH, pa.binary()),
            "text_only": text_only,
        },
        schema=ATTRIBUTE_SCHEMA,
    )


def _hex_prefix(values: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(valid rows, uint64 of the first 16 hex digits) of a hex-string column."""
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    prefixes = [int(v[:16], 16) for v in values.filter(values.is_valid()).to_pylist()]
    return np.flatnonzero(valid), np.array(prefixes, dtype=np.uint64)


def band_rows(attrs: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Every signature of a block as band keys."""
    keys = attrs["key"].to_numpy()
    pieces: list[tuple[Space, int, np.ndarray, np.ndarray, np.ndarray]] = []  # space, band, rows, value, sig
    for enabled, space, name in ((cfg.exact, Space.SHA256, "sha256"), (cfg.pixels, Space.PIXELS, "pixel_hash")):
        if enabled:
            rows, prefix = _hex_prefix(attrs[name])
            pieces.append((space, 0, rows, prefix, prefix))
    if cfg.phash:
        rows = np.flatnonzero(attrs["phash"].is_valid().to_numpy(zero_copy_only=False))
        phash = attrs["phash"].filter(attrs["phash"].is_valid()).to_numpy().view(np.uint64)
        for band, values in enumerate(phash_bands(phash, cfg.phash_radius).T):
            pieces.append((Space.PHASH, band, rows, values, phash))
    if cfg.text or cfg.captions:
        signatures, valid = signature_view(attrs["minhash"], cfg)
        text_only = attrs["text_only"].to_numpy(zero_copy_only=False)
        has_text = valid & ~is_empty_signature(signatures)
        bands, rows_per_band = lsh_params(cfg.threshold, cfg.num_perm)
        for enabled, space, selected in ((cfg.text, Space.TEXT, text_only), (cfg.captions, Space.CAPTION, ~text_only)):
            rows = np.flatnonzero(has_text & selected)
            if not enabled or not len(rows):
                continue
            selected_signatures = signatures if len(rows) == len(signatures) else signatures[rows]
            keys_by_band = minhash_bands(selected_signatures, bands, rows_per_band)
            digest = signature_digest(selected_signatures, keys_by_band, rows_per_band)
            for band, values in enumerate(keys_by_band.T):
                pieces.append((space, band, rows, values, digest))
    if not pieces:
        return BAND_SCHEMA.empty_table()
    bucket = np.concatenate([bucket_ids(space, band, values) for space, band, _, values, _ in pieces])
    return pa.table(
        {
            "bucket": bucket,
            "signature": np.concatenate([sig for *_, sig in pieces]),
            "key": np.concatenate([keys[rows] for _, _, rows, _, _ in pieces]),
            "space": np.concatenate([np.full(len(rows), space, np.int8) for space, _, rows, _, _ in pieces]),
            "band": np.concatenate([np.full(len(rows), band, np.int8) for _, band, rows, _, _ in pieces]),
        },
        schema=BAND_SCHEMA,
    )


def edges_in_partition(bands: pa.Table, cfg: DedupConfig) -> pa.Table:
    """Edges of one group-by partition: identical signatures, pHash pairs verified within the radius, and
    MinHash candidate pairs (verified later, by `verify_minhash_clusters`). Plus one statistics row."""
    bucket = bands["bucket"].to_numpy()
    signature = bands["signature"].to_numpy()
    key = bands["key"].to_numpy()
    space = bands["space"].to_numpy()
    pairs: list[tuple[np.ndarray, np.ndarray]] = []

    # Exact and MinHash spaces: identical signatures, then the capped window over MinHash buckets.
    others = np.flatnonzero(space != Space.PHASH)
    search = search_buckets(bucket[others], signature[others], key[others], cfg.band_bucket_cap)
    pairs.append((others[search.identical[0]], others[search.identical[1]]))
    for i, j in search.window_pairs():
        i, j = others[i], others[j]
        keep = np.isin(space[i], MINHASH_SPACES) & (space[i] == space[j])
        pairs.append((i[keep], j[keep]))

    # pHash: identical hashes per band bucket, then distinct hashes matched on (band, sub-band) keys.
    phash = np.flatnonzero(space == Space.PHASH)
    by_band = search_buckets(bucket[phash], signature[phash], key[phash], cfg.band_bucket_cap)
    pairs.append((phash[by_band.identical[0]], phash[by_band.identical[1]]))
    heads = phash[by_band.heads]
    sub = phash_subbands(signature[heads], bands["band"].to_numpy()[heads], cfg.phash_radius)
    parent = mix64(bucket[heads])
    sub_bucket = np.concatenate([bucket_ids(Space.PHASH, 64 + j, parent ^ sub[:, j]) for j in range(sub.shape[1])])
    rows = np.tile(heads, sub.shape[1])
    by_sub_band = search_buckets(sub_bucket, signature[rows], key[rows], cfg.band_bucket_cap)
    pairs.append((rows[by_sub_band.identical[0]], rows[by_sub_band.identical[1]]))
    for i, j in by_sub_band.window_pairs():
        i, j = rows[i], rows[j]
        keep = hamming(signature[i], signature[j]) <= cfg.phash_radius
        pairs.append((i[keep], j[keep]))

    i = np.concatenate([p[0] for p in pairs])
    j = np.concatenate([p[1] for p in pairs])
    a, b = key[i], key[j]
    edges = pa.table(
        {
            "a": np.minimum(a, b),
            "b": np.maximum(a, b),
            "space": space[i],
            "pathological_buckets": np.zeros(len(i), np.int64),
            "largest_bucket": np.zeros(len(i), np.int64),
        },
        schema=EDGE_SCHEMA,
    ).filter(pa.array(a != b))  # the same row twice in one bucket (a 64-bit bucket id collision)
    stats = pa.table(
        {
            "a": pa.nulls(1, pa.int64()),
            "b": pa.nulls(1, pa.int64()),
            "space": pa.nulls(1, pa.int8()),
            "pathological_buckets": [search.pathological_buckets + by_sub_band.pathological_buckets],
            "largest_bucket": [max(search.largest_bucket, by_band.largest_bucket)],
        },
        schema=EDGE_SCHEMA,
    )
    return pa.concat_tables([edges, stats])


def verify_minhash_clusters(members: pa.Table, left: np.ndarray, right: np.ndarray, cfg: DedupConfig) -> pa.Table:
    """Members whose clusters came from MinHash candidate edges (`left`, `right`: every candidate edge, or
    more), re-clustered over the edges whose estimated Jaccard on the full signatures reaches the threshold.
    Members left without a verified edge drop out; members not on any candidate edge pass unchanged.

    Verifying here, where a cluster's members and their signatures already are, spares the job a join of
    every candidate pair with both signatures."""
    keys = members["key"].to_numpy()
    candidate = np.isin(keys, left) | np.isin(keys, right)
    if not candidate.any():
        return members
    order = np.argsort(keys)
    inside = np.isin(left, keys) & np.isin(right, keys)
    a = order[np.searchsorted(keys, left[inside], sorter=order)]
    b = order[np.searchsorted(keys, right[inside], sorter=order)]
    # Null rows read as empty signatures (a view, no copy, when there are none).
    signatures = signatures_from_arrow(members["minhash"], cfg)
    close = jaccard_of_rows(signatures, a, b) >= cfg.threshold
    nodes, labels = components(keys[a[close]], keys[b[close]])
    linked = np.zeros(len(keys), bool)
    cluster = members["cluster"].to_numpy()
    if len(nodes):
        position = np.minimum(np.searchsorted(nodes, keys), len(nodes) - 1)
        linked = candidate & (nodes[position] == keys)
        cluster = np.where(linked, labels[position], cluster)
    out = members.set_column(members.schema.get_field_index("cluster"), "cluster", pa.array(cluster, pa.int64()))
    stay = ~candidate | linked
    return out if stay.all() else out.filter(pa.array(stay))


def bucket_bounds(partitions: int) -> list[int]:
    """The [lo, hi) range of bucket ids (uint64, as Python ints) each band partition holds: partition p gets
    the buckets whose top 32 bits t satisfy (t * partitions) >> 32 == p. Bucket ids are mixed uniformly,
    so the ranges hold about equal shares; a bucket lies in exactly one range."""
    return [-(-(p << 32) // partitions) << 32 for p in range(partitions + 1)]


def sorted_by_bucket(bands: pa.Table) -> pa.Table:
    """Band rows in bucket order, so that every bucket range is one slice of them (`bucket_range`)."""
    return bands.take(pa.array(np.argsort(bands["bucket"].to_numpy())))


def bucket_range(sorted_bucket: np.ndarray, lo: int, hi: int) -> slice:
    """The rows of bucket-sorted uint64 ids in [lo, hi) (hi may be 2**64)."""
    start = int(np.searchsorted(sorted_bucket, np.uint64(lo), side="left"))
    stop = len(sorted_bucket) if hi >= 2**64 else int(np.searchsorted(sorted_bucket, np.uint64(hi), side="left"))
    return slice(start, stop)


def partition_of(values: np.ndarray, partitions: int) -> np.ndarray:
    """Spread 64-bit ids (buckets, keys, cluster labels) over group-by partitions."""
    return (mix64(values.view(np.uint64)) % np.uint64(partitions)).astype(np.int64)


def with_partition(table: pa.Table, column: str, partitions: int) -> pa.Table:
    """The table with a `part` column for a group-by: rows with equal `column` share a partition."""
    return table.append_column("part", pa.array(partition_of(table[column].to_numpy(), partitions)))


def cluster_members(
    records: pa.Table, cfg: DedupConfig, nodes: np.ndarray, labels: np.ndarray, partitions: int
) -> pa.Table:
    """The kept records that are in some cluster, as attributes with the cluster label and its partition.
    Only members are projected to attributes, so the signature columns of the other rows are never copied."""
    kept = kept_rows(records)
    keys = row_keys(kept["sample_id"])
    if not len(nodes):
        return attach_clusters(attributes(kept.slice(0, 0), cfg, keys[:0]), nodes, labels, partitions)
    position = np.minimum(np.searchsorted(nodes, keys), len(nodes) - 1)
    rows = np.flatnonzero(nodes[position] == keys)
    members = attributes(kept.take(pa.array(rows)), cfg, keys[rows])
    members = members.append_column("cluster", pa.array(labels[position[rows]], pa.int64()))
    return with_partition(members, "cluster", partitions)


def attach_clusters(attrs: pa.Table, nodes: np.ndarray, labels: np.ndarray, partitions: int) -> pa.Table:
    """The rows of a block that are in some cluster, with the cluster label and its partition.

    `nodes` (sorted) and `labels` come from the driver's connected components: they are as large as the
    edge endpoints, not the rows, so every task can hold them (a broadcast join, no shuffle of the rows)."""
    keys = attrs["key"].to_numpy()
    position = np.minimum(np.searchsorted(nodes, keys), max(len(nodes) - 1, 0))
    member = (nodes[position] == keys) if len(nodes) else np.zeros(len(keys), bool)
    members = attrs.filter(pa.array(member)).append_column("cluster", pa.array(labels[position[member]], pa.int64()))
    return with_partition(members, "cluster", partitions)
