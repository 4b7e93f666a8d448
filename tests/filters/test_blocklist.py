from __future__ import annotations

import pytest

from filters.blocklist import CaptionBlocklistFilter, builtin_terms, load_terms, parse_terms
from filters.config import BlocklistConfig
from filters.text import PhraseMatcher, normalize, words


@pytest.fixture
def judge(run, make_record):
    def judge(*captions: str, terms: list[str] | None = None) -> list[dict]:
        cfg = BlocklistConfig()
        f = CaptionBlocklistFilter(terms if terms is not None else load_terms(cfg.builtin_lists, cfg.files, cfg.terms))
        return run([f], [make_record(caption=c) for c in captions])

    return judge


def reasons(rows):
    return [r["drop_reason"] for r in rows]


@pytest.mark.parametrize("language", ["en", "de", "es", "fr"])
def test_shipped_lists_load_and_hold_terms(language):
    terms = builtin_terms(language)
    assert 15 <= len(terms) <= 100
    assert all(t == t.strip() and not t.startswith("#") for t in terms)


def test_list_syntax():
    assert parse_terms("# comment\n\nfoo\n  bar baz  # trailing comment\nqux*\n") == ["foo", "bar baz", "qux*"]


@pytest.mark.parametrize(
    "caption",
    [
        "Free PORN videos",
        "ＰＯＲＮ",
        "Pornográfico contenido",
        "leaked sex-tape of a star",
        "Masturbating teen",
        "Kinderpornografie verboten",
        "Vidéo pornographique",
        "Décapitation filmée",
        "the beheading video",
        "BDSM gear",
    ],
)
def test_shipped_terms_match_across_case_accents_width_and_languages(judge, caption):
    (row,) = judge(caption)
    assert (row["drop_stage"], row["drop_reason"], row["drop_value"]) == (
        "caption_blocklist",
        "caption_blocklisted",
        1.0,
    )


@pytest.mark.parametrize(
    "caption",
    [
        "A first class passage on the ship",
        "Scunthorpe United fans",
        "An assassin's creed poster",
        "Essex countryside",
        "Gore-Tex hiking jacket",
        "Nude lipstick set",
        "A chink in the armour",
        "Erection of the steel frame",
        "Oilseed rape in bloom",
        "Therapist office interior",
        "Sextant on a chart",
        "a cocktail at the bar",
    ],
)
def test_innocent_captions_are_kept(judge, caption):
    assert reasons(judge(caption)) == [None]


def test_word_boundaries_prevent_the_scunthorpe_problem(judge):
    rows = judge("my ass hurts", "first class passage", "Assassin", terms=["ass"])
    assert reasons(rows) == ["caption_blocklisted", None, None]


def test_files_and_inline_terms(judge, tmp_path):
    listed = tmp_path / "extra.txt"
    listed.write_text("# project list\nforbidden fruit\n", encoding="utf-8")
    terms = load_terms([], [str(listed)], ["badword", "zorb*"])
    rows = judge("The forbidden fruit tree", "a forbidden garden fruit", "BADWORD!", "zorbing downhill", terms=terms)
    assert reasons(rows) == ["caption_blocklisted", None, "caption_blocklisted", "caption_blocklisted"]


def test_missing_list_file_fails_when_building_the_filter(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_terms([], [str(tmp_path / "nope.txt")], [])


def test_hits_are_counted():
    matcher = PhraseMatcher.from_terms(["porn", "sex tape"])
    assert matcher.count("porn porn and a sex tape") == 3


def test_normalisation():
    assert normalize("Ｃａｆé ÀÉÎÕÜ Straße ﬁne") == "cafe aeiou strasse fine"
    # Accents go only where they decorate a Latin or Greek letter: й is a letter of its own, and so are kana.
    assert normalize("Йод") == "йод"
    assert normalize("ガイド") == "ガイド"


def test_underscores_separate_words():
    assert words("Man_with_Horse_Head_Mask") == ["man", "with", "horse", "head", "mask"]
    assert PhraseMatcher.from_terms(["sex tape"]).count("leaked_sex_tape_2019") == 1
