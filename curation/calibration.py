"""`curation calibrate`: score a sample of the inputs with the analysis stages, then draw what each threshold keeps.

A sample is small, so it runs in this process without Ray: the same stage objects the pipeline runs, on the
inputs of randomly chosen partitions (seeded), until `n` samples are scored.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa

from curation import schema as rec
from curation.config import PipelineConfig
from curation.pipeline import Pipeline
from filters.calibrate import calibrate
from stages.sources import plan_partitions


def score_sample(cfg: PipelineConfig, n: int) -> pa.Table:
    pipe = Pipeline(cfg, log=lambda _: None)
    partitions = plan_partitions(cfg.sources)
    random.Random(cfg.seed).shuffle(partitions)
    rows: list[dict[str, Any]] = []
    for part in partitions:
        rows.extend(pipe.ingest.read_partition(part))
        if len(rows) >= n:
            break
    table = rec.to_table(rows[:n], pipe.schema)
    for stage in pipe.analysis:
        table = stage(table)
    return table


def calibrate_config(cfg: PipelineConfig, n: int, out_dir: str | Path) -> dict[str, Any]:
    """Histograms (PNG, and JSON for `curation report --calibration`) and keep tables under out_dir."""
    return calibrate(score_sample(cfg, n), cfg.filters, out_dir)
