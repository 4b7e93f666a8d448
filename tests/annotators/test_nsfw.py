"""open_nsfw on the analysis image: real photos score low, and a missing model is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from annotators.nsfw import NSFW_COLUMN, NsfwModelMissing, OpenNsfwAnnotator, bundled_model_path, load_classifier
from curation import schema as rec
from curation.config import DecodeConfig
from filters.config import NsfwConfig
from stages.analyze import AnalyzeStage
from stages.annotator import AnalysisImage

TESTS = Path(__file__).resolve().parents[1]
SHARED_PHOTOS = TESTS.parent.parent / "shared" / "data" / "photos"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
ROCKET = TESTS / "data" / "filters" / "rocket.jpg"


def photos() -> list[Path]:
    """The photo copies in tests/data always; every photo of shared/data too when it is there."""
    roots = [TESTS / "data" / "photos", TESTS / "data" / "filters", SHARED_PHOTOS]
    return sorted(p for root in roots if root.exists() for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def analysed(paths: list[Path], annotator: OpenNsfwAnnotator) -> list[dict]:
    """Run the real analysis pass (one small decode) with the annotator."""
    stage = AnalyzeStage(DecodeConfig(), [annotator])
    schema = rec.record_schema(stage.extra_columns)
    stage.bind(schema)
    rows = [rec.new_record("t", str(p), 1, image_path=str(p)) for p in paths]
    return stage(rec.to_table(rows, schema)).to_pylist()


@pytest.fixture(scope="module")
def annotator() -> OpenNsfwAnnotator:
    return OpenNsfwAnnotator()


@pytest.mark.parametrize("photo", photos(), ids=lambda p: p.name)
def test_every_real_photo_scores_low(annotator, photo):
    (row,) = analysed([photo], annotator)
    assert row["status"] == "kept"
    assert 0.0 <= row[NSFW_COLUMN] < 0.3 < NsfwConfig().max_score


def test_the_small_analysis_image_scores_like_the_full_file(annotator):
    paths = sorted((TESTS / "data" / "photos").glob("*.jpg")) + [ROCKET]
    reference = load_classifier(str(bundled_model_path()), 1)  # the package's own pipeline on the full file
    for path, row in zip(paths, analysed(paths, annotator)):
        assert row[NSFW_COLUMN] == pytest.approx(reference.classify(path.read_bytes()).nsfw, abs=0.15), path.name


def test_missing_model_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "open-nsfw.onnx"
    with pytest.raises(NsfwModelMissing, match="open-nsfw.onnx"):
        OpenNsfwAnnotator(model_path=str(missing)).setup()


def test_optional_model_leaves_the_score_empty_instead_of_inventing_one(tmp_path):
    (row,) = analysed([ROCKET], OpenNsfwAnnotator(model_path=str(tmp_path / "missing.onnx"), optional=True))
    assert row[NSFW_COLUMN] is None and row["status"] == "kept"


def test_annotating_before_setup_is_an_error():
    image = AnalysisImage(image=Image.new("RGB", (256, 256)), display_width=256, display_height=256, data=b"")
    with pytest.raises(RuntimeError, match="setup"):
        OpenNsfwAnnotator().annotate({}, image)
