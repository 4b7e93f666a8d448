"""Caption word blocklists: shipped lists per language (filters/data/blocklist_<lang>.txt), files and inline terms.

List format: one term per line; blank lines and '#' comments are ignored; a line with several words matches
that phrase; 'prefix*' matches any word starting with prefix. Matching is whole-word on normalised text
(`filters.text`), so accents, case and full-width forms do not hide a term and "class" never matches "ass".
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from filters.base import KEEP, Filter, Reject, Verdict
from filters.text import PhraseMatcher


def parse_terms(text: str) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def builtin_terms(language: str) -> list[str]:
    return parse_terms(resources.files("filters.data").joinpath(f"blocklist_{language}.txt").read_text("utf-8"))


def load_terms(builtin_lists: Iterable[str], files: Iterable[str], inline: Iterable[str]) -> list[str]:
    terms: list[str] = []
    for language in builtin_lists:
        terms += builtin_terms(language)
    for path in files:
        terms += parse_terms(Path(path).read_text("utf-8"))
    return terms + parse_terms("\n".join(inline))


class CaptionBlocklistFilter(Filter):
    """Drops captions holding a blocklisted term (caption_blocklisted, value = number of hits)."""

    name: ClassVar[str] = "caption_blocklist"

    def __init__(self, terms: Iterable[str]):
        super().__init__()
        # Built here, not in setup, so a missing list file fails when the pipeline is assembled.
        self.matcher = PhraseMatcher.from_terms(terms)

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        caption = row.get("caption")
        if caption and (hits := self.matcher.count(caption)):
            return Reject("caption_blocklisted", float(hits))
        return KEEP
