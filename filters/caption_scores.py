"""Caption scores: numbers the caption threshold rules act on, written before any caption filter runs.

Columns:
- `caption.length`: characters after trimming (0 when there is no caption).
- `caption.words`: words (runs of letters/digits).
- `caption.letter_fraction`: letters among non-space characters (null for an empty caption).
- `caption.repeat_fraction`: 1 - unique words / words, for captions of at least 4 words (0 below that, where a
  single repeat is normal: "a dog and a cat").
- `caption.lang`, `caption.lang_score`: detected language and the detector's confidence (`filters.language`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

import pyarrow as pa

from curation.stage import RowStage
from filters.language import LanguageDetector, shared_detector
from filters.text import words

MIN_WORDS_FOR_REPEATS = 4

CAPTION_COLUMNS: dict[str, pa.DataType] = {
    "caption.length": pa.float32(),
    "caption.words": pa.float32(),
    "caption.letter_fraction": pa.float32(),
    "caption.repeat_fraction": pa.float32(),
    "caption.lang": pa.string(),
    "caption.lang_score": pa.float32(),
}


def text_scores(caption: str | None) -> dict[str, float | None]:
    text = (caption or "").strip()
    tokens = words(text)
    visible = [c for c in text if not c.isspace()]
    letters = sum(1 for c in visible if c.isalpha())
    repeats = 1 - len(set(tokens)) / len(tokens) if len(tokens) >= MIN_WORDS_FOR_REPEATS else 0.0
    return {
        "caption.length": float(len(text)),
        "caption.words": float(len(tokens)),
        "caption.letter_fraction": letters / len(visible) if visible else None,
        "caption.repeat_fraction": repeats,
    }


class CaptionScorer(RowStage):
    """Writes the caption score columns; the language ones only when detection is on."""

    name: ClassVar[str] = "caption_scores"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = CAPTION_COLUMNS

    def __init__(self, detect_language: bool = True):
        super().__init__()
        self.detect_language = detect_language
        self._detector: LanguageDetector | None = None

    def setup(self) -> None:
        if self.detect_language:
            self._detector = shared_detector()

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        caption = row.get("caption")
        scores: dict[str, Any] = text_scores(caption)
        if self._detector is not None and caption and caption.strip():
            scores["caption.lang"], scores["caption.lang_score"] = self._detector.detect(caption)
        return scores
