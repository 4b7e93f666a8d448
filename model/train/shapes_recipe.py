"""The training recipe that learns the shapes world on a CPU, shared by `curation demo` and
bench/bench_train.py (measured in bench/results/train.md).

- noise_base_tokens 1 gives 256x256 images sigma_R = 8 instead of 1: a 32x32 patch of flat colour
  averages the noise down 32-fold, so at sigma 1 every patch reads its own colour from z_t almost at
  once and the caption is never needed; at 8 the colour stays hidden up to t ~ 0.2;
- timestep std 1.2 instead of 0.8 trains the low-t regime where the shifted sampler starts;
- the 256x256 bucket only: a 512x512 batch (16 x 256 tokens) costs ~13 of them;
- a word-level tokenizer over the shapes vocabulary: ~14 tokens a caption instead of ~65 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.train.shapes import write_shapes_tokenizer

SHAPES_SETTINGS: dict[str, Any] = dict(
    model=dict(preset="tiny", overrides=dict(noise_base_tokens=1)),
    buckets=["256x256"],
    stage=3,
    batch_size=16,
    lr=2e-3,
    warmup_steps=100,
    tasks=dict(t2i=0.75, i2t=0.25),
    timesteps=dict(mean=-0.8, std=1.2),
    loader_workers=1,
    cpu_threads=1,
)


def shapes_train_settings(
    data: Path, output: Path, *, steps: int, minutes: float, work: Path, words: bool = True, every: int = 250,
    seed: int = 0,
) -> dict[str, Any]:
    """A `curation train` config (as a dict) for the shapes task; writes the word tokenizer into `work`."""
    settings = dict(data=str(data), output=str(output), steps=steps, max_minutes=minutes, seed=seed,
                    checkpoint_every=every, samples=dict(every=every, count=4, steps=20), **SHAPES_SETTINGS)  # fmt: skip
    if words:
        settings["tokenizer"] = str(write_shapes_tokenizer(work / "shapes_tokenizer.json"))
    return settings
