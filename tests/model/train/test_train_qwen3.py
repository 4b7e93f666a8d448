"""Training from local Qwen3 weights with their `tokenizers` file (a tiny random stand-in)."""

from __future__ import annotations

import torch
from conftest import tiny_settings
from tokenizers import Tokenizer, models, pre_tokenizers
from train_helpers import read_metrics, write_config
from transformers import Qwen3Config, Qwen3ForCausalLM

from model.checkpoint import load_checkpoint
from model.train.checkpointing import list_checkpoints
from model.train.cli import train_command
from model.train.shapes import shapes_vocabulary

VOCAB = 300
# The stand-in's own ids for NEO's four specials (Qwen3's real ones are 151643-151653).
SPECIALS = {"<|endoftext|>": 296, "<|im_end|>": 297, "<|vision_start|>": 298, "<|vision_end|>": 299}


def _save_qwen3_with_tokenizer(folder) -> Qwen3ForCausalLM:
    config = Qwen3Config(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    qwen = Qwen3ForCausalLM(config)
    qwen.save_pretrained(folder)
    words = {word: i for i, word in enumerate(["[UNK]", *shapes_vocabulary()])}
    tokenizer = Tokenizer(models.WordLevel({**words, **SPECIALS}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(SPECIALS))
    tokenizer.save(str(folder / "tokenizer.json"))
    return qwen


def test_stage_1_trains_the_understanding_stream_from_qwen3_weights(curated, tmp_path):
    qwen = _save_qwen3_with_tokenizer(tmp_path / "qwen3")
    settings = tiny_settings(
        curated,
        model=dict(
            qwen3=str(tmp_path / "qwen3"),
            overrides=dict(embed_channels=16, pixel_head_size=32, img_start_id=298, img_end_id=299,
                           eos_id=297, pad_id=296),
        ),  # fmt: skip
        stage=1,
        tasks=dict(t2i=0, i2t=1),
        steps=2,
    )
    assert train_command(write_config(tmp_path / "t.yaml", **settings)) == 0
    assert all("ce" in record and "mse" not in record for record in read_metrics(curated / "train"))
    trained, extra = load_checkpoint(list_checkpoints(curated / "train")[-1])
    assert extra["train_config"]["tokenizer"] is None  # taken from the Qwen3 folder
    assert trained.config.vocab_size == VOCAB and trained.config.hidden_size == 32
    # Stage 1 moved the Qwen3 embedding; the generation copy of the layer still holds Qwen3's weights.
    assert not torch.equal(trained.embed_tokens.weight, qwen.model.embed_tokens.weight)
    qwen_q = qwen.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(trained.layers[0].generation.q_proj.weight, qwen_q)
