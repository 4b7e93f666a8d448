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


def run_demo(root: Path, n_images: int = 120, overwrite: bool = True, address: str | None = None) -> int:
    root = root.resolve()
    if root.exists() and overwrite:
        shutil.rmtree(root)
    corpus = root / "corpus"
    print(f"generating a demo corpus of {n_images} base images in {corpus} ...")
    data = generate(corpus, n_images=n_images)
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
    return 0
