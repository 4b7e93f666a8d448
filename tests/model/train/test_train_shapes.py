"""The shapes task: its images pass the default quality filters, and its judges are right."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from annotators.quality import QualityAnnotator
from filters.base import KEEP
from filters.config import FiltersConfig
from filters.thresholds import image_quality_rules
from model.train.shapes import (
    BACKGROUNDS,
    COLOURS,
    all_scenes,
    generate_shapes,
    held_out_scenes,
    render_scene,
    training_scenes,
    write_shapes_tokenizer,
)
from model.train.shapes_judge import Judgement, judge_caption, judge_image
from model.train.tokenizer import load_tokenizer
from stages.annotator import AnalysisImage


def _jpeg_round_trip(image: Image.Image) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)  # what the shard writer stores
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_pixel_judge_names_colour_and_shape_of_rendered_scenes():
    """Every fifth scene: all colours, shapes, sizes and backgrounds, cells varying."""
    rng = np.random.default_rng(0)
    wrong = [
        scene
        for scene in all_scenes()[::5]
        if judge_image(_jpeg_round_trip(render_scene(scene, 256, 256, rng))) != Judgement(scene.colour, scene.shape)
    ]
    assert wrong == []


@pytest.mark.parametrize("size", [(512, 512), (384, 672)])
def test_pixel_judge_works_in_other_buckets(size):
    rng = np.random.default_rng(1)
    scenes = all_scenes()[::43]
    judged = [judge_image(np.asarray(render_scene(s, *size, rng))) for s in scenes]
    assert judged == [Judgement(s.colour, s.shape) for s in scenes]


def test_pixel_judge_finds_nothing_on_a_plain_background():
    plain = np.full((256, 256, 3), BACKGROUNDS["beige"], dtype=np.uint8)
    assert judge_image(plain) == Judgement(None, None)


def test_pixel_judge_can_be_wrong():
    """A wrong colour is seen as wrong (the judge is not trivially agreeing)."""
    scene = training_scenes()[0]
    other = next(c for c in COLOURS if c != scene.colour)
    recoloured = type(scene)(other, scene.shape, scene.size, scene.cell, scene.background)
    image = render_scene(recoloured, 256, 256, np.random.default_rng(0))
    assert judge_image(np.asarray(image)).colour == other != scene.colour


def test_caption_judge_reads_the_first_colour_and_shape():
    assert judge_caption("A large Red circle on a dark grey background") == Judgement("red", "circle")
    assert judge_caption("a blue thing") == Judgement("blue", None)
    assert judge_caption("reddish squares") == Judgement(None, None)  # whole words only


def test_generated_corpus_passes_default_quality_filters_and_holds_out_eval_scenes(tmp_path):
    paths = generate_shapes(tmp_path, 24, seed=3, sizes=((256, 256), (512, 512)), size_weights=(0.5, 0.5))
    assert len(paths) == 24 and all(p.with_suffix(".txt").exists() for p in paths)
    captions = [p.with_suffix(".txt").read_text() for p in paths]
    assert not set(captions) & {s.caption for s in held_out_scenes()}
    assert max(Counter(captions).values()) == 1
    assert {Image.open(p).size for p in paths} == {(256, 256), (512, 512)}
    rules = image_quality_rules(FiltersConfig())
    annotator = QualityAnnotator()
    for path in paths:
        image = Image.open(path).convert("RGB")
        scores = annotator.annotate({}, AnalysisImage(image, image.width, image.height, path.read_bytes()))
        verdicts = {rule.column: rule.check(scores[rule.column]) for rule in rules if rule.column in scores}
        assert all(v == KEEP for v in verdicts.values()), (path.name, verdicts)


def test_shapes_word_tokenizer_round_trips_every_caption(tmp_path):
    tokenizer = load_tokenizer(write_shapes_tokenizer(tmp_path / "shapes.json"))
    for scene in all_scenes():
        ids = tokenizer.encode(scene.caption)
        assert len(ids) == len(scene.caption.split()) and tokenizer.decode(ids) == scene.caption
    assert tokenizer.decode([tokenizer.encode("red")[0], tokenizer.eos_id]) == "red"
