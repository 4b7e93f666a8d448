"""Training YAML: strict keys, stage/task consistency, paths relative to the file, default output."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import write_config

from curation.config import ConfigError
from model.train.cli import train_command
from model.train.config import load_train_config


def test_yaml_loads_with_defaults_and_relative_paths(tmp_path):
    path = write_config(tmp_path / "train.yaml", data="curated", steps=10, model={"preset": "tiny"})
    config = load_train_config(path)
    assert config.data == str(tmp_path / "curated")
    assert config.output_dir == tmp_path / "curated" / "train"
    assert (config.stage, config.betas, config.eps, config.weight_decay, config.grad_clip) == (
        3, (0.9, 0.95), 1e-8, 0.0, 1.0
    )
    assert config.tokenizer_path is None


def test_unknown_keys_are_errors_naming_their_path(tmp_path, capsys):
    path = write_config(tmp_path / "t.yaml", data="d", steps=1, tasks={"t2i": 1, "img2txt": 1})
    with pytest.raises(ConfigError, match="tasks.img2txt"):
        load_train_config(path)
    assert train_command(path) == 2
    assert "tasks.img2txt" in capsys.readouterr().err


@pytest.mark.parametrize(
    "stage, tasks, message",
    [(1, {}, "tasks.t2i"), (2, {"t2i": 1, "i2t": 0}, "tasks.text"), (2, {"t2i": 1, "i2t": 1, "text": False}, "i2t")],
)
def test_a_task_the_stage_cannot_learn_from_is_an_error(tmp_path, stage, tasks, message):
    path = write_config(tmp_path / "t.yaml", data="d", steps=1, stage=stage, tasks=tasks)
    with pytest.raises(ConfigError, match=message):
        load_train_config(path)


def test_qwen3_folder_supplies_the_tokenizer(tmp_path):
    path = write_config(tmp_path / "t.yaml", data="d", steps=1, model={"qwen3": "weights/qwen3"})
    assert load_train_config(path).tokenizer_path == str(Path(tmp_path / "weights/qwen3/tokenizer.json"))
