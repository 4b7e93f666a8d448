"""`curation calibrate`: scores a sample in-process and writes histograms the report can show."""

import json

from curation.calibration import calibrate_config
from curation.config import parse_config
from curation.demo_corpus import generate
from manifests.report_calibration import load_calibration


def test_calibration_of_a_sample_writes_report_ready_histograms(tmp_path):
    data = generate(tmp_path / "corpus", n_images=6, seed=3)
    cfg = parse_config({**data, "output": str(tmp_path / "out")})
    summary = calibrate_config(cfg, 20, tmp_path / "cal")
    assert summary["rows"] == 20
    sharp = summary["columns"]["quality.sharpness"]
    assert sharp["rules"][0]["bound"] == "min" and sharp["scored"] > 0
    assert (tmp_path / "cal" / "hist_quality.sharpness.png").exists()
    hist = json.loads((tmp_path / "cal" / "hist_quality.sharpness.json").read_text())
    assert sum(hist["counts"]) == sharp["scored"] and hist["threshold"]["min"] == 30
    histograms, _ = load_calibration(str(tmp_path / "cal"))
    assert "quality.sharpness" in {h.column for h in histograms}
    assert not any(h.column.startswith("dedup.") for h in histograms)
