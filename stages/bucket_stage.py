"""Bucketing as pipeline steps: plan each kept image's bucket (metadata only), and render it at shard time."""

from __future__ import annotations

import json
from typing import Any, Mapping

import pyarrow as pa

from curation.config import DecodeConfig
from curation.stage import Drop, RowStage
from stages.analyze import has_image
from stages.bucketing import BucketDrop, BucketingConfig, BucketPlan, build_bucket_table, plan_bucket, render_to_bucket
from stages.decode import DecodeTimeout, display_size, read_bytes, time_limit
from stages.resize import ImageTooLarge
from stages.shards import TEXT_BUCKET


class BucketStage(RowStage):
    name = "bucket"
    output_columns = {"bucket_scale": pa.float64(), "bucket_crop": pa.string()}

    def __init__(self, cfg: BucketingConfig):
        super().__init__()
        self.cfg = cfg
        self.table = build_bucket_table(cfg)

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        if not has_image(row):
            return {"bucket": TEXT_BUCKET}
        w, h = display_size(row["width"], row["height"], row.get("orientation") or 1)
        plan = plan_bucket(w, h, self.table, self.cfg)
        if isinstance(plan, BucketDrop):
            raise Drop(plan.reason, value=plan.value)
        return {"bucket": plan.bucket.name, "bucket_scale": plan.scale, "bucket_crop": json.dumps(list(plan.crop_box))}


class BucketRenderer:
    """Renders kept rows into their planned bucket: the one full-size decode of each image."""

    def __init__(self, cfg: BucketingConfig, decode: DecodeConfig):
        self.cfg = cfg
        self.decode = decode
        self.buckets = {b.name: b for b in build_bucket_table(cfg)}

    def plan(self, row: Mapping[str, Any]) -> BucketPlan:
        size = display_size(row["width"], row["height"], row.get("orientation") or 1)
        crop = tuple(json.loads(row["bucket_crop"]))
        return BucketPlan(self.buckets[row["bucket"]], float(row["bucket_scale"]), crop, size)  # type: ignore[arg-type]

    def __call__(self, row: Mapping[str, Any]) -> tuple[bytes, str]:
        data = read_bytes(row, self.decode.max_bytes)
        try:
            with time_limit(self.decode.timeout_s):
                return render_to_bucket(data, self.plan(row), self.cfg, self.decode.max_pixels), self.cfg.format
        except ImageTooLarge as e:
            raise Drop("too_many_pixels", error=str(e)) from None
        except DecodeTimeout as e:
            raise Drop("decode_timeout", error=str(e)) from None
