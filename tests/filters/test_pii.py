from __future__ import annotations

import pytest

from filters.pii import PII_COLUMN, PiiFilter, PiiScrubber, find_pii


@pytest.mark.parametrize(
    ("caption", "scrubbed", "kinds"),
    [
        ("Contact john.doe+shop@example.co.uk for prices", "Contact [EMAIL] for prices", "email"),
        ("Call 555-123-4567 today", "Call [PHONE] today", "phone"),
        ("Office (555) 123-4567", "Office [PHONE]", "phone"),
        ("London office +44 20 7946 0958", "London office [PHONE]", "phone"),
        ("tel: 5551234", "tel: [PHONE]", "phone"),
        ("Reservar clase ☏ 911 014 146", "Reservar clase ☏ [PHONE]", "phone"),
        ("Bureau 01 23 45 67 89", "Bureau [PHONE]", "phone"),
        ("Flat to let, 10 Downing Street, London", "Flat to let, [ADDRESS], London", "address"),
        ("221B Baker St", "[ADDRESS]", "address"),
        ("Büro in der Hauptstraße 12, Berlin", "Büro in der [ADDRESS], Berlin", "address"),
        ("Boutique au 12 rue de la Paix", "Boutique au [ADDRESS]", "address"),
        ("Piso en Calle Mayor 5", "Piso en [ADDRESS]", "address"),
        ("Mail a@b.io or call 555.123.4567", "Mail [EMAIL] or call [PHONE]", "email,phone"),
    ],
)
def test_scrub_mode_replaces_and_records_kinds(run, make_record, caption, scrubbed, kinds):
    (row,) = run([PiiScrubber(["email", "phone", "address"])], [make_record(caption=caption)])
    assert (row["caption"], row[PII_COLUMN], row["status"]) == (scrubbed, kinds, "kept")


@pytest.mark.parametrize(
    "caption",
    [
        "Ford Mustang 1965 1966 1967",
        "Canon EOS 5D Mark IV 24-105mm",
        "ISBN 978-3-16-148410-0",
        "Post-it Notes 76x127mm (Pack of 12) 655-12SSCY",
        "1 TB Hard Drive",
        "Size 10 12 14 16",
        "2019-05-12 14:33",
        "Price $1,299.99",
        "Monitor 1920 1080 2560 1440",
        "Item 123456789",
        "Top 5 Places To Visit",
        "St Louis skyline at night",
        "@username on a poster",
        # Real web alt text (shared/data/captions): model lists, year lists, sizes, part numbers, headlines.
        "550W Upgrade PSU for Dell Inspiron 518 519 530 531 537 540 541 545 Mini Tower PC",
        "For 99 00 01 02 03 04 Jeep Grand Cherokee Headlight Assembly",
        "66 67 68 69 70 71 72 73 Suburban GMC Gasket",
        "GI Joe European Missions Full Comic Set 1-2-3-4-5-6-7-8-9-10-11-12-13-14-15 Lot",
        "Picnic Time 619-00-777-911-0",
        "Lola Ramona Ava Pumps in pink 402 22 23580",
        "Inline Speed Skate Frames Size 3 x 125 165 195 Mounting",
        "Shimano RD-5700 105 10-Speed Rear Derailleur",
        "3 Common Mistakes In A Street Fight",
        "05.12.2019 14 33 at the fair",
    ],
)
def test_numbers_that_are_not_personal_data_are_left_alone(run, make_record, caption):
    (row,) = run([PiiScrubber(["email", "phone", "address"])], [make_record(caption=caption)])
    assert (row["caption"], row[PII_COLUMN]) == (caption, None)


def test_drop_mode(run, make_record):
    rows = run(
        [PiiFilter(["email", "phone"])],
        [make_record(caption="Mail a@b.io or call 555-123-4567"), make_record(caption="A red bus")],
    )
    assert [(r["drop_stage"], r["drop_reason"], r["drop_value"]) for r in rows] == [
        ("pii", "caption_pii", 2.0),
        (None, None, None),
    ]


def test_only_the_configured_kinds_are_looked_for():
    text = "Mail a@b.io, 10 Downing Street"
    assert [m.kind for m in find_pii(text, ["address"])] == ["address"]
    assert [m.kind for m in find_pii(text, ["email"])] == ["email"]
