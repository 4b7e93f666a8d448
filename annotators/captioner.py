"""Generative captioners: one caption per image, offered to the re-captioning rule as a candidate.

Any object with a `name` (recorded as the candidate's source) and `caption(images) -> list[str]` plugs in.
`TransformersCaptioner` runs a `transformers` image-to-text model saved in a local folder (model and
processor, as `save_pretrained` writes them): the captioning families of `AutoModelForImageTextToText`, such
as BLIP, GIT or a VisionEncoderDecoder. Chat VLMs need a chat template and are not driven by this class.
It never downloads: the folder is read with `local_files_only`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import torch
from PIL import Image


class Captioner(Protocol):
    name: str

    def caption(self, images: Sequence[Image.Image]) -> list[str]: ...


class TransformersCaptioner:
    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        max_new_tokens: int = 32,
        prompt: str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        # Imported here: transformers takes seconds to import, and most runs configure no captioner.
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.path = Path(path)
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.processor = AutoProcessor.from_pretrained(self.path, local_files_only=True)
        model = AutoModelForImageTextToText.from_pretrained(self.path, local_files_only=True, dtype=dtype)
        self.model = model.to(device).eval()
        self.name = f"{self.path.name} ({model.config.model_type})"

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> list[str]:
        if not images:
            return []
        text = [self.prompt] * len(images) if self.prompt else None
        inputs = self.processor(images=list(images), text=text, return_tensors="pt")
        # BatchFeature.to casts only floating tensors (pixels) to the dtype; token ids stay integers.
        inputs = inputs.to(self.device).to(self.model.dtype)
        # Greedy decoding: the same image always gets the same caption.
        output = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        # A conditional captioner's output starts with the prompt, which is part of the sentence: kept.
        return [t.strip() for t in self.processor.batch_decode(output, skip_special_tokens=True)]
