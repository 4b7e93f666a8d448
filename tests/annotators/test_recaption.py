"""Re-captioning: candidates, the margin rule with known scores, tag captions, and a tiny generative captioner."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

from annotators.captioner import TransformersCaptioner
from annotators.recaption import (
    Candidate,
    TagCaptioner,
    candidates_json,
    choose_caption,
    gather_candidates,
    load_vocabulary,
)


def cands(*origins: str) -> list[Candidate]:
    return [Candidate(f"text {i}", origin) for i, origin in enumerate(origins)]


# ---- the margin rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "margin", "chosen"),
    [
        ([0.20, 0.24, 0.22], 0.05, 0),  # best gains 0.04 < margin: original stays
        ([0.20, 0.25, 0.22], 0.05, 1),  # gains exactly the margin: replaced
        ([0.20, 0.22, 0.30], 0.05, 2),  # the highest-scoring candidate, not the first one over the margin
        ([0.30, 0.10, 0.20], 0.00, 0),  # the original is best
        ([0.25, 0.25, 0.25], 0.00, 0),  # a tie never replaces the original, even at margin 0
        ([0.25, 0.2500001, 0.2], 0.00, 0),  # a float32 rounding difference is a tie
        ([0.20, 0.30, 0.30], 0.05, 1),  # equal best others: the earlier candidate wins
    ],
)
def test_margin_rule(scores, margin, chosen):
    assert choose_caption(cands("original", "inherited", "captioner"), scores, margin) == chosen


def test_without_an_original_the_best_candidate_wins_whatever_the_margin():
    assert choose_caption(cands("inherited", "captioner", "tags"), [0.1, 0.3, 0.2], margin=1.0) == 1
    assert choose_caption(cands("captioner", "tags"), [0.2, 0.2], margin=0.0) == 0
    assert choose_caption([], [], margin=0.0) is None
    assert choose_caption(cands("original"), [0.01], margin=0.0) == 0
    with pytest.raises(ValueError, match="2 candidates but 1 scores"):
        choose_caption(cands("original", "tags"), [0.1], 0.0)


# ---- candidates ---------------------------------------------------------------------------------------


def test_candidates_in_rule_order_without_empty_or_repeated_texts():
    inherited = json.dumps([
        {"sample_id": "s1", "source": "web", "caption": "a dog"},  # same as the original: stays original
        {"sample_id": "s2", "source": "web", "caption": "  a brown dog  "},
        {"sample_id": "s3", "source": "web", "caption": ""},
    ])  # fmt: skip
    got = gather_candidates("a dog", inherited, "a brown dog", "blip", "dog, grass")
    assert got == [
        Candidate("a dog", "original"),
        Candidate("a brown dog", "inherited", "s2"),  # the captioner's identical text is dropped
        Candidate("dog, grass", "tags"),
    ]
    assert gather_candidates(None, None) == []
    assert gather_candidates("  ", None, "generated", "blip") == [Candidate("generated", "captioner", "blip")]


def test_candidates_json_lists_text_origin_score_and_source():
    out = json.loads(candidates_json([Candidate("a", "original"), Candidate("b", "inherited", "s9")], [0.123456789, np.float32(0.5)]))
    assert out == [
        {"text": "a", "origin": "original", "score": 0.123457, "source": None},
        {"text": "b", "origin": "inherited", "score": 0.5, "source": "s9"},
    ]


# ---- tags ---------------------------------------------------------------------------------------------


def test_vocabulary_from_a_file_skips_comments_blanks_and_repeats(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("# animals\ndog\n\n cat \ndog\n", encoding="utf-8")
    assert load_vocabulary(str(path)) == ["dog", "cat"]
    assert load_vocabulary(["a", " b", "a"]) == ["a", "b"]
    with pytest.raises(ValueError, match="empty"):
        load_vocabulary(["", " "])


def test_tag_caption_takes_the_top_k_tags_by_cosine_in_vocabulary_order_on_ties():
    tags = ["sky", "dog", "cat", "tree"]
    tag_emb = np.array([[0, 1], [1, 0], [0.6, 0.8], [1, 0]], dtype=np.float32)
    images = np.array([[1, 0], [0, 1]], dtype=np.float32)
    captioner = TagCaptioner(tags, tag_emb, top_k=3)
    # image 0: dog and tree tie at 1.0 (dog comes first in the vocabulary), then cat at 0.6.
    assert captioner.captions(images) == ["dog, tree, cat", "sky, cat, dog"]
    assert TagCaptioner(tags, tag_emb, top_k=10).top_k == 4


def test_tags_are_encoded_inside_the_prompt():
    seen: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.eye(len(texts), 2, dtype=np.float32)

    captioner = TagCaptioner.from_encoder(["dog", "cat"], encode, "a photo of {}", top_k=1)
    assert seen == ["a photo of dog", "a photo of cat"]
    assert captioner.captions(np.array([[0, 1]], dtype=np.float32)) == ["cat"]


# ---- a generative captioner -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    """A randomly initialised BLIP captioner with a 13-word vocabulary, saved as a local model folder."""
    folder = tmp_path_factory.mktemp("tiny_blip")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "dog", "cat", "red", "blue"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(folder)
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), max_position_embeddings=64, bos_token_id=5, pad_token_id=0,
                         sep_token_id=3, encoder_hidden_size=32, **small),
        vision_config=dict(image_size=32, patch_size=16, **small),
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    return folder


def test_transformers_captioner_from_a_local_folder(tiny_blip):
    captioner = TransformersCaptioner(tiny_blip, max_new_tokens=4)
    assert captioner.name == f"{tiny_blip.name} (blip)"
    images = [Image.new("RGB", (40, 30), (i * 60, 20, 200 - i * 60)) for i in range(3)]
    captions = captioner.caption(images)
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    assert captioner.caption(images) == captions  # greedy decoding: deterministic
    assert captioner.caption([]) == []


def test_conditional_prompt_starts_the_caption(tiny_blip):
    captioner = TransformersCaptioner(tiny_blip, max_new_tokens=3, prompt="a photo of")
    (caption,) = captioner.caption([Image.new("RGB", (32, 32), (10, 200, 30))])
    assert caption.startswith("a photo of") and len(caption.split()) > 3
