"""Settings of cross-source deduplication: which signatures link copies, and how hard the search may work.

The defaults were chosen on the 47 real photos in /work/shared/data/photos (COCO + scikit-image), analysed
the way the analysis pass sees them (short side 256). pHash Hamming distance to the original:

| copy                                   | distances seen (max)        |
|----------------------------------------|-----------------------------|
| resized to 1/2 or 1/4, JPEG q40..q60   | 0-2 (one photo 8 at 1/4+q60)|
| grayscale                              | 0-2                         |
| brightness x1.1 / contrast x1.2        | 0-4                         |
| brightness x1.2                        | 0-6 (37 of 47 within 4)     |
| crop 1 % per side                      | 0-10 (43 of 47 within 4)    |
| crop 2.5 % per side                    | 2-22                        |
| horizontal flip                        | 28-34 (never a duplicate)   |
| two different photos (1081 pairs)      | 20 at the closest           |

So radius 4 catches resizes, re-encodes, grayscale and mild colour edits, most 1 % crops, and leaves a wide
margin (>= 16) to distinct photos. Radius 6 would add most x1.2 brightenings and 1 % crops at the cost of
more keys per hash ((radius+1)^2 sub-band keys inside the band buckets) and more chance merges of
unrelated images at scale (random 64-bit hashes fall within 6 of each other ~100x more often than within
4). Crops beyond a few percent need an embedding, not a pHash.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DedupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    exact: bool = Field(True, description="Link copies with the same sha256 of the file bytes (dup_exact).")
    pixels: bool = Field(
        True,
        description="Link copies whose decoded analysis pixels hash the same: lossless re-encodes, metadata "
        "edits, lossless JPEG rewrites (dup_pixels).",
    )
    phash: bool = Field(True, description="Link copies whose 64-bit pHashes are within phash_radius (dup_phash).")
    phash_radius: int = Field(
        4,
        ge=0,
        le=15,
        description="Largest pHash Hamming distance that still means 'the same picture'. The search splits "
        "the hash into radius+1 bands, so a larger radius means shorter bands and bigger buckets.",
    )
    text: bool = Field(True, description="Drop MinHash near-duplicates among text-only samples (dup_text).")
    captions: bool = Field(
        True,
        description="Cluster image-text samples whose captions are MinHash near-duplicates: record the cluster "
        "size (caption_cluster_size) and apply caption_cap.",
    )
    caption_cap: int | None = Field(
        3,
        ge=1,
        description="Keep at most this many samples per caption cluster; the others are dropped "
        "(dup_caption_overflow). A caption shared by many different images is boilerplate alt-text ('image', "
        "'click to enlarge') that describes none of them; a few copies are harmless, thousands teach the model "
        "the string. Which ones stay follows the survivor rule. None keeps all (sizes are still recorded).",
    )
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations per caption.")
    minhash_seed: int = Field(1, description="Seed of the permutations (datasketch's `seed`).")
    minhash_scheme: Literal["affine32", "affine64"] = Field(
        "affine32",
        description="datasketch 2.0 permutation scheme; values are stored as uint32 (affine32) or uint64 "
        "little-endian in the fixed-size binary column dedup.minhash.",
    )
    threshold: float = Field(
        0.8, gt=0.0, lt=1.0, description="Jaccard similarity of shingle sets above which captions are near-duplicates."
    )
    shingle: Literal["word", "char"] = Field(
        "word",
        description="Shingle kind over the normalised caption (NFKC, case-folded, punctuation removed). Use "
        "'char' for scripts written without spaces.",
    )
    shingle_size: int = Field(
        2,
        ge=1,
        le=16,
        description="Words (or characters) per shingle. Alt-text is short (median ~8 words): word bigrams "
        "keep word order without making a one-word edit drop the similarity below the threshold.",
    )
    band_bucket_cap: int = Field(
        512,
        ge=1,
        description="Most comparisons one signature makes inside one bucket (a MinHash band bucket, or a "
        "pHash (band, sub-band) bucket). Identical signatures never count: they are linked as a star. A "
        "bucket of more than cap+1 distinct signatures is 'pathological' (counted in the stats) and is "
        "searched by a sorted window of this width instead of all pairs, so no bucket costs more than cap "
        "comparisons per row (pairs beyond the window can be missed there).",
    )
    max_inherited_captions: int = Field(
        16,
        ge=0,
        description="Most distinct captions a survivor inherits from the copies it replaced.",
    )
    rows_per_partition: int = Field(
        250_000,
        ge=1,
        description="Target rows (band keys, cluster members, or decisions) per partition of the identify "
        "job's exchanges (one Ray task each); bounds one task's memory.",
    )
