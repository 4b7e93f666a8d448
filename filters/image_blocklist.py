"""Known-bad images: exact bytes (sha256) and near copies (64-bit pHash within a Hamming radius).

File format, one entry a line, blank lines and '#' comments ignored:

    sha256:<64 hex digits>      the sha256 of the encoded file (the record's `sha256` column)
    phash:<16 hex digits>       a 64-bit pHash as imagehash prints it (str(imagehash.phash(im)))

The filter reads the record's `sha256` and the dedup signature `dedup.phash`, which holds the same 64 bits
reinterpreted as a signed int64 (`phash_from_hex` / `phash_to_hex` convert).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np
import pyarrow as pa

from filters.base import KEEP, Filter, Reject, Verdict

PHASH_COLUMN = "dedup.phash"
ENTRY = re.compile(r"^(sha256):([0-9a-f]{64})$|^(phash):([0-9a-f]{16})$")


def phash_from_hex(text: str) -> int:
    """16 hex digits -> the signed int64 the dedup column stores."""
    return int(np.array([int(text, 16)], dtype=np.uint64).view(np.int64)[0])


def phash_to_hex(value: int) -> str:
    return f"{int(np.array([value], dtype=np.int64).view(np.uint64)[0]):016x}"


@dataclass(frozen=True)
class ImageBlocklist:
    sha256: frozenset[str]
    phashes: np.ndarray  # uint64

    @classmethod
    def parse(cls, text: str, origin: str = "blocklist") -> ImageBlocklist:
        digests: set[str] = set()
        hashes: list[int] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip().lower()
            if not line:
                continue
            m = ENTRY.match(line)
            if m is None:
                raise ValueError(
                    f"{origin}:{number}: expected 'sha256:<64 hex>' or 'phash:<16 hex>', got {raw.strip()!r}"
                )
            if m.group(1):
                digests.add(m.group(2))
            else:
                hashes.append(int(m.group(4), 16))
        return cls(frozenset(digests), np.array(sorted(set(hashes)), dtype=np.uint64))

    @classmethod
    def from_files(cls, paths: Iterable[str]) -> ImageBlocklist:
        lists = [cls.parse(Path(p).read_text("utf-8"), origin=str(p)) for p in paths]
        return cls(
            frozenset().union(*(b.sha256 for b in lists)),
            np.unique(np.concatenate([b.phashes for b in lists] or [np.empty(0, np.uint64)])),
        )

    def nearest_phash_distance(self, phash: int) -> int | None:
        """Hamming distance from a signed-int64 pHash to the closest listed one (None when none are listed)."""
        if not len(self.phashes):
            return None
        value = np.array([phash], dtype=np.int64).view(np.uint64)
        return int(np.bitwise_count(self.phashes ^ value).min())


class ImageBlocklistFilter(Filter):
    """Drops listed images: image_blocklisted (sha256), image_blocklisted_phash (value = Hamming distance)."""

    name: ClassVar[str] = "image_blocklist"

    def __init__(self, blocklist: ImageBlocklist, max_hamming: int):
        super().__init__()
        self.blocklist = blocklist
        self.max_hamming = max_hamming

    def bind(self, schema: pa.Schema) -> ImageBlocklistFilter:
        if len(self.blocklist.phashes) and PHASH_COLUMN not in schema.names:
            raise ValueError(f"stage {self.name}: the blocklist has pHashes but no stage writes {PHASH_COLUMN}")
        super().bind(schema)
        return self

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        digest = row.get("sha256")
        if digest is not None and digest in self.blocklist.sha256:
            return Reject("image_blocklisted")
        phash = row.get(PHASH_COLUMN)
        if phash is not None:
            distance = self.blocklist.nearest_phash_distance(phash)
            if distance is not None and distance <= self.max_hamming:
                return Reject("image_blocklisted_phash", float(distance))
        return KEEP
