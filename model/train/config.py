"""Training settings: one pydantic model loaded from YAML; unknown keys are errors.

    data: runs/demo/curated        # a `curation run` output folder (buckets.json + shards/)
    model: {preset: tiny}
    stage: 3
    steps: 2000
    batch_size: 16

Relative paths resolve against the YAML file's folder. `output` defaults to `<data>/train`, where the
report page looks for metrics.jsonl and samples/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from curation.config import ConfigError
from curation.config_base import Strict
from model.losses import STAGE_LOSS_WEIGHTS


class ModelSettings(Strict):
    preset: Literal["tiny", "2b", "8b"] = Field("tiny", description="NeoConfig preset (model/config.py).")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="NeoConfig fields replacing the preset's, e.g. {hidden_size: 256}."
    )
    qwen3: str | None = Field(
        None,
        description="Local Qwen3 folder (config.json + safetensors): shapes and understanding weights come "
        "from it; `preset` is then ignored and `overrides` apply on top of its shapes.",
    )
    generation_init: Literal["copy", "random"] = Field(
        "copy", description="With qwen3: start the generation stream as a copy of the loaded layers, or random."
    )


class TaskMix(Strict):
    t2i: float = Field(0.5, ge=0, description="Share of image samples trained as text-to-image (MSE).")
    i2t: float = Field(0.5, ge=0, description="Share of image samples trained as image-to-text (CE).")
    text: bool = Field(
        True,
        description="Train on the text-only bucket when the data has one (CE). Its share follows the data: "
        "an epoch visits every sample exactly once.",
    )
    caption_dropout: float = Field(
        0.1, ge=0, le=1, description="Share of text-to-image samples whose caption is dropped (for CFG)."
    )

    @model_validator(mode="after")
    def _some_image_task(self) -> TaskMix:
        if self.t2i + self.i2t <= 0:
            raise ValueError("t2i + i2t must be positive")
        return self


class TimestepSettings(Strict):
    """Training timesteps t = sigmoid(N(mean, std)) per generated image (t = 0 noise, 1 clean)."""

    mean: float = Field(-0.8, description="The paper's -0.8 favours noisy timesteps.")
    std: float = Field(
        0.8,
        gt=0,
        description="The paper's 0.8 puts under 3% of samples below t = 0.1, where the shifted sampler "
        "spends its first steps; a wider spread trains that regime sooner (small or short runs).",
    )


class SampleSettings(Strict):
    every: int = Field(500, ge=0, description="Steps between sample grids (samples/step_NNNNNN.png); 0: never.")
    count: int = Field(4, ge=1, description="Prompts and images in a grid.")
    steps: int = Field(20, ge=1, description="Euler steps of the image sampler.")
    cfg_scale: float = Field(4.0, ge=1, description="Classifier-free guidance scale.")
    max_caption_tokens: int = Field(64, ge=1, description="Token budget of each generated caption.")
    prompts: list[str] | None = Field(
        None, description="Prompts to draw; default: captions of the first images of the data."
    )


class TrainConfig(Strict):
    data: str = Field(description="Curated output folder holding buckets.json and shards/.")
    output: str | None = Field(None, description="Training output folder; default <data>/train.")
    model: ModelSettings = ModelSettings()
    tokenizer: str | None = Field(
        None,
        description="`tokenizers` JSON file; default: bytes, or <model.qwen3>/tokenizer.json with Qwen3 weights.",
    )
    stage: Literal[1, 2, 3, 4] = Field(
        3, description="1: understanding only (CE); 2: generation only, understanding frozen (MSE); 3/4: both."
    )
    steps: int = Field(ge=1, description="Optimizer steps in total (a resumed run continues up to it).")
    max_minutes: float | None = Field(
        None,
        gt=0,
        description="Stop (with a checkpoint) once this much wall time has passed, even before `steps`; "
        "the schedule still spans `steps`, and --resume continues the run.",
    )
    batch_size: int = Field(16, ge=1, description="Samples per step over all data-parallel ranks.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up from 0 to lr.")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0, description="Max global gradient norm.")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of the generation weights (used for sampling).")
    tasks: TaskMix = TaskMix()
    timesteps: TimestepSettings = TimestepSettings()
    buckets: list[str] | None = Field(
        None,
        description="Buckets to train on, e.g. [256x256, text] for a low-resolution phase; default: all of them.",
    )
    max_text_tokens: int = Field(256, ge=1, description="Captions and texts are cut to this many tokens.")
    seed: int = 0
    loader_workers: int = Field(1, ge=0, description="DataLoader worker processes per rank (0: in-process).")
    samples: SampleSettings = SampleSettings()
    checkpoint_every: int = Field(500, ge=1, description="Steps between checkpoints (one is always written at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept on disk.")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    cpu_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU; default: torch's choice."
    )

    @model_validator(mode="after")
    def _tasks_have_a_loss(self) -> TrainConfig:
        """A task whose loss the stage weights by 0 would cost compute and teach nothing."""
        weights = STAGE_LOSS_WEIGHTS[self.stage]
        if self.tasks.t2i > 0 and not weights.mse:
            raise ValueError(f"stage {self.stage} has no generation loss: set tasks.t2i to 0")
        if (self.tasks.i2t > 0 or self.tasks.text) and not weights.ce:
            raise ValueError(f"stage {self.stage} has no text loss: set tasks.i2t to 0 and tasks.text to false")
        return self

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path(self.data) / "train"

    @property
    def tokenizer_path(self) -> str | None:
        if self.tokenizer is None and self.model.qwen3 is not None:
            return str(Path(self.model.qwen3) / "tokenizer.json")
        return self.tokenizer


def resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    """Relative local paths against `base`."""

    def resolve(path: str | None) -> str | None:
        return None if path is None else str((base / path).resolve())

    return config.model_copy(
        update=dict(
            data=resolve(config.data),
            output=resolve(config.output),
            tokenizer=resolve(config.tokenizer),
            model=config.model.model_copy(update=dict(qwen3=resolve(config.model.qwen3))),
        )
    )


def parse_train_config(values: dict[str, Any], origin: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise ConfigError(f"{origin} is invalid:\n{error}") from None


def load_train_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return resolve_paths(parse_train_config(values, str(path)), path.parent.resolve())
