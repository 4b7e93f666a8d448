"""Command functions for `curation train|sample|caption|eval shapes`, and their argparse wiring.

The lead's `curation.cli.build_parser` calls `register_commands(sub)`; each command imports torch
lazily, so `curation --help` stays fast. `python -m model.train CONFIG [--resume]` runs `main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def train_command(config_path: str | Path, resume: bool = False) -> int:
    from curation.config import ConfigError
    from model.train.config import load_train_config
    from model.train.trainer import train

    try:
        train(load_train_config(config_path), resume=resume)
    except (ConfigError, FileExistsError) as error:
        print(f"curation train: {error}", file=sys.stderr)
        return 2
    return 0


def sample_command(
    checkpoint: str | Path,
    prompt: str,
    size: str,
    output: str | Path,
    *,
    steps: int = 50,
    cfg_scale: float = 4.0,
    seed: int = 0,
    device: str = "cpu",
) -> int:
    from model.train.sampling import draw_image, load_inference, parse_size

    try:
        width, height = parse_size(size)
    except ValueError as error:
        print(f"curation sample: {error}", file=sys.stderr)
        return 2
    inference = load_inference(checkpoint, device=device)
    image = draw_image(inference, prompt, width, height, steps=steps, cfg_scale=cfg_scale, seed=seed)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    image.save(output)
    return 0


def caption_command(checkpoint: str | Path, image: str | Path, *, max_tokens: int = 128, device: str = "cpu") -> int:
    from PIL import Image

    from model.train.sampling import caption_image, load_inference

    with Image.open(image) as opened:
        print(caption_image(load_inference(checkpoint, device=device), opened, max_tokens))
    return 0


def eval_shapes_command(
    checkpoint: str | Path, *, n_prompts: int = 100, seed: int = 0, steps: int = 20, device: str = "cpu"
) -> int:
    """Print one JSON line of accuracies (model.train.shapes_eval.evaluate_shapes)."""
    from model.train.shapes_eval import evaluate_shapes

    print(json.dumps(evaluate_shapes(checkpoint, n_prompts, seed, steps=steps, device=device)))
    return 0


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add train, sample, caption and eval to a `curation` sub-command parser."""
    train = sub.add_parser("train", help="train NEO-unify on a curated output folder")
    train.add_argument("config", help="training YAML (see model/train/config.py)")
    train.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    train.set_defaults(fn=lambda a: train_command(a.config, a.resume))

    sample = sub.add_parser("sample", help="draw an image from a prompt with a trained checkpoint")
    sample.add_argument("--checkpoint", required=True)
    sample.add_argument("--prompt", required=True)
    sample.add_argument("--size", default="256x256", help="WxH, sides multiples of 32")
    sample.add_argument("-o", "--output", required=True, help="PNG file to write")
    sample.add_argument("--steps", type=int, default=50, help="Euler steps")
    sample.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="cpu")
    sample.set_defaults(
        fn=lambda a: sample_command(
            a.checkpoint, a.prompt, a.size, a.output, steps=a.steps, cfg_scale=a.cfg, seed=a.seed, device=a.device
        )
    )

    caption = sub.add_parser("caption", help="caption an image with a trained checkpoint")
    caption.add_argument("--checkpoint", required=True)
    caption.add_argument("image")
    caption.add_argument("--max-tokens", type=int, default=128)
    caption.add_argument("--device", default="cpu")
    caption.set_defaults(
        fn=lambda a: caption_command(a.checkpoint, a.image, max_tokens=a.max_tokens, device=a.device)
    )

    evaluate = sub.add_parser("eval", help="evaluate a checkpoint on a task (shapes)")
    evaluate.add_argument("task", choices=["shapes"])
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--n-prompts", type=int, default=100)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--steps", type=int, default=20, help="Euler steps of the image sampler")
    evaluate.add_argument("--device", default="cpu")
    evaluate.set_defaults(
        fn=lambda a: eval_shapes_command(
            a.checkpoint, n_prompts=a.n_prompts, seed=a.seed, steps=a.steps, device=a.device
        )
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m model.train CONFIG [--resume]` (torchrun-friendly)."""
    parser = argparse.ArgumentParser(prog="python -m model.train", description="train NEO-unify")
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    return train_command(args.config, args.resume)
