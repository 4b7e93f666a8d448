"""Tokenizers round-trip text and agree with the model config on vocabulary and special ids."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from model import NeoConfig
from model.train.tokenizer import ByteTokenizer, FileTokenizer, adopt_tokenizer, check_tokenizer, load_tokenizer

QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_end|>": 151645, "<|vision_start|>": 151652, "<|vision_end|>": 151653}


def test_byte_tokenizer_round_trips_any_text():
    tokenizer = ByteTokenizer()
    text = "a red circle, 30° left — ünïcödé 🟥"
    ids = tokenizer.encode(text)
    assert all(0 <= i < 256 for i in ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode([*ids, tokenizer.eos_id, tokenizer.pad_id]) == text  # specials are dropped


def test_byte_tokenizer_matches_the_tiny_preset_and_sizes_others():
    tokenizer = ByteTokenizer()
    tiny = NeoConfig.preset("tiny")
    assert adopt_tokenizer(tiny, tokenizer) == tiny
    check_tokenizer(tiny, tokenizer)
    resized = adopt_tokenizer(NeoConfig.preset("2b"), tokenizer)
    assert resized.vocab_size == 260 and resized.eos_id == tokenizer.eos_id


def _word_tokenizer_file(tmp_path, specials: dict[str, int]):
    vocab = {"[UNK]": 0, "a": 1, "red": 2, "circle": 3, **specials}
    tokenizer = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(specials))
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def test_file_tokenizer_round_trips_and_finds_qwen_specials(tmp_path):
    tokenizer = load_tokenizer(_word_tokenizer_file(tmp_path, QWEN_SPECIALS))
    assert isinstance(tokenizer, FileTokenizer)
    ids = tokenizer.encode("a red circle")
    assert ids == [1, 2, 3]
    assert tokenizer.decode([*ids, tokenizer.eos_id]) == "a red circle"
    assert (tokenizer.img_start_id, tokenizer.img_end_id) == (151652, 151653)
    check_tokenizer(NeoConfig.preset("2b"), tokenizer)  # fits Qwen3-shaped pretrained weights


def test_file_tokenizer_must_fit_fixed_weights_or_sizes_a_fresh_model(tmp_path):
    tokenizer = load_tokenizer(_word_tokenizer_file(tmp_path, QWEN_SPECIALS))
    with pytest.raises(ValueError, match="disagree"):
        check_tokenizer(NeoConfig.preset("tiny"), tokenizer)
    fresh = adopt_tokenizer(NeoConfig.preset("tiny"), tokenizer)
    assert (fresh.vocab_size, fresh.eos_id) == (151654, 151645)  # one past the largest id
    check_tokenizer(fresh, tokenizer)


def test_file_tokenizer_without_neo_specials_is_refused(tmp_path):
    with pytest.raises(ValueError, match="vision_start"):
        load_tokenizer(_word_tokenizer_file(tmp_path, {"<|endoftext|>": 10}))
