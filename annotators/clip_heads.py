"""NSFW and watermark scores from CLIP image embeddings: a small head from a local file, or zero-shot prompts.

The CLIP stage (which owns the model and the embeddings) calls `ClipHeadScorer.score` on each batch of
embeddings and writes the columns; the threshold rules in `filters.thresholds.clip_head_rules` decide.

Head file format (documented here, loaded without pickle):
- a torch state_dict (`.pt`/`.pth`, read with `torch.load(weights_only=True)`) or a `.safetensors` file;
- holding only the `weight`/`bias` tensors of a chain of `nn.Linear` layers, applied in the natural order of
  their names: `weight`/`bias` (one `nn.Linear(d, 1)`), `0.weight`, `2.weight`... (`nn.Sequential`), or
  `layers.0.weight` ... `layers.7.weight` (LAION's aesthetic-predictor MLP, which has no activations: use
  `activation: none`);
- the last layer has one output. `activation` goes between layers, `output` (sigmoid by default) after the last.
LAION's Keras NSFW detector is not in this format; convert its Dense layers into such a state_dict.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from filters.config import ClipHeadConfig, ClipHeadsConfig

# CLIP's learned logit scale (exp(4.6052) = 100) for zero-shot softmax over prompts.
CLIP_LOGIT_SCALE = 100.0
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "none": lambda x: x,
}
TextEncoder = Callable[[list[str]], np.ndarray]


class EmbeddingHead(nn.Module):
    """A chain of Linear layers ending in one output: linear probe (one layer) or MLP."""

    def __init__(self, dims: Sequence[int], activation: str = "relu", output: str = "sigmoid"):
        super().__init__()
        if len(dims) < 2 or dims[-1] != 1:
            raise ValueError(f"a head maps an embedding to one score, got layer sizes {list(dims)}")
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.activation = ACTIVATIONS[activation]
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.activation(x)
        x = x.squeeze(-1)
        return torch.sigmoid(x) if self.output == "sigmoid" else x


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state_dict of tensors")
    return state


def head_from_state_dict(
    state: dict[str, torch.Tensor], activation: str = "relu", output: str = "sigmoid"
) -> EmbeddingHead:
    """Rebuild the Linear chain the state_dict describes and load its weights."""
    weight_keys = sorted((k for k in state if k == "weight" or k.endswith(".weight")), key=_natural_key)
    if not weight_keys:
        raise ValueError("no Linear weights found (keys 'weight' or '<name>.weight')")
    weights = [state[k] for k in weight_keys]
    if any(w.ndim != 2 for w in weights):
        raise ValueError("every weight must be 2-D (an nn.Linear)")
    dims = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    for key, w, d_in in zip(weight_keys, weights, dims[:-1]):
        if w.shape[1] != d_in:
            raise ValueError(f"{key} takes {w.shape[1]} inputs but the layer before gives {d_in}")
    renamed: dict[str, torch.Tensor] = {}
    for i, key in enumerate(weight_keys):
        bias_key = key[: -len("weight")] + "bias"
        if bias_key not in state:
            raise ValueError(f"{bias_key} is missing")
        renamed[f"layers.{i}.weight"], renamed[f"layers.{i}.bias"] = state[key], state[bias_key]
    head = EmbeddingHead(dims, activation, output)
    head.load_state_dict(renamed)
    return head.eval()


def load_head(path: str | Path, activation: str = "relu", output: str = "sigmoid") -> EmbeddingHead:
    return head_from_state_dict(read_state_dict(path), activation, output)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def zero_shot_scores(
    image_embeddings: np.ndarray,
    encode_text: TextEncoder,
    positive_prompts: Sequence[str],
    negative_prompts: Sequence[str],
) -> np.ndarray:
    """P(positive) per image: softmax over all prompts at CLIP's logit scale, summed over the positive ones."""
    prompt_embeddings = encode_text([*positive_prompts, *negative_prompts])
    return prompt_probability(image_embeddings, prompt_embeddings, len(positive_prompts))


def prompt_probability(image_embeddings: np.ndarray, prompt_embeddings: np.ndarray, n_positive: int) -> np.ndarray:
    """The zero-shot score from prompt embeddings already encoded (the first `n_positive` are the positive ones)."""
    text = _unit(np.asarray(prompt_embeddings, dtype=np.float32))
    logits = CLIP_LOGIT_SCALE * _unit(np.asarray(image_embeddings, dtype=np.float32)) @ text.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, :n_positive].sum(axis=1)


class ClipHeadScorer:
    """The enabled heads of a config, loaded once per worker; `score` maps embeddings to score columns."""

    COLUMNS = {"nsfw": "safety.nsfw_clip", "watermark": "quality.watermark"}

    def __init__(self, cfg: ClipHeadsConfig, encode_text: TextEncoder | None = None):
        self.cfg = cfg
        self.encode_text = encode_text
        self._scorers: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    @property
    def output_columns(self) -> list[str]:
        return [self.COLUMNS[name] for name, head in self._heads() if head.enabled]

    def _heads(self) -> list[tuple[str, ClipHeadConfig]]:
        return [("nsfw", self.cfg.nsfw), ("watermark", self.cfg.watermark)]

    def setup(self) -> None:
        for name, head in self._heads():
            if head.enabled:
                self._scorers[self.COLUMNS[name]] = self._scorer(name, head)

    def _scorer(self, name: str, head: ClipHeadConfig) -> Callable[[np.ndarray], np.ndarray]:
        if head.head_path is not None:
            model = load_head(head.head_path, head.activation, head.output)

            def run_head(emb: np.ndarray) -> np.ndarray:
                with torch.inference_mode():
                    return model(torch.as_tensor(emb, dtype=torch.float32)).numpy()

            return run_head
        if self.encode_text is None:
            raise ValueError(f"clip head {name!r} has no head_path and no text encoder was given for zero-shot prompts")
        # Prompts are encoded once per worker, not per batch.
        prompts = self.encode_text([*head.positive_prompts, *head.negative_prompts])
        n_positive = len(head.positive_prompts)
        return lambda emb: prompt_probability(emb, prompts, n_positive)

    def score(self, image_embeddings: np.ndarray) -> dict[str, np.ndarray]:
        return {column: scorer(image_embeddings).astype(np.float32) for column, scorer in self._scorers.items()}
