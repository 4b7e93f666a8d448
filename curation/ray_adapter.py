"""The one place that knows Ray: starts or joins a cluster and maps stages onto Ray Data.

Stateless stages run as Ray tasks; a stage that owns a model (`resources.actor`) runs as an actor pool so
its `setup` loads the model once per worker, with a GPU fraction when the cluster has GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

import pyarrow as pa
import ray
import ray.data

from curation.config import RayConfig
from curation.stage import Stage
from manifests.progress import resolve_mode

QUIET_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def _progress_bars(cfg: RayConfig) -> bool:
    return resolve_mode(cfg.progress) == "bars"


@contextlib.contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Join `cfg.address`, or start an embedded local Ray that is shut down afterwards."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict = {"include_dashboard": False, "configure_logging": True, "logging_level": logging.WARNING,
                        "log_to_driver": False}  # fmt: skip
        if cfg.address:
            ray.init(address=cfg.address, **kwargs)
        else:
            ray.init(num_cpus=cfg.num_cpus, object_store_memory=cfg.object_store_memory, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = _progress_bars(cfg)
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield
    finally:
        if started_here:
            ray.shutdown()


def cluster_gpus() -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def _run_stage(batch: pa.Table, stage: Stage) -> pa.Table:
    return stage(batch)


class _StageActor:
    """Actor wrapper: the stage's model loads once, in the actor, on the first batch."""

    def __init__(self, stage: Stage):
        self.stage = stage
        self.stage.ensure_setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.stage(batch)


def map_stage(ds: ray.data.Dataset, stage: Stage, batch_size: int | None, actors: int | None = None) -> ray.data.Dataset:
    res = stage.resources
    common = {"batch_size": batch_size, "batch_format": "pyarrow", "zero_copy_batch": True}
    if res.actor:
        gpus = res.num_gpus if cluster_gpus() > 0 else 0.0
        return ds.map_batches(_StageActor, fn_constructor_args=(stage,), concurrency=actors or 1,
                              num_cpus=res.num_cpus, num_gpus=gpus, **common)  # fmt: skip
    return ds.map_batches(_run_stage, fn_args=(stage,), num_cpus=res.num_cpus, **common)
