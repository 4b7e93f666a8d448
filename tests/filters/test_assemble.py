"""The whole filter set from one config: stage order, switches, and one end-to-end pass over mixed samples."""

from __future__ import annotations

import hashlib

from PIL import Image, ImageFilter

from curation.config import DecodeConfig
from filters import FiltersConfig, clip_head_filter, filter_stages, image_annotators
from stages.analyze import AnalyzeStage


def names(stages) -> list[str]:
    return [s.name for s in stages]


def test_default_stages_in_order():
    cfg = FiltersConfig()
    assert [a.name for a in image_annotators(cfg)] == ["quality", "nsfw"]
    assert names(filter_stages(cfg)) == [
        "pii_scrub",
        "caption_scores",
        "caption_blocklist",
        "safety_scores",
        "image_quality",
        "caption_content",
        "caption_quality",
    ]
    assert clip_head_filter(cfg) is None


def test_switches_remove_stages_and_annotators(tmp_path):
    listed = tmp_path / "bad.txt"
    listed.write_text("sha256:" + "0" * 64 + "\n", encoding="utf-8")
    cfg = FiltersConfig.model_validate(
        {
            "image": {k: {"enabled": False} for k in ("size", "sharpness", "information", "exposure", "compression")},
            "caption": {"language": {"allowed": ["en"]}, "content": {"enabled": False}},
            "safety": {
                "nsfw": {"enabled": False},
                "pii": {"mode": "drop"},
                "blocklist": {"enabled": False},
                "image_blocklist": {"enabled": True, "files": [str(listed)]},
                "clip_heads": {"watermark": {"enabled": True, "head_path": "wm.pt"}},
            },
            "thresholds": [{"column": "caption.words", "max": 50}],
        }
    )
    assert image_annotators(cfg) == []
    assert names(filter_stages(cfg)) == [
        "pii",
        "caption_scores",
        "image_blocklist",
        "caption_quality",
        "caption_language",
        "score_thresholds",
    ]
    head_filter = clip_head_filter(cfg)
    assert head_filter is not None and [r.column for r in head_filter.rules] == ["quality.watermark"]


def test_end_to_end_every_sample_ends_kept_or_with_its_reason(run, make_record, sharp_photo, blurred_photo, tmp_path):
    blocked = tmp_path / "blocked.png"
    Image.open(sharp_photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(blocked)
    blurry = tmp_path / "blurry.png"
    Image.open(sharp_photo).filter(ImageFilter.GaussianBlur(6)).save(blurry)
    listed = tmp_path / "known_bad.txt"
    listed.write_text(f"sha256:{hashlib.sha256(blocked.read_bytes()).hexdigest()}\n", encoding="utf-8")
    cfg = FiltersConfig.model_validate({"safety": {"image_blocklist": {"enabled": True, "files": [str(listed)]}}})
    good = "A plane floating on top of a lake surrounded by mountains."
    samples = {
        "kept": make_record(image_path=str(sharp_photo), caption=good),
        "scrubbed": make_record(image_path=str(sharp_photo), caption=good + " Bookings: info@lakeplanes.example"),
        "image_blocklisted": make_record(image_path=str(blocked), caption=good),
        "caption_blocklisted": make_record(image_path=str(sharp_photo), caption="Free porn pics of a lake"),
        "image_blurry": make_record(image_path=str(blurry), caption=good),
        "real_blur": make_record(image_path=str(blurred_photo), caption="A clock on a table"),
        "caption_filename": make_record(image_path=str(sharp_photo), caption="IMG_1234.JPG"),
        "caption_too_short": make_record(caption="Lake"),
        "text_only": make_record(caption="A short story about a plane on a lake."),
    }
    stages = [AnalyzeStage(DecodeConfig(), image_annotators(cfg)), *filter_stages(cfg)]
    out = dict(zip(samples, run(stages, list(samples.values()))))
    assert {k: (r["drop_stage"], r["drop_reason"]) for k, r in out.items()} == {
        "kept": (None, None),
        "scrubbed": (None, None),
        "image_blocklisted": ("image_blocklist", "image_blocklisted"),
        "caption_blocklisted": ("caption_blocklist", "caption_blocklisted"),
        "image_blurry": ("image_quality", "image_blurry"),
        "real_blur": ("image_quality", "image_blurry"),
        "caption_filename": ("caption_content", "caption_filename"),
        "caption_too_short": ("caption_quality", "caption_too_short"),
        "text_only": (None, None),
    }
    assert (
        out["scrubbed"]["caption"] == good + " Bookings: [EMAIL]" and out["scrubbed"]["safety.pii_scrubbed"] == "email"
    )
    assert out["kept"]["safety.nsfw"] < 0.3 and out["kept"]["quality.sharpness"] > 300
    assert out["text_only"]["safety.nsfw"] is None and out["text_only"]["caption.lang"] == "en"
    # Scores are written before any filter decides, so dropped samples keep them for calibration.
    assert out["caption_filename"]["caption.length"] == 12.0 and out["image_blurry"]["quality.entropy"] > 4
