"""Tokenizers: text <-> ids, plus the special ids the sequence builder uses.

- `ByteTokenizer` (default): ids 0-255 are UTF-8 bytes, then <img>, </img>, <eos>, <pad>; needs no
  files and matches the byte vocabulary of the `tiny` preset (`model.config.BYTE_*`).
- `FileTokenizer`: a Hugging Face `tokenizers` JSON file (Qwen3's `tokenizer.json` when starting
  from Qwen3 weights); NEO's specials are Qwen3's <|vision_start|>, <|vision_end|>, <|im_end|>,
  <|endoftext|>, looked up by name.

A model trained from scratch takes its vocabulary size and special ids from the tokenizer
(`adopt_tokenizer`); pretrained weights fix them, and the tokenizer must fit (`check_tokenizer`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from model.config import (
    BYTE_EOS_ID,
    BYTE_IMG_END_ID,
    BYTE_IMG_START_ID,
    BYTE_PAD_ID,
    BYTE_VOCAB_SIZE,
    NeoConfig,
)

SPECIAL_FIELDS = ("img_start_id", "img_end_id", "eos_id", "pad_id")


class Tokenizer(Protocol):
    vocab_size: int
    img_start_id: int
    img_end_id: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    vocab_size = BYTE_VOCAB_SIZE
    img_start_id = BYTE_IMG_START_ID
    img_end_id = BYTE_IMG_END_ID
    eos_id = BYTE_EOS_ID
    pad_id = BYTE_PAD_ID

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        """Specials are dropped; a byte sequence cut mid-character decodes with replacement marks."""
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class FileTokenizer:
    """A `tokenizers` JSON file; the four specials are looked up by their Qwen3 names."""

    SPECIAL_NAMES = {
        "img_start_id": "<|vision_start|>",
        "img_end_id": "<|vision_end|>",
        "eos_id": "<|im_end|>",
        "pad_id": "<|endoftext|>",
    }

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as HFTokenizer  # optional dependency, only for this kind

        self._tokenizer = HFTokenizer.from_file(str(path))
        # One past the largest id: a vocabulary may have gaps (get_vocab_size counts entries).
        self.vocab_size = max(self._tokenizer.get_vocab(with_added_tokens=True).values()) + 1
        for field, name in self.SPECIAL_NAMES.items():
            token_id = self._tokenizer.token_to_id(name)
            if token_id is None:
                raise ValueError(f"{path}: no special token {name} (needed as {field})")
            setattr(self, field, token_id)

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)


def load_tokenizer(path: str | Path | None) -> Tokenizer:
    """The byte tokenizer when `path` is None, else the `tokenizers` JSON file at `path`."""
    return ByteTokenizer() if path is None else FileTokenizer(path)


def adopt_tokenizer(config: NeoConfig, tokenizer: Tokenizer) -> NeoConfig:
    """`config` sized for the tokenizer: its vocabulary size and special ids (a model trained from scratch)."""
    return config.replace(vocab_size=tokenizer.vocab_size, **{f: getattr(tokenizer, f) for f in SPECIAL_FIELDS})


def check_tokenizer(config: NeoConfig, tokenizer: Tokenizer) -> None:
    """Raise unless the tokenizer fits a model whose vocabulary is fixed (pretrained or trained weights)."""
    mismatched = [f for f in SPECIAL_FIELDS if getattr(config, f) != getattr(tokenizer, f)]
    if mismatched:
        raise ValueError(f"tokenizer and model disagree on {mismatched}")
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids, the model only {config.vocab_size}")
