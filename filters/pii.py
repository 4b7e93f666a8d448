"""Personal data in captions: e-mail addresses, phone numbers and street addresses, where a pattern can tell.

Detection favours precision: a caption full of model numbers, sizes and years must not lose them.
- e-mail: name@domain.tld.
- phone: 7-15 digits after a word or sign such as "tel", "phone", "call", ☎; otherwise 9-15 digits that
  start with '+' or a bracketed area code, or are grouped like a North American number (555-123-4567),
  or start with a trunk 0 (020 7946 0958, 01 23 45 67 89). Bare digit groups that are not shaped like
  that are model numbers, sizes and years in web alt text ("Inspiron 518 519 530", "99 00 01 02 03").
- street address: a house number, one to four capitalised words and a street word (123 Main Street,
  221B Baker St); German/Dutch "Hauptstraße 12", "Musterstr. 5"; French "12 rue de la Paix";
  Spanish/Italian "Calle Mayor 5", "Via Roma 10". Postal codes and cities alone are not personal data.

`PiiScrubber` replaces them with [EMAIL]/[PHONE]/[ADDRESS] and lists the kinds in `safety.pii_scrubbed`;
`PiiFilter` drops the sample instead (caption_pii).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

import pyarrow as pa

from curation.stage import RowStage
from filters.base import KEEP, Filter, Reject, Verdict

PII_COLUMN = "safety.pii_scrubbed"
PLACEHOLDERS = {"email": "[EMAIL]", "phone": "[PHONE]", "address": "[ADDRESS]"}

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zA-Z]{2,24}(?![\w-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,12}(?:[\s.-]\d{2,5}){0,4}(?![\w])")
PHONE_CONTEXT = re.compile(
    r"(?:\b(?:tel|tél|phone|call|mobile|mob|cell|fax|whatsapp|telefon|téléphone|teléfono|telefono)\b\.?:?"
    r"|[☎☏📞📱])\s*$",
    re.IGNORECASE,
)
# A date with a time looks like a trunk-prefixed number: "05.12.2019 14 33".
DATE = re.compile(r"^\d{1,2}[-./]\d{1,2}[-./](?:1[89]|20)\d\d(?!\d)")
# A capitalised name word, not a function word: Title Case headlines capitalise those ("3 Mistakes In A Street Fight").
_CAP = r"(?!(?:A|An|And|At|By|For|In|Of|On|Or|The|To|With)\b)[A-ZÀ-Þ][\w'’-]*"
_STREET_WORDS = (
    # Not Drive, Way, Place, Court, Square: "1 TB Hard Drive", "3 Best Ways", "4 Piece Square" are products.
    r"Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Terrace|Crescent|Highway|Hwy\.?|Parkway"
)
ADDRESS = re.compile(
    "|".join(
        [
            rf"\b\d{{1,5}}[A-Za-z]?\s+(?:{_CAP}\s+){{1,4}}(?:{_STREET_WORDS})(?!\w)",
            r"\b[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|allee|platz|laan|straat)\s+\d{1,5}[a-z]?\b",
            r"\b\d{1,5}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|chemin|impasse|allée|place)\s+"
            r"(?:[\w'’-]+\s+){0,4}[\w'’-]+",
            rf"\b(?:Calle|Avenida|Av\.|Paseo|Plaza|Via|Viale|Corso|Piazza)\s+"
            rf"(?:{_CAP}\s+|de\s+|del\s+|la\s+){{1,4}}\d{{1,5}}\b",
        ]
    )
)


@dataclass(frozen=True)
class PiiMatch:
    kind: str
    start: int
    end: int


def _counts_up(groups: list[str]) -> bool:
    """1-2-3-4, 99 00 01 02: a list of consecutive numbers (issues, model years), not a phone number."""
    values = [int(g) for g in groups]
    return len(values) >= 3 and all((b - a) % 10 ** len(g) == 1 for a, b, g in zip(values, values[1:], groups[1:]))


def _is_phone(number: str, after_phone_word: bool) -> bool:
    digits = sum(c.isdigit() for c in number)
    if after_phone_word:
        return 7 <= digits <= 15
    if not 9 <= digits <= 15:
        return False
    if number.startswith(("+", "(")):
        return True
    groups = re.split(r"[\s.-]+", number)
    if _counts_up(groups) or DATE.match(number):
        return False
    separators = set(re.findall(r"[\s.-]+", number))
    north_american = [len(g) for g in groups] == [3, 3, 4] and len(separators) == 1
    trunk_prefixed = groups[0].startswith("0") and 2 <= len(groups) <= 5
    return north_american or trunk_prefixed


def find_pii(text: str, kinds: Iterable[str] = ("email", "phone", "address")) -> list[PiiMatch]:
    """Non-overlapping matches, in text order; e-mails win over phones and addresses they overlap."""
    wanted = set(kinds)
    found: list[PiiMatch] = []
    if "email" in wanted:
        found += [PiiMatch("email", m.start(), m.end()) for m in EMAIL.finditer(text)]
    if "address" in wanted:
        found += [PiiMatch("address", m.start(), m.end()) for m in ADDRESS.finditer(text)]
    if "phone" in wanted:
        for m in PHONE.finditer(text):
            if _is_phone(m.group(), bool(PHONE_CONTEXT.search(text[max(0, m.start() - 20) : m.start()]))):
                found.append(PiiMatch("phone", m.start(), m.end()))
    kept: list[PiiMatch] = []
    for match in found:  # earlier kinds in `found` take precedence on overlap
        if all(match.end <= k.start or match.start >= k.end for k in kept):
            kept.append(match)
    return sorted(kept, key=lambda m: m.start)


def scrub(text: str, matches: list[PiiMatch]) -> str:
    out, last = [], 0
    for m in matches:
        out += [text[last : m.start], PLACEHOLDERS[m.kind]]
        last = m.end
    return "".join(out) + text[last:]


def kinds_of(matches: list[PiiMatch]) -> str:
    return ",".join(sorted({m.kind for m in matches}))


class PiiScrubber(RowStage):
    """Rewrites the caption with placeholders; `safety.pii_scrubbed` lists what was replaced (null if nothing)."""

    name: ClassVar[str] = "pii_scrub"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = {PII_COLUMN: pa.string()}

    def __init__(self, kinds: Iterable[str]):
        super().__init__()
        self.kinds = tuple(kinds)

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        caption = row.get("caption")
        matches = find_pii(caption, self.kinds) if caption else []
        if not caption or not matches:
            return None
        return {"caption": scrub(caption, matches), PII_COLUMN: kinds_of(matches)}


class PiiFilter(Filter):
    """Drops captions holding personal data (caption_pii, value = number of items found)."""

    name: ClassVar[str] = "pii"

    def __init__(self, kinds: Iterable[str]):
        super().__init__()
        self.kinds = tuple(kinds)

    def decide(self, row: Mapping[str, Any]) -> Verdict:
        caption = row.get("caption")
        matches = find_pii(caption, self.kinds) if caption else []
        return Reject("caption_pii", float(len(matches))) if matches else KEEP
