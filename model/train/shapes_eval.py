"""Does a checkpoint know the shapes world? Accuracy on held-out scenes, judged from pixels and words.

Generation: draw each held-out prompt, judge the image's colour and shape (model.train.shapes_judge).
Understanding: render the held-out scene, caption it, check the caption names its colour and shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.train.sampling import caption_image, draw_image, load_inference
from model.train.shapes import ShapeScene, held_out_scenes, render_scene
from model.train.shapes_judge import Judgement, judge_caption, judge_image

EVAL_SIZE = (256, 256)


def pick_scenes(n_prompts: int, seed: int) -> list[ShapeScene]:
    """n held-out scenes in a seeded order (repeating only when n exceeds the held-out set)."""
    scenes = held_out_scenes()
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(scenes)) for _ in range(-(-n_prompts // len(scenes)))])
    return [scenes[i] for i in order[:n_prompts]]


def _accuracy(judged: list[Judgement], scenes: list[ShapeScene], field: str) -> float:
    hits = sum(getattr(j, field) == getattr(s, field) for j, s in zip(judged, scenes))
    return hits / max(len(scenes), 1)


def evaluate_shapes(
    checkpoint: str | Path,
    n_prompts: int = 100,
    seed: int = 0,
    *,
    steps: int = 20,
    cfg_scale: float = 4.0,
    device: str = "cpu",
) -> dict[str, float]:
    """Generation and understanding accuracies on n held-out scenes (one JSON-able dict)."""
    inference = load_inference(checkpoint, device=device)
    scenes = pick_scenes(n_prompts, seed)
    width, height = EVAL_SIZE
    drawn, captioned = [], []
    rng = np.random.default_rng(seed)
    for i, scene in enumerate(scenes):
        image = draw_image(inference, scene.caption, width, height, steps=steps, cfg_scale=cfg_scale, seed=seed + i)
        drawn.append(judge_image(np.asarray(image)))
        caption = caption_image(inference, render_scene(scene, width, height, rng))
        captioned.append(judge_caption(caption))
    return {
        "n_prompts": len(scenes),
        "generation_colour_accuracy": _accuracy(drawn, scenes, "colour"),
        "generation_shape_accuracy": _accuracy(drawn, scenes, "shape"),
        "understanding_colour_accuracy": _accuracy(captioned, scenes, "colour"),
        "understanding_shape_accuracy": _accuracy(captioned, scenes, "shape"),
        "sampler_steps": steps,
        "cfg_scale": cfg_scale,
    }
