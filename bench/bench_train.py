"""Does NEO-unify learn on a CPU? Shapes corpus -> `curation run` -> 20 minutes of training -> held-out eval.

    .venv/bin/python bench/bench_train.py --work runs/bench_train

1. generate the shapes corpus (model/train/shapes.py): 3000 scenes, 95% at 256x256, 5% at 512x512;
2. curate it with the real pipeline and its default filters and dedup (embedded Ray, 2 CPUs);
3. train the tiny preset (stage 3: 0.1 CE + 1 MSE) on the 256x256 bucket for at most 20 minutes
   (`max_minutes`; --steps sets the cosine schedule's length), with the shapes word-level tokenizer
   (--tokenizer words, captions of ~14 tokens) or the default byte tokenizer (--tokenizer bytes);
4. evaluate the last checkpoint on held-out scenes (model/train/shapes_eval.py) and print one JSON
   line with the accuracies, the training wall time and the load average.

`--curated DIR` reuses an earlier curated folder (skips 1-2).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from curation.config import parse_config  # noqa: E402 - Ray reads the environment at import
from curation.pipeline import Pipeline  # noqa: E402
from model.train.checkpointing import list_checkpoints  # noqa: E402
from model.train.metrics import read_metrics  # noqa: E402
from model.train.cli import train_command  # noqa: E402
from model.train.shapes import generate_shapes, write_shapes_tokenizer  # noqa: E402
from model.train.shapes_eval import evaluate_shapes  # noqa: E402

# What learns the shapes world within 20 minutes on 2 shared CPU cores (bench/results/train.md):
# - noise_base_tokens 1 gives 256x256 images sigma_R = 8 instead of 1: a 32x32 patch of flat colour
#   averages the noise down 32-fold, so at sigma 1 every patch reads its own colour from z_t almost at
#   once and the caption is never needed; at 8 the colour stays hidden up to t ~ 0.2;
# - timestep std 1.2 instead of 0.8 trains the low-t regime where the shifted sampler starts;
# - the 256x256 bucket only: a 512x512 batch (16 x 256 tokens) costs ~13 of them.
TRAIN_SETTINGS = dict(
    model=dict(preset="tiny", overrides=dict(noise_base_tokens=1)),
    buckets=["256x256"],
    stage=3,
    max_minutes=20,
    batch_size=16,
    lr=2e-3,
    warmup_steps=100,
    tasks=dict(t2i=0.75, i2t=0.25),
    timesteps=dict(mean=-0.8, std=1.2),
    loader_workers=1,
    cpu_threads=1,
    checkpoint_every=250,
    samples=dict(every=250, count=4, steps=20),
)


def curate(work: Path, images: int, seed: int) -> Path:
    corpus, curated = work / "corpus", work / "curated"
    generate_shapes(corpus, images, seed=seed, sizes=((256, 256), (512, 512)), size_weights=(0.95, 0.05))
    config = parse_config(
        {"sources": [{"name": "shapes", "path": str(corpus)}], "output": str(curated),
         "ray": {"num_cpus": 2, "progress": "lines"}}
    )  # fmt: skip
    Pipeline(config).run(overwrite=True)
    return curated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_train"))
    parser.add_argument("--curated", type=Path, help="reuse this curated folder instead of making one")
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--steps", type=int, default=3500, help="schedule length (time limit: 20 minutes)")
    parser.add_argument("--tokenizer", choices=["words", "bytes"], default="words")
    parser.add_argument("--eval-prompts", type=int, default=128, help="held-out scenes (128 exist)")
    parser.add_argument("--eval-steps", type=int, default=20, help="Euler steps of the sampler in the eval")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    curated = args.curated.resolve() if args.curated else curate(work, args.images, args.seed)
    curation_s = time.perf_counter() - started

    output = work / "train"
    shutil.rmtree(output, ignore_errors=True)
    config = work / "train.yaml"
    settings = dict(data=str(curated), output=str(output), steps=args.steps, seed=args.seed, **TRAIN_SETTINGS)
    if args.tokenizer == "words":
        settings["tokenizer"] = str(write_shapes_tokenizer(work / "shapes_tokenizer.json"))
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    load_before = os.getloadavg()
    started = time.perf_counter()
    if train_command(config) != 0:
        raise SystemExit("training failed")
    train_s = time.perf_counter() - started
    load_after = os.getloadavg()

    started = time.perf_counter()
    result = evaluate_shapes(list_checkpoints(output)[-1], args.eval_prompts, args.seed, steps=args.eval_steps)
    result.update(
        steps=read_metrics(output / "metrics.jsonl")[-1]["step"],
        tokenizer=args.tokenizer,
        train_minutes=round(train_s / 60, 2),
        curation_minutes=round(curation_s / 60, 2),
        eval_minutes=round((time.perf_counter() - started) / 60, 2),
        load_average_before=[round(x, 2) for x in load_before],
        load_average_after=[round(x, 2) for x in load_after],
        config=str(config),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
