from __future__ import annotations

import hashlib

import imagehash
import pyarrow as pa
import pytest
from PIL import Image

from filters.config import ImageBlocklistConfig
from filters.image_blocklist import PHASH_COLUMN, ImageBlocklist, ImageBlocklistFilter, phash_from_hex, phash_to_hex

PHASH_TYPE = {PHASH_COLUMN: pa.int64()}


def flip_bits(hex_hash: str, n: int) -> str:
    return f"{int(hex_hash, 16) ^ ((1 << n) - 1):016x}"


@pytest.fixture
def listed(tmp_path, sharp_photo):
    """A blocklist naming the sharp photo by sha256 and another image by pHash."""
    digest = hashlib.sha256(sharp_photo.read_bytes()).hexdigest()
    phash = "f0e1d2c3b4a59687"  # high bit set: a negative int64 in the dedup column
    path = tmp_path / "known_bad.txt"
    path.write_text(
        f"# known bad\nsha256:{digest}\n\nPHASH:{phash.upper()}  # case does not matter\n", encoding="utf-8"
    )
    return path, digest, phash


def test_hex_and_int64_round_trip():
    for text in ("0000000000000001", "8000000000000000", "ffffffffffffffff", "f0e1d2c3b4a59687"):
        value = phash_from_hex(text)
        assert -(2**63) <= value < 2**63
        assert phash_to_hex(value) == text
    assert phash_from_hex("ffffffffffffffff") == -1


def test_imagehash_text_is_the_listed_format(sharp_photo):
    text = str(imagehash.phash(Image.open(sharp_photo)))
    assert len(text) == 16 and ImageBlocklist.parse(f"phash:{text}").phashes.size == 1


def test_sha256_and_phash_within_radius_are_dropped(run, make_record, listed):
    path, digest, phash = listed
    f = ImageBlocklistFilter(ImageBlocklist.from_files([str(path)]), max_hamming=4)
    rows = [
        make_record(sha256=digest, **{PHASH_COLUMN: 0}),
        make_record(sha256="0" * 64, **{PHASH_COLUMN: phash_from_hex(flip_bits(phash, 4))}),
        make_record(sha256="0" * 64, **{PHASH_COLUMN: phash_from_hex(flip_bits(phash, 5))}),
        make_record(sha256="1" * 64, **{PHASH_COLUMN: None}),
        make_record(caption="text only"),
    ]
    out = run([f], rows, PHASH_TYPE)
    assert [(r["drop_reason"], r["drop_value"]) for r in out] == [
        ("image_blocklisted", None),
        ("image_blocklisted_phash", 4.0),
        (None, None),
        (None, None),
        (None, None),
    ]
    assert out[0]["drop_stage"] == "image_blocklist"


def test_a_phash_list_needs_the_dedup_column(run, make_record, listed):
    f = ImageBlocklistFilter(ImageBlocklist.from_files([str(listed[0])]), max_hamming=4)
    with pytest.raises(ValueError, match=PHASH_COLUMN):
        run([f], [make_record()])


def test_a_sha256_only_list_works_without_the_dedup_column(run, make_record, tmp_path):
    path = tmp_path / "sha.txt"
    path.write_text("sha256:" + "a" * 64 + "\n", encoding="utf-8")
    (row,) = run([ImageBlocklistFilter(ImageBlocklist.from_files([str(path)]), 4)], [make_record(sha256="a" * 64)])
    assert row["drop_reason"] == "image_blocklisted"


@pytest.mark.parametrize("line", ["sha256:abc", "phash:123", "md5:" + "a" * 32, "f0e1d2c3b4a59687"])
def test_malformed_lines_name_file_and_line(line):
    with pytest.raises(ValueError, match=r"list.txt:2"):
        ImageBlocklist.parse(f"# ok\n{line}\n", origin="list.txt")


def test_config_needs_files_when_enabled():
    with pytest.raises(ValueError):
        ImageBlocklistConfig(enabled=True)
