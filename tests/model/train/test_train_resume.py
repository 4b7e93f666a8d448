"""--resume continues bit for bit: N steps straight == N/2, checkpoint, resume N/2."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_settings
from train_helpers import losses, read_metrics, write_config

from model.checkpoint import load_checkpoint
from model.train.checkpointing import list_checkpoints
from model.train.cli import train_command
from model.train.config import parse_train_config
from model.train.tokenizer import ByteTokenizer
from model.train.trainer import build_neo_model


def test_resumed_run_repeats_the_uninterrupted_loss_curve(curated, tmp_path):
    straight = write_config(
        tmp_path / "straight.yaml", **tiny_settings(curated, output=str(tmp_path / "straight"), loader_workers=1)
    )
    assert train_command(straight) == 0
    expected = losses(read_metrics(tmp_path / "straight"))

    halves = dict(output=str(tmp_path / "halves"), loader_workers=1, checkpoint_every=3)
    first_half = write_config(tmp_path / "first.yaml", **tiny_settings(curated, **halves, steps=3))
    assert train_command(first_half) == 0
    # The second half is the same run with its full length: the schedule depends on `steps`.
    full = write_config(tmp_path / "full.yaml", **tiny_settings(curated, **halves))
    assert train_command(full, resume=True) == 0

    records = read_metrics(tmp_path / "halves")
    assert [r["step"] for r in records] == list(range(1, 7))
    assert losses(records) == expected  # exact equality, not approximate
    # Stage 3 mixes tasks: both terms were trained within these steps.
    assert any("ce" in r for r in records) and any("mse" in r for r in records)


def test_checkpoint_holds_only_weights_only_loadable_state(curated, tmp_path):
    config = write_config(tmp_path / "c.yaml", **tiny_settings(curated, steps=3))
    assert train_command(config) == 0
    (checkpoint,) = list_checkpoints(curated / "train")
    payload = torch.load(checkpoint, weights_only=True)
    extra = payload["extra"]
    assert extra["step"] == 3 and extra["data_position"]["epoch"] == 0
    assert set(extra) >= {"optimizer", "ema", "schedule", "rng", "train_config", "data_position"}
    assert extra["train_config"]["data"] == str(curated)


def test_an_output_with_checkpoints_needs_resume(curated, tmp_path):
    config = write_config(tmp_path / "c.yaml", **tiny_settings(curated, steps=2))
    assert train_command(config) == 0
    assert train_command(config) == 2


def test_resume_without_a_checkpoint_starts_fresh(curated, tmp_path):
    config = write_config(tmp_path / "c.yaml", **tiny_settings(curated, steps=2))
    assert train_command(config, resume=True) == 0
    assert [r["step"] for r in read_metrics(curated / "train")] == [1, 2]


@pytest.mark.parametrize(
    "stage, tasks, frozen",
    [(1, dict(t2i=0, i2t=1), "generation"), (2, dict(t2i=1, i2t=0, text=False), "understanding")],
)
def test_a_stage_trains_only_its_stream(curated, tmp_path, stage, tasks, frozen):
    settings = tiny_settings(curated, steps=2, stage=stage, tasks=tasks)
    config = write_config(tmp_path / "c.yaml", **settings)
    assert train_command(config) == 0
    initial = build_neo_model(parse_train_config(settings), ByteTokenizer(), torch.device("cpu"))
    trained, _ = load_checkpoint(list_checkpoints(curated / "train")[-1])
    streams = {
        "generation": lambda m: list(m.generation_parameters()),
        "understanding": lambda m: list(m.understanding_parameters()),
    }
    kept = streams[frozen]
    moved = streams["understanding" if frozen == "generation" else "generation"]
    assert all(torch.equal(a, b) for a, b in zip(kept(initial), kept(trained)))
    assert not all(torch.equal(a, b) for a, b in zip(moved(initial), moved(trained)))


def test_a_time_limit_stops_early_with_a_checkpoint(curated, tmp_path):
    config = write_config(tmp_path / "c.yaml", **tiny_settings(curated, steps=1000, max_minutes=1e-6))
    assert train_command(config) == 0
    # The limit (60 microseconds) has passed by the check after the first step at the latest.
    (checkpoint,) = list_checkpoints(curated / "train")
    assert checkpoint.name in ("step_000000.pt", "step_000001.pt")
