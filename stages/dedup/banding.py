"""Band keys: every signature becomes a few (space, band, value) keys, and candidates are exact key matches.

- Exact spaces (sha256, pixel hash): one key, the 64-bit prefix of the hash.
- pHash: the 64 bits split into radius+1 bands. Two hashes within Hamming distance `radius` differ in at
  most `radius` bits, so at least one of the radius+1 bands is identical (pigeonhole): searching exact band
  matches and verifying the full distance loses no pair.
- MinHash: LSH bands of r values each, b bands, with (b, r) from datasketch's `_optimal_param` for the
  Jaccard threshold; pairs are verified on the full signature afterwards.
"""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache

import numpy as np
from datasketch.lsh import _optimal_param


class Space(IntEnum):
    """What a band key (and the edge found through it) is made of."""

    SHA256 = 0
    PIXELS = 1
    PHASH = 2
    TEXT = 3  # captions of text-only samples
    CAPTION = 4  # captions of image-text samples


EXACT_SPACES = (Space.SHA256, Space.PIXELS)
IMAGE_SPACES = (Space.SHA256, Space.PIXELS, Space.PHASH)
MINHASH_SPACES = (Space.TEXT, Space.CAPTION)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FOLD_ROWS = 4096  # signatures per slice in minhash_bands: 4096 x 128 x 4 bytes fit a core's L2 cache


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on uint64 that spreads every input bit over the output."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def bucket_ids(space: Space, band: int, values: np.ndarray) -> np.ndarray:
    """One uint64 per (space, band, value): the group-by key. Distinct keys may collide (2^-64 per pair);
    a collision only adds a candidate that verification rejects, or for exact spaces is ruled out by
    comparing the stored value itself."""
    salt = mix64(np.array([(int(space) << 16) | band], dtype=np.uint64))[0]
    return mix64(values.astype(np.uint64, copy=False) ^ salt)


def phash_band_layout(radius: int) -> list[tuple[int, int]]:
    """(shift, width) of each of the radius+1 bands, widest first, covering all 64 bits."""
    layout, shift = [], 64
    for width in _split(64, radius + 1):
        shift -= width
        layout.append((shift, width))
    return layout


def phash_bands(phashes: np.ndarray, radius: int) -> np.ndarray:
    """Band values, shape (n, radius+1), uint64."""
    bits = phashes.view(np.uint64)
    return np.stack(
        [(bits >> np.uint64(shift)) & np.uint64((1 << width) - 1) for shift, width in phash_band_layout(radius)],
        axis=1,
    )


def _split(bits: int, pieces: int) -> list[int]:
    return [bits // pieces + (1 if i < bits % pieces else 0) for i in range(pieces)]


def phash_subbands(phashes: np.ndarray, bands: np.ndarray, radius: int) -> np.ndarray:
    """For hashes sitting in band `bands[i]`, radius+1 sub-band values over the bits outside that band.

    Two hashes that share band b exactly and are within `radius` differ only outside b, in at most radius
    bits, so they share one of these sub-bands too (pigeonhole again). Matching (band, sub-band) keys turns
    a band bucket's all-pairs comparison into exact matches on ~2x longer keys, without losing a pair.
    Shape (n, radius+1), uint64."""
    bits = phashes.view(np.uint64)
    out = np.zeros((len(bits), radius + 1), dtype=np.uint64)
    for band, (shift, width) in enumerate(phash_band_layout(radius)):
        rows = np.flatnonzero(bands == band)
        # Rotate right so the band lands on the top bits; the other 64 - width bits are then contiguous below.
        turn = np.uint64((shift + width) % 64)
        rotated = (bits[rows] >> turn) | (bits[rows] << np.uint64((64 - int(turn)) % 64)) if turn else bits[rows]
        low = 64 - width
        for piece, piece_width in enumerate(_split(low, radius + 1)):
            low -= piece_width
            out[rows, piece] = (rotated >> np.uint64(low)) & np.uint64((1 << piece_width) - 1)
    return out


@lru_cache(maxsize=16)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimising equal-weighted false positive and negative probability, as
    datasketch's MinHashLSH chooses them."""
    return _optimal_param(threshold, num_perm, 0.5, 0.5)


def _fold(columns: list[np.ndarray], seed: int) -> np.ndarray:
    """One uint64 per row from several unsigned columns: a polynomial over the values (h = h * K + v,
    wrapping mod 2^64, K odd), finished by mix64. Equal inputs give equal outputs; distinct ones collide
    with probability ~2^-64 for values like MinHashes (a collision only adds a candidate pair that
    verification rejects). Two operations per value instead of a full mix64 round: the band keys of a
    128-permutation signature cost ~4x less."""
    h = np.full(len(columns[0]), seed & (2**64 - 1), dtype=np.uint64)
    for column in columns:
        h *= _GOLDEN
        h += column
    return mix64(h)


def minhash_bands(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One uint64 per LSH band, shape (n, bands): a hash of the band's `rows` values, in order."""
    out = np.empty((len(signatures), bands), dtype=np.uint64)
    for lo in range(0, len(signatures), _FOLD_ROWS):
        # Value-major copy of a cache-sized slice, so every fold step reads contiguous memory.
        by_value = np.ascontiguousarray(signatures[lo : lo + _FOLD_ROWS, : bands * rows].T)
        for band in range(bands):
            out[lo : lo + _FOLD_ROWS, band] = _fold(list(by_value[band * rows : (band + 1) * rows]), band + 1)
    return out


def signature_digest(signatures: np.ndarray, band_keys: np.ndarray | None = None, rows: int = 0) -> np.ndarray:
    """One uint64 per full signature: identical signatures collapse to one bucket member. Given the
    signatures' `band_keys` (minhash_bands with `rows` values per band), the band keys stand for the values
    they cover, so only they and the values after the last band are folded."""
    covered = 0 if band_keys is None else band_keys.shape[1] * rows
    parts = [] if band_keys is None else [band_keys[:, j] for j in range(band_keys.shape[1])]
    parts += [signatures[:, c] for c in range(covered, signatures.shape[1])]
    return _fold(parts, 0)
