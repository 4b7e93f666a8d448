"""Captions that are not descriptions: missing, a file name, HTML remnants, or page/stock-site boilerplate."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Iterable, Mapping

from filters.base import KEEP, Filter, Reject, Verdict
from filters.text import PhraseMatcher

IMAGE_EXTENSIONS = r"(?:jpe?g|jfif|png|gif|webp|bmp|tiff?|heic|heif|avif|raw|cr2|nef|arw|dng|svg)"
# "IMG_1234.JPG", "photo.png", "uploads/2019/05/header-image.webp", "Screenshot 2023-01-05 at 10.22.33.png"
FILE_NAME = re.compile(rf"^(?:[\w\-. ()~]*[/\\])*[\w\-. ()~]+\.{IMAGE_EXTENSIONS}$", re.IGNORECASE)
# Camera and phone counters without an extension: "DSC0001", "IMG_20190512_143301", "PXL_20230101_1200"
CAMERA_COUNTER = re.compile(
    r"^(?:img|dsc[nf]?|dcim|pxl|mvimg|gopr|dji|sam|wp|vid|pict?|p|photo|image|scan|screenshot)"
    r"[ _-]?\d{3,}(?:[ _-]\d+)*$",
    re.IGNORECASE,
)
# Content hashes and UUIDs used as names: "3f2a9c1e8b7d4a6f", "550e8400-e29b-41d4-a716-446655440000"
HASH_NAME = re.compile(
    r"^(?=[^a-z]*\d)[0-9a-f]{16,}$|^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?\s*>")
HTML_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#\d{1,7}|#x[0-9a-fA-F]{1,6});")


def is_file_name(caption: str) -> bool:
    text = caption.strip()
    return bool(FILE_NAME.match(text) or CAMERA_COUNTER.match(text) or HASH_NAME.match(text))


def html_remnants(caption: str) -> int:
    return len(HTML_TAG.findall(caption)) + len(HTML_ENTITY.findall(caption))


class CaptionContentFilter(Filter):
    name: ClassVar[str] = "caption_content"

    def __init__(self, drop_empty: bool, drop_filenames: bool, drop_html: bool, boilerplate_phrases: Iterable[str]):
        super().__init__()
        self.drop_empty = drop_empty
        self.drop_filenames = drop_filenames
        self.drop_html = drop_html
        self.boilerplate = PhraseMatcher.from_terms(boilerplate_phrases)

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        caption = row.get("caption") or ""
        if not caption.strip():
            return Reject("caption_empty") if self.drop_empty else KEEP
        if self.drop_filenames and is_file_name(caption):
            return Reject("caption_filename")
        if self.drop_html and (n := html_remnants(caption)):
            return Reject("caption_html", float(n))
        if len(self.boilerplate) and (n := self.boilerplate.count(caption)):
            return Reject("caption_boilerplate", float(n))
        return KEEP
