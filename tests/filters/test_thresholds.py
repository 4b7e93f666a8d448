from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import BaseModel

from filters.config import FiltersConfig, ThresholdRuleConfig, resolve_paths
from filters.thresholds import (
    ThresholdFilter,
    ThresholdRule,
    all_rules,
    apply_thresholds,
    custom_rules,
    would_drop_counts,
)

RULES = [
    ThresholdRule("quality.sharpness", min=30, below_reason="image_blurry"),
    ThresholdRule("safety.nsfw", max=0.5, above_reason="image_nsfw"),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(29.9, "image_blurry"), (30.0, None), (5000.0, None), (None, None), (math.nan, None)],
)
def test_min_bound_is_inclusive_and_missing_scores_keep(value, expected):
    verdict = RULES[0].check(value)
    assert (verdict.reason if verdict else None) == expected
    if verdict:
        assert verdict.value == value


@pytest.mark.parametrize(("value", "expected"), [(0.5, None), (0.51, "image_nsfw"), (0.0, None)])
def test_max_bound(value, expected):
    verdict = RULES[1].check(value)
    assert (verdict.reason if verdict else None) == expected


def test_default_reason_codes_name_the_column():
    rule = ThresholdRule("clip.sim", min=0.28, max=0.9)
    assert (rule.check(0.1).reason, rule.check(0.95).reason) == ("clip_sim_too_low", "clip_sim_too_high")


def test_filter_drops_on_the_first_rule_broken(run, make_record):
    extra = {"quality.sharpness": pa.float32(), "safety.nsfw": pa.float32()}
    rows = [
        make_record(**{"quality.sharpness": 10.0, "safety.nsfw": 0.9}),
        make_record(**{"quality.sharpness": 100.0, "safety.nsfw": 0.9}),
        make_record(**{"quality.sharpness": 100.0, "safety.nsfw": 0.1}),
        make_record(caption="text only: no image scores"),
    ]
    out = run([ThresholdFilter(RULES)], rows, extra)
    assert [r["drop_reason"] for r in out] == ["image_blurry", "image_nsfw", None, None]
    assert out[0]["drop_stage"] == "score_thresholds" and out[0]["drop_value"] == 10.0


def test_a_rule_on_a_column_no_stage_writes_is_refused(run, make_record):
    with pytest.raises(ValueError, match="quality.sharpness"):
        run([ThresholdFilter(RULES)], [make_record()], {"safety.nsfw": pa.float32()})


def test_manifest_reapplication_agrees_with_the_row_filter(run, make_record):
    rng = np.random.default_rng(0)
    sharp = rng.uniform(0, 60, 300)
    nsfw = rng.uniform(0, 1, 300)
    sharp[::7] = np.nan
    rows = [
        make_record(**{"quality.sharpness": None if np.isnan(s) else float(s), "safety.nsfw": float(n)})
        for s, n in zip(sharp, nsfw)
    ]
    extra = {"quality.sharpness": pa.float64(), "safety.nsfw": pa.float64()}
    per_row = [r["drop_reason"] for r in run([ThresholdFilter(RULES)], rows, extra)]
    manifest = pa.Table.from_pylist(rows)
    assert apply_thresholds(manifest, RULES)["would_drop_reason"].to_pylist() == per_row
    frame = pd.DataFrame({"quality.sharpness": sharp, "safety.nsfw": nsfw})  # NaN, not null, in pandas
    assert apply_thresholds(frame, RULES)["would_drop_reason"].to_pylist() == per_row
    counts = would_drop_counts(manifest, RULES)
    assert counts == {k: per_row.count(k) for k in ("image_blurry", "image_nsfw")}
    assert sum(counts.values()) < 300


def test_what_a_retuned_threshold_would_drop():
    manifest = pa.table({"quality.sharpness": [5.0, 20.0, 40.0, 80.0]})
    assert would_drop_counts(manifest, [ThresholdRule("quality.sharpness", min=30)]) == {"quality_sharpness_too_low": 2}
    assert would_drop_counts(manifest, [ThresholdRule("quality.sharpness", min=10)]) == {"quality_sharpness_too_low": 1}
    judged = apply_thresholds(manifest, [ThresholdRule("quality.sharpness", min=30)])
    assert judged["would_drop_value"].to_pylist() == [5.0, 20.0, None, None]


def test_reapplying_to_a_table_without_the_column_is_an_error():
    with pytest.raises(KeyError, match="quality.sharpness"):
        apply_thresholds(pa.table({"x": [1.0]}), RULES)


def test_default_config_rules_cover_every_enabled_filter():
    reasons = {r.below_reason if r.min is not None else r.above_reason for r in all_rules(FiltersConfig())}
    assert reasons == {
        "image_nsfw",
        "image_too_small",
        "aspect_ratio_too_extreme",
        "image_too_large",
        "image_blurry",
        "image_low_information",
        "image_too_dark",
        "image_too_bright",
        "image_over_compressed",
        "caption_too_short",
        "caption_too_few_words",
        "caption_too_long",
        "caption_few_letters",
        "caption_repetitive",
    }


def test_disabled_filters_contribute_no_rules_and_frame_policy_adds_one():
    cfg = FiltersConfig.model_validate(
        {
            "image": {"sharpness": {"enabled": False}, "frames": {"policy": "drop"}},
            "safety": {"nsfw": {"enabled": False}},
        }
    )
    columns = {r.column for r in all_rules(cfg)}
    assert "quality.sharpness" not in columns and "safety.nsfw" not in columns
    assert "frames" in columns


def test_custom_rules_from_config():
    cfg = FiltersConfig.model_validate(
        {"thresholds": [{"column": "clip.sim", "min": 0.28, "below_reason": "clip_score_low"}]}
    )
    (rule,) = custom_rules(cfg.thresholds)
    assert rule.check(0.2).reason == "clip_score_low"
    assert rule.check(0.3) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"column": "clip.sim"},
        {"column": "clip.sim", "min": 2, "max": 1},
        {"column": "Clip Sim", "min": 1},
        {"column": "clip.sim", "min": 1, "below_reason": "Too Low"},
        {"column": "clip.sim", "min": 1, "typo": 3},
    ],
)
def test_bad_rule_configs_are_rejected(bad):
    with pytest.raises(ValueError):
        ThresholdRuleConfig.model_validate(bad)


def test_filters_config_forbids_unknown_keys_and_documents_every_field():
    with pytest.raises(ValueError):
        FiltersConfig.model_validate({"image": {"blur": {"min": 3}}})

    def undocumented(model: type[BaseModel]) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                missing += [f"{name}.{m}" for m in undocumented(sub)]
            elif not field.description:
                missing.append(name)
        return missing

    assert undocumented(FiltersConfig) == []


def test_relative_file_paths_resolve_against_the_config_folder(tmp_path):
    cfg = FiltersConfig.model_validate(
        {
            "safety": {
                "blocklist": {"files": ["lists/extra.txt", "/abs/list.txt"]},
                "image_blocklist": {"enabled": True, "files": ["bad.txt"]},
                "clip_heads": {"watermark": {"enabled": True, "head_path": "heads/wm.pt"}},
            }
        }
    )
    resolved = resolve_paths(cfg, tmp_path)
    assert resolved.safety.blocklist.files == [str(tmp_path / "lists/extra.txt"), "/abs/list.txt"]
    assert resolved.safety.image_blocklist.files == [str(tmp_path / "bad.txt")]
    assert resolved.safety.clip_heads.watermark.head_path == str(tmp_path / "heads/wm.pt")
    assert cfg.safety.blocklist.files[0] == "lists/extra.txt"  # the original is unchanged
