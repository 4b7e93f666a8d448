"""Caption quality: scores written first, then content checks, length/letters/repetition rules and language."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from filters.caption_content import CaptionContentFilter, is_file_name
from filters.caption_scores import CaptionScorer, text_scores
from filters.config import DEFAULT_BOILERPLATE, FiltersConfig
from filters.language import LanguageFilter
from filters.thresholds import CaptionQualityFilter, caption_quality_rules

SHARED_PHOTOS_CSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "photos" / "photos.csv"
COCO_CAPTIONS = [
    "A plane floating on top of a lake surrounded by mountains.",
    "A man drives a motorcycle down a road in the fog.",
    "a long green and white bus driving down the road",
    "A cat and a canary are sharing dinner together.",
    "Several plates of food are set on a table.",
]


@pytest.fixture
def judge(run, make_record):
    """Score captions and apply every caption filter of a config, in pipeline order."""

    def judge(*captions: str | None, caption: dict[str, Any] | None = None) -> list[dict]:
        cfg = FiltersConfig.model_validate({"caption": caption or {}}).caption
        stages = [
            CaptionScorer(detect_language=cfg.language.enabled),
            CaptionContentFilter(
                cfg.content.drop_empty,
                cfg.content.drop_filenames,
                cfg.content.drop_html,
                cfg.content.boilerplate_phrases,
            ),
            CaptionQualityFilter(caption_quality_rules(FiltersConfig(caption=cfg))),
        ]
        if cfg.language.allowed:
            stages.append(LanguageFilter(cfg.language.allowed, cfg.language.min_confidence))
        return run(stages, [make_record(caption=c) for c in captions])

    return judge


def reasons(rows: list[dict]) -> list[str | None]:
    return [r["drop_reason"] for r in rows]


def coco_captions() -> list[str]:
    """All human COCO captions of shared/data when it is there, else a few copied here."""
    if not SHARED_PHOTOS_CSV.exists():
        return COCO_CAPTIONS
    with open(SHARED_PHOTOS_CSV, encoding="utf-8") as f:
        return [c.strip() for row in csv.DictReader(f) if row["captions"] for c in row["captions"].split("||")]


def test_real_human_captions_pass_every_caption_filter(judge):
    captions = coco_captions()
    assert len(captions) >= 5
    rows = judge(*captions)
    assert [(r["caption"], r["drop_reason"]) for r in rows if r["drop_reason"]] == []
    assert all(r["caption.lang"] == "en" for r in rows if r["caption.lang_score"] > 0.9)


def test_scores():
    assert text_scores("buy buy buy cheap cheap shoes") == {
        "caption.length": 29.0,
        "caption.words": 6.0,
        "caption.letter_fraction": 1.0,
        "caption.repeat_fraction": 0.5,
    }
    assert text_scores(None) == {
        "caption.length": 0.0,
        "caption.words": 0.0,
        "caption.letter_fraction": None,
        "caption.repeat_fraction": 0.0,
    }
    assert text_scores("a dog and a cat")["caption.repeat_fraction"] == pytest.approx(0.2)
    assert text_scores("#### 2019 !!")["caption.letter_fraction"] == 0.0


@pytest.mark.parametrize("caption", [None, "", "   \n"])
def test_empty_captions(judge, caption):
    assert reasons(judge(caption)) == ["caption_empty"]
    assert reasons(judge(caption, caption={"content": {"drop_empty": False}, "length": {"enabled": False}})) == [None]


@pytest.mark.parametrize(
    "caption",
    [
        "IMG_1234.JPG",
        "DSC0001",
        "photo.png",
        "DSCN4410.jpeg",
        "IMG_20190512_143301",
        "PXL_20230101_120000123",
        "uploads/2019/05/header-image.webp",
        "Screenshot 2023-01-05 at 10.22.33.png",
        "3f2a9c1e8b7d4a6f0c1d",
        "550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_file_name_captions_are_dropped(judge, caption):
    assert is_file_name(caption)
    assert reasons(judge(caption)) == ["caption_filename"]


@pytest.mark.parametrize(
    "caption", ["A photo of IMG gallery", "Canon EOS 5D photo of a lake", "The 2019 png format guide"]
)
def test_captions_that_mention_files_are_not_file_names(caption):
    assert not is_file_name(caption)


def test_html_remnants(judge):
    rows = judge(
        "<a href='x.html'>Yale New Haven Hospital</a>", "Tom &amp; Jerry on a couch", "Fish & chips on a plate"
    )
    assert reasons(rows) == ["caption_html", "caption_html", None]
    assert rows[0]["drop_value"] == 2.0


def test_boilerplate(judge):
    rows = judge(
        "Stock Photo - A woman running on a beach",
        "Image may contain: two people, smiling",
        "CLICK HERE to enlarge",
        "A stockpot of soup on the stove",
        "A boy clicking a pen here",
    )
    assert reasons(rows) == ["caption_boilerplate", "caption_boilerplate", "caption_boilerplate", None, None]
    assert reasons(
        judge("Stock Photo - A woman running on a beach", caption={"content": {"boilerplate_phrases": []}})
    ) == [None]
    assert "stock photo" in DEFAULT_BOILERPLATE


def test_length_bounds_both_sides(judge):
    rows = judge("Dogs", "Sunset", "Red car", "word " * 250)
    assert reasons(rows) == ["caption_too_short", "caption_too_few_words", None, "caption_too_long"]
    assert rows[0]["drop_value"] == 4.0
    assert reasons(judge("Sunset", caption={"length": {"min_words": 1}})) == [None]


def test_mostly_non_letters(judge):
    rows = judge("#1 !!! >>> 2019-05-12 <<<", "Room 101, floor 2")
    assert reasons(rows) == ["caption_few_letters", None]
    assert rows[0]["drop_value"] < 0.5


def test_repeated_words(judge):
    rows = judge("shoes shoes nike shoes sale shoes shoes", "The cat sat on the mat by the door of the house")
    assert reasons(rows) == ["caption_repetitive", None]
    assert reasons(judge(rows[0]["caption"], caption={"text": {"max_repeat_fraction": 0.7}})) == [None]


def test_language_is_recorded_and_everything_allowed_by_default(judge):
    rows = judge("Ein kleiner Hund spielt auf der grünen Wiese", "Un chien joue dans le jardin avec un ballon")
    assert reasons(rows) == [None, None]
    assert [r["caption.lang"] for r in rows] == ["de", "fr"]
    assert all(r["caption.lang_score"] > 0.9 for r in rows)


def test_allowed_languages(judge):
    rows = judge(
        "Ein kleiner Hund spielt auf der grünen Wiese",
        "A small dog plays on the green meadow",
        "Red car",
        caption={"language": {"allowed": ["en"]}},
    )
    assert reasons(rows) == ["caption_language", None, None]  # "Red car": too short to be sure, kept
    assert rows[0]["drop_stage"] == "caption_language" and rows[0]["drop_value"] > 0.9
    assert rows[2]["caption.lang_score"] < 0.5


def test_language_detection_can_be_turned_off(judge):
    (row,) = judge("Ein kleiner Hund spielt auf der grünen Wiese", caption={"language": {"enabled": False}})
    assert row["caption.lang"] is None and row["status"] == "kept"


def test_language_codes_are_validated():
    with pytest.raises(ValueError):
        FiltersConfig.model_validate({"caption": {"language": {"allowed": ["English"]}}})
