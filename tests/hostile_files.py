"""Builders of hostile inputs: images with oversized or broken metadata, bombs, odd sizes, hostile captions.

Shared by the unit tests (tests/stages/test_hostile_inputs.py) and the end-to-end run
(tests/curation/test_hostile_run.py).
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib

from PIL import Image

MB = 2**20
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """A busy image, so quality filters (blur, entropy, exposure) have no reason to drop it."""
    return Image.effect_noise(size, 60 + seed).convert("RGB")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunks(chunks: list[bytes]) -> bytes:
    """A small valid PNG with extra chunks between IHDR and the image data."""
    base = encode(Image.new("RGB", (8, 8), (10, 200, 30)), "PNG")
    header_end = 8 + 25  # the signature, then IHDR: length, type, 13 bytes, CRC
    return base[:header_end] + b"".join(chunks) + base[header_end:]


def png_huge_text(size: int = 50 * MB) -> bytes:
    return png_with_chunks([png_chunk(b"tEXt", b"Comment\x00" + b"a" * size)])


def png_ztxt_bomb(size: int = 50 * MB) -> bytes:
    """A 50 KB zTXt chunk that inflates to `size` bytes."""
    return png_with_chunks([png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"a" * size, 9))])


def png_itxt_bomb(size: int = 50 * MB) -> bytes:
    return png_with_chunks([png_chunk(b"iTXt", b"XML\x00\x01\x00\x00\x00" + zlib.compress(b"a" * size, 9))])


def png_many_text_chunks(chunks: int = 100) -> bytes:
    """Each zTXt chunk just under Pillow's per-chunk limit, together far past any metadata budget."""
    return png_with_chunks(
        [png_chunk(b"zTXt", b"k%d\x00\x00" % i + zlib.compress(b"a" * (MB - 100), 9)) for i in range(chunks)]
    )


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares a size its (tiny) data does not hold: a decompression bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_zlib_bomb(side: int = 12_000) -> bytes:
    """A real bomb: a black 1-bit square of side x side pixels that compresses to a few kilobytes."""
    return encode(Image.new("1", (side, side), 0), "PNG", optimize=True)


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_segments(segments: list[bytes], size: tuple[int, int] = (64, 48)) -> bytes:
    base = encode(noise(size), "JPEG", quality=90)
    return base[:2] + b"".join(segments) + base[2:]


def jpeg_many_exif_segments(count: int = 1000) -> bytes:
    """`count` APP1 EXIF segments of 64 KB each: Pillow joins them one by one (quadratic), 48 s for 1000."""
    return jpeg_with_segments([jpeg_segment(0xE1, b"Exif\x00\x00" + b"\x00" * 65000)] * count)


def jpeg_many_empty_segments(count: int = 100_000) -> bytes:
    """A header of empty comment segments, each one a turn of Pillow's Python parsing loop."""
    return jpeg_with_segments([b"\xff\xfe\x00\x02"] * count)


def exif_block(entries: list[tuple[int, int, int, int]]) -> bytes:
    """An APP1 EXIF payload: big-endian TIFF header and one IFD of (tag, type, count, value) entries."""
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHII", *e) for e in entries)
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", 0)


def jpeg_giant_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    """One full 64 KB EXIF segment: 5400 entries (orientation 1 first), the most one segment holds."""
    entries = [(0x0112, 3, 1, 1 << 16)] + [(0x9000 + i % 1000, 3, 1, 0) for i in range(5399)]
    return jpeg_with_segments([jpeg_segment(0xE1, exif_block(entries))], size)


def jpeg_broken_exif(size: tuple[int, int] = (64, 48)) -> bytes:
    """An EXIF segment whose IFD offset points far past its end, and one cut short after its header."""
    broken = b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + b"\x01" * 100
    return jpeg_with_segments([jpeg_segment(0xE1, broken), jpeg_segment(0xE1, b"Exif\x00\x00MM")], size)


def gif_many_frames(frames: int) -> bytes:
    """An animation of `frames` tiny frames: counting them means parsing the whole file."""
    three = [Image.new("P", (2, 2), i % 2) for i in range(3)]
    data = encode(three[0], "GIF", save_all=True, append_images=three[1:], duration=10, optimize=False)
    starts = [i for i in range(len(data)) if data.startswith(b"!\xf9", i)]  # each frame's control block
    second = data[starts[1] : starts[2]]
    return data[: starts[1]] + second * (frames - 2) + data[starts[2] :]


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
