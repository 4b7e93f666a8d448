"""Text normalisation and whole-word phrase matching, shared by the blocklist and the boilerplate check.

Normalisation: NFKC (full-width and ligature forms become plain letters), casefold, and accents stripped
from Latin and Greek letters only: in other scripts the combining marks are part of the letter (Cyrillic
й is not и, Devanagari vowel signs, Japanese dakuten), and dropping them would change the word.

Matching is on whole words, so "class" never matches "ass" (the Scunthorpe problem). A term is one or more
words; a term ending in `*` matches any word that starts with it ("masturbat*").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

# Runs of letters and digits; "_" separates words ("Man_with_Horse_Head", "sex_tape").
WORD = re.compile(r"[^\W_]+")
# Base letters whose combining accents are decoration, not spelling: the Latin and Greek blocks.
_ACCENT_STRIPPABLE = ((0x0000, 0x03FF), (0x1E00, 0x1FFF))


def _accents_are_decoration(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _ACCENT_STRIPPABLE)


def normalize(text: str) -> str:
    """NFKC + casefold, then accents removed where the base letter is Latin or Greek."""
    if text.isascii():  # most captions: NFKC is the identity and casefold is lower
        return text.lower()
    decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    out: list[str] = []
    base = ""
    for ch in decomposed:
        if unicodedata.combining(ch):
            if _accents_are_decoration(base):
                continue
        else:
            base = ch
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def words(text: str) -> list[str]:
    """The normalised words of a text."""
    return WORD.findall(normalize(text))


@dataclass
class PhraseMatcher:
    """Finds whole-word occurrences of a set of terms (single words, phrases, `prefix*`) in a text."""

    singles: set[str] = field(default_factory=set)
    prefixes: set[str] = field(default_factory=set)
    # First word -> the remaining words of each phrase that starts with it.
    phrases: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    @classmethod
    def from_terms(cls, terms: Iterable[str]) -> PhraseMatcher:
        matcher = cls()
        for term in terms:
            matcher.add(term)
        return matcher

    def add(self, term: str) -> None:
        term = term.strip()
        is_prefix = term.endswith("*")
        parts = words(term.rstrip("*"))
        if not parts:
            return
        if is_prefix and len(parts) == 1:
            self.prefixes.add(parts[0])
        elif len(parts) == 1:
            self.singles.add(parts[0])
        else:
            self.phrases.setdefault(parts[0], []).append(tuple(parts[1:]))

    def __len__(self) -> int:
        return len(self.singles) + len(self.prefixes) + sum(len(v) for v in self.phrases.values())

    def count(self, text: str) -> int:
        """How many term occurrences the text holds."""
        tokens = words(text)
        prefix_lengths = {len(p) for p in self.prefixes}
        hits = 0
        for i, token in enumerate(tokens):
            if token in self.singles:
                hits += 1
            elif any(token[:n] in self.prefixes for n in prefix_lengths if n <= len(token)):
                hits += 1
            for rest in self.phrases.get(token, ()):
                if tuple(tokens[i + 1 : i + 1 + len(rest)]) == rest:
                    hits += 1
        return hits
