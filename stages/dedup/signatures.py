"""Image signatures for dedup, computed from the one small image the analysis pass decodes.

- sha256 of the file bytes: the probe already writes the `sha256` column; dedup reuses it.
- pixel hash: BLAKE2b of the analysis image's pixels (RGB, plus alpha when the source has it) and of the
  full display size. The analysis image is a deterministic function of the decoded pixels (JPEG draft
  decoding works on the DCT coefficients, other formats decode fully, then the same resize), so files that
  decode to the same pixels hash the same without a second, full-size decode: PNG re-compressed, PNG <->
  lossless WebP/TIFF, metadata stripped or edited, JPEG rewritten losslessly (jpegtran optimise or
  progressive). A JPEG and a PNG of the same pixels take different decode paths (draft vs full), so they may
  not match here; the pHash finds them at distance ~0. The display size is part of the hash so that a
  downscaled copy is never called 'the same pixels'.
- pHash: imagehash.phash (64 bits) of the EXIF-transposed, alpha-composited-on-white RGB analysis image.
  Compositing matters: two logos drawn only in the alpha channel over black RGB are both black after a
  plain RGB conversion, but differ on white.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Mapping

import imagehash
import numpy as np
import pyarrow as pa

from stages.annotator import AnalysisImage, ImageAnnotator

PIXEL_HASH = "dedup.pixel_hash"
PHASH = "dedup.phash"
MINHASH = "dedup.minhash"


def pixel_hash(image: AnalysisImage) -> str:
    """32 hex characters identifying the decoded pixels and the display size."""
    digest = hashlib.blake2b(digest_size=16)
    header = f"{image.display_width}x{image.display_height};{image.image.mode};{image.image.size}"
    digest.update(header.encode())
    digest.update(image.image.tobytes())
    if image.alpha is not None:
        digest.update(b"alpha")
        digest.update(image.alpha.tobytes())
    return digest.hexdigest()


def phash_int64(image: AnalysisImage) -> int:
    """The 64-bit pHash as a signed int64 (two's complement of the bits); bit 63 is the hash's first bit,
    so `format(value & (2**64 - 1), '016x') == str(imagehash.phash(image.image))`."""
    bits = imagehash.phash(image.image).hash.flatten()
    unsigned = int(np.packbits(bits).view(">u8")[0])
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def hamming(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distance of 64-bit hashes (int64 or uint64 arrays)."""
    return np.bitwise_count(np.bitwise_xor(left.view(np.uint64), right.view(np.uint64))).astype(np.int64)


class SignatureAnnotator(ImageAnnotator):
    """Writes the pixel hash and the pHash of each decoded image (sha256 comes from the probe)."""

    name: ClassVar[str] = "dedup_signatures"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = {PIXEL_HASH: pa.string(), PHASH: pa.int64()}

    def annotate(self, row: Mapping[str, Any], image: AnalysisImage) -> Mapping[str, Any]:
        return {PIXEL_HASH: pixel_hash(image), PHASH: phash_int64(image)}
