"""`curation demo`: generate the multi-source corpus, curate it, and compare with the planted ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from curation.config import parse_config
from curation.demo_corpus import generate
from curation.pipeline import Pipeline
from manifests.reader import read_manifest
from manifests.report import write_report


def planted_vs_found(corpus: Path, out: str) -> list[tuple[str, int, str]]:
    """For each planted case: how many samples, and the reasons the pipeline recorded for them."""
    truth = json.loads((corpus / "ground_truth.json").read_text())
    table = read_manifest(out, columns=["source", "source_key", "status", "drop_reason"]).to_pylist()
    by_key = {f"{r['source']}/{r['source_key']}": r for r in table}
    rows = []
    for case, keys in sorted(truth.items()):
        reasons: dict[str, int] = {}
        for k in keys:
            r = by_key.get(k)
            label = "MISSING" if r is None else (r["drop_reason"] or "kept")
            reasons[label] = reasons.get(label, 0) + 1
        rows.append((case, len(keys), ", ".join(f"{k} x{v}" for k, v in sorted(reasons.items()))))
    return rows


def train_on_shards(root: Path, curated: str, minutes: float, eval_prompts: int) -> dict:
    """Train the tiny NEO-unify on the curated shards for `minutes`, then evaluate it on held-out shapes."""
    from model.train.checkpointing import list_checkpoints
    from model.train.cli import train_command
    from model.train.shapes import held_out_scenes
    from model.train.shapes_eval import evaluate_shapes
    from model.train.shapes_recipe import shapes_train_settings

    output = root / "train"
    settings = shapes_train_settings(Path(curated), output, steps=2000, minutes=minutes, work=root, every=100)
    settings["samples"]["prompts"] = [scene.caption for scene in held_out_scenes()[::32][:4]]
    config = root / "train.yaml"
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    print(f"\ntraining the tiny NEO-unify on {curated}/shards for {minutes:g} minutes ({config}) ...")
    if train_command(config) != 0:
        raise RuntimeError(f"training failed; config: {config}")
    result = evaluate_shapes(list_checkpoints(output)[-1], eval_prompts, steps=20)
    (output / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_demo(root: Path, n_images: int = 120, overwrite: bool = True, address: str | None = None,
             shapes: int = 480, train_minutes: float = 2.0, eval_prompts: int = 32) -> int:  # fmt: skip
    root = root.resolve()
    if root.exists() and overwrite:
        shutil.rmtree(root)
    corpus = root / "corpus"
    print(f"generating a demo corpus of {n_images} base images and {shapes} shapes scenes in {corpus} ...")
    data = generate(corpus, n_images=n_images, shapes=shapes if train_minutes > 0 else 0)
    data["output"] = str(root / "curated")
    if address:
        data["ray"] = {"address": address}
    (root / "demo.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = parse_config(data, base_dir=root)
    Pipeline(cfg).run(overwrite=True)
    print("\nplanted case -> what the pipeline recorded:")
    for case, n, found in planted_vs_found(corpus, cfg.output):
        print(f"  {case:28s} {n:3d}  {found}")
    report = write_report(cfg.output)
    print(f"\nconfig: {root / 'demo.yaml'}\nshards: {cfg.output}/shards\nmanifest: {cfg.output}/manifest"
          f"\nreport: {report}")
    if train_minutes > 0:
        result = train_on_shards(root, cfg.output, train_minutes, eval_prompts)
        train = root / "train"
        print(f"\nheld-out shapes eval: {json.dumps(result)}\nsample grids: {train}/samples\n"
              f"loss curves: {train}/loss.png\neval: {train}/eval.json\ncheckpoints: {train}/checkpoints")
    return 0
