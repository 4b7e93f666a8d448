"""Does NEO-unify learn on a CPU? Shapes corpus -> `curation run` -> 20 minutes of training -> held-out eval.

    .venv/bin/python bench/bench_train.py --work runs/bench_train

1. generate the shapes corpus (model/train/shapes.py): 3000 scenes, 95% at 256x256, 5% at 512x512;
2. curate it with the real pipeline and its default filters and dedup (embedded Ray, 2 CPUs);
3. train the tiny preset with model/train/shapes_recipe.py (stage 3: 0.1 CE + 1 MSE, the 256x256 bucket)
   for at most 20 minutes (`max_minutes`; --steps sets the cosine schedule's length), with the word-level tokenizer
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
from model.train.shapes import generate_shapes  # noqa: E402
from model.train.shapes_eval import evaluate_shapes  # noqa: E402
from model.train.shapes_recipe import shapes_train_settings  # noqa: E402

TRAIN_MINUTES = 20


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
    settings = shapes_train_settings(curated, output, steps=args.steps, minutes=TRAIN_MINUTES, work=work,
                                     words=args.tokenizer == "words", seed=args.seed)  # fmt: skip
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
