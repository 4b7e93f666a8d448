from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

from filters.calibrate import calibrate
from filters.config import FiltersConfig


def scored_manifest(n: int = 200) -> pa.Table:
    rng = np.random.default_rng(0)
    sharpness = rng.uniform(0, 100, n)
    sharpness[:10] = np.nan
    return pa.table(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "status": ["kept"] * n,
            "quality.sharpness": pa.array(sharpness, mask=np.arange(n) < 5),  # 5 null, 5 NaN
            "safety.nsfw": rng.uniform(0, 1, n).astype(np.float32),
            "caption.length": rng.integers(0, 80, n).astype(np.float32),
            "frames": np.ones(n, dtype=np.int32),
        }
    )


def test_writes_histograms_threshold_table_and_summary(tmp_path):
    table = scored_manifest()
    summary = calibrate(table, FiltersConfig(), tmp_path)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["hist_caption.length.png", "hist_quality.sharpness.png", "hist_safety.nsfw.png"]
    with Image.open(tmp_path / "hist_quality.sharpness.png") as im:
        assert im.size == (800, 440)
        # The configured threshold is drawn in red.
        assert (np.asarray(im.convert("RGB")) == (210, 40, 40)).all(axis=-1).any()

    sharp = table["quality.sharpness"].to_numpy(zero_copy_only=False)
    sharp = sharp[np.isfinite(sharp)]
    column = summary["columns"]["quality.sharpness"]
    assert column["scored"] == 190
    (rule,) = column["rules"]
    assert rule == {"bound": "min", "threshold": 30.0, "reason": "image_blurry", "would_drop": int((sharp < 30).sum())}

    rows = list(csv.DictReader(open(tmp_path / "thresholds.csv", encoding="utf-8")))
    configured = [r for r in rows if r["column"] == "quality.sharpness" and r["candidate"] == "configured_min"]
    assert int(configured[0]["kept_if_min"]) == int((sharp >= 30).sum())
    median = [r for r in rows if r["column"] == "safety.nsfw" and r["candidate"] == "q0.5"][0]
    assert int(median["kept_if_max"]) == 100

    on_disk = json.loads((tmp_path / "calibration.json").read_text(encoding="utf-8"))
    assert on_disk["would_drop"]["image_blurry"] <= rule["would_drop"]
    assert set(on_disk["would_drop"]) <= {"image_blurry", "image_nsfw", "caption_too_short", "caption_too_long"}
    assert "quality.entropy" in on_disk["missing_columns"]


def test_accepts_pandas_and_skips_unscored_columns(tmp_path):
    frame = pd.DataFrame({"quality.sharpness": [np.nan, np.nan], "safety.nsfw": [0.1, 0.9]})
    summary = calibrate(frame, FiltersConfig(), tmp_path)
    assert list(summary["columns"]) == ["safety.nsfw"]
    assert summary["would_drop"] == {"image_nsfw": 1}
