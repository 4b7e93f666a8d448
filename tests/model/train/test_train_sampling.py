"""sample / caption / eval commands on a briefly trained checkpoint; training outputs for the report."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_settings
from PIL import Image
from train_helpers import write_config

from model.train.checkpointing import list_checkpoints
from model.train.cli import caption_command, eval_shapes_command, sample_command, train_command
from model.train.sampling import load_inference, parse_size


@pytest.fixture
def trained(curated, tmp_path):
    """A checkpoint after a few steps, with a sample grid written on the way."""
    settings = tiny_settings(curated, steps=4, samples=dict(every=2, count=2, steps=2, max_caption_tokens=8))
    assert train_command(write_config(tmp_path / "t.yaml", **settings)) == 0
    return curated / "train"


def test_training_writes_metrics_loss_plot_samples_and_checkpoints(trained):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"loss", "lr", "grad_norm", "samples"} <= set(r) for r in records)
    assert Image.open(trained / "loss.png").size[0] > 0
    assert sorted(p.name for p in (trained / "samples").iterdir()) == ["step_000002.png", "step_000004.png"]
    assert [p.name for p in list_checkpoints(trained)] == ["step_000003.pt", "step_000004.pt"]


def test_sample_writes_an_image_of_the_requested_size(trained, tmp_path):
    checkpoint = list_checkpoints(trained)[-1]
    output = tmp_path / "out" / "red.png"
    assert sample_command(checkpoint, "a red circle", "96x64", output, steps=2) == 0
    assert Image.open(output).size == (96, 64)


def test_caption_prints_text_for_any_image(trained, tmp_path, capsys):
    image = tmp_path / "odd.png"
    Image.new("RGB", (70, 50), (200, 30, 30)).save(image)  # not a multiple of 32: fitted to the grid
    assert caption_command(list_checkpoints(trained)[-1], image, max_tokens=5) == 0
    assert capsys.readouterr().out.endswith("\n")


def test_eval_shapes_prints_one_json_line_of_accuracies(trained, capsys):
    assert eval_shapes_command(list_checkpoints(trained)[-1], n_prompts=2, steps=1) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n_prompts"] == 2
    for key in ("generation_colour_accuracy", "generation_shape_accuracy", "understanding_colour_accuracy"):
        assert 0.0 <= result[key] <= 1.0


def test_inference_uses_the_ema_generation_weights(trained):
    checkpoint = list_checkpoints(trained)[-1]
    averaged = load_inference(checkpoint).model.pixel_head.mlp[0].weight
    raw = load_inference(checkpoint, use_ema=False).model.pixel_head.mlp[0].weight
    assert not averaged.equal(raw)


def test_sample_refuses_a_size_off_the_patch_grid(trained, tmp_path):
    output = tmp_path / "never.png"
    assert sample_command(list_checkpoints(trained)[-1], "a red circle", "250x256", output) == 2
    assert not output.exists()


@pytest.mark.parametrize("text", ["256", "250x256", "0x32", "axb"])
def test_size_must_be_multiples_of_the_patch(text):
    with pytest.raises(ValueError):
        parse_size(text)
