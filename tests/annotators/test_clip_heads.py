"""Heads on CLIP image embeddings, with tiny random heads and embeddings (no CLIP weights ship in a package)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from annotators.clip_heads import ClipHeadScorer, head_from_state_dict, load_head, zero_shot_scores
from filters.config import ClipHeadConfig, ClipHeadsConfig

DIM = 8


@pytest.fixture
def embeddings() -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(5, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(module.eval()(torch.from_numpy(x))).squeeze(-1).numpy()


def test_linear_probe_state_dict_round_trip(tmp_path, embeddings):
    torch.manual_seed(0)
    probe = nn.Linear(DIM, 1)
    path = tmp_path / "nsfw_probe.pt"
    torch.save(probe.state_dict(), path)
    head = load_head(path)
    assert [layer.in_features for layer in head.layers] == [DIM]
    with torch.inference_mode():
        scores = head(torch.from_numpy(embeddings)).numpy()
    np.testing.assert_allclose(scores, reference(probe, embeddings), rtol=1e-6)


def test_mlp_from_safetensors(tmp_path, embeddings):
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 1))
    path = tmp_path / "watermark.safetensors"
    save_file(mlp.state_dict(), str(path))  # keys 0.weight, 2.weight, 4.weight
    head = load_head(path, activation="relu")
    with torch.inference_mode():
        np.testing.assert_allclose(head(torch.from_numpy(embeddings)).numpy(), reference(mlp, embeddings), rtol=1e-5)


def test_laion_aesthetic_style_mlp_without_activations(embeddings):
    """LAION's MLP: layers.0/2/4/6/7 Linear with Dropout between and no activation; natural key order matters."""

    class LaionMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(DIM, 32),
                nn.Dropout(0.2),
                nn.Linear(32, 16),
                nn.Dropout(0.2),
                nn.Linear(16, 8),
                nn.Dropout(0.1),
                nn.Linear(8, 4),
                nn.Linear(4, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    torch.manual_seed(2)
    laion = LaionMLP()
    head = head_from_state_dict(laion.state_dict(), activation="none", output="identity")
    with torch.inference_mode():
        expected = laion.eval()(torch.from_numpy(embeddings)).squeeze(-1).numpy()
        np.testing.assert_allclose(head(torch.from_numpy(embeddings)).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({}, "no Linear weights"),
        ({"weight": torch.zeros(1, DIM)}, "bias is missing"),
        (
            {
                "0.weight": torch.zeros(4, DIM),
                "0.bias": torch.zeros(4),
                "1.weight": torch.zeros(1, 5),
                "1.bias": torch.zeros(1),
            },
            "takes 5 inputs",
        ),
        ({"weight": torch.zeros(2, DIM), "bias": torch.zeros(2)}, "one score"),
    ],
)
def test_malformed_heads_are_refused(state, message):
    with pytest.raises(ValueError, match=message):
        head_from_state_dict(state)


def test_head_files_load_without_pickle(tmp_path):
    path = tmp_path / "not_a_state_dict.pt"
    torch.save({"weight": torch.zeros(1, DIM), "note": "text"}, path)
    with pytest.raises(ValueError, match="state_dict"):
        load_head(path)


def fake_text_encoder(prompts: list[str]) -> np.ndarray:
    """Each prompt gets a fixed direction: 'explicit' prompts along axis 0, all others along axis 1."""
    out = np.zeros((len(prompts), DIM), dtype=np.float32)
    for i, p in enumerate(prompts):
        out[i, 0 if "explicit" in p else 1] = 1.0
    return out


def test_zero_shot_scores_follow_the_prompts():
    images = np.zeros((2, DIM), dtype=np.float32)
    images[0, 0] = 1.0  # looks like the positive prompt
    images[1, 1] = 1.0  # looks like the negative prompt
    scores = zero_shot_scores(images, fake_text_encoder, ["an explicit photo"], ["a safe photo", "a landscape"])
    assert scores[0] > 0.99 and scores[1] < 0.01


def test_scorer_uses_heads_when_given_and_prompts_otherwise(tmp_path, embeddings):
    torch.manual_seed(3)
    probe = nn.Linear(DIM, 1)
    torch.save(probe.state_dict(), tmp_path / "wm.pt")
    cfg = ClipHeadsConfig(
        nsfw=ClipHeadConfig(enabled=True, positive_prompts=["explicit"], negative_prompts=["safe"]),
        watermark=ClipHeadConfig(enabled=True, head_path=str(tmp_path / "wm.pt")),
    )
    scorer = ClipHeadScorer(cfg, encode_text=fake_text_encoder)
    scorer.setup()
    scores = scorer.score(embeddings)
    assert set(scores) == {"safety.nsfw_clip", "quality.watermark"} == set(scorer.output_columns)
    np.testing.assert_allclose(scores["quality.watermark"], reference(probe, embeddings), rtol=1e-6)
    assert (
        scores["safety.nsfw_clip"].shape == (5,)
        and ((0 <= scores["safety.nsfw_clip"]) & (scores["safety.nsfw_clip"] <= 1)).all()
    )


def test_zero_shot_without_a_text_encoder_is_an_error():
    scorer = ClipHeadScorer(
        ClipHeadsConfig(nsfw=ClipHeadConfig(enabled=True, positive_prompts=["a"], negative_prompts=["b"]))
    )
    with pytest.raises(ValueError, match="text encoder"):
        scorer.setup()


def test_an_enabled_head_needs_weights_or_prompts():
    with pytest.raises(ValueError):
        ClipHeadConfig(enabled=True)
