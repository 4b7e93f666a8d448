"""The analysis pass: read each sample's bytes once, decode it once (small), and let every annotator score it.

Text-only samples pass through untouched; image samples that cannot be read or decoded are dropped here
with the reason `stages.decode` gives.
"""

from __future__ import annotations

from typing import Any, Mapping

import pyarrow as pa

from curation.config import DecodeConfig
from curation.stage import RowStage
from stages.annotator import AnalysisImage, ImageAnnotator
from stages.decode import decode, display_size, read_bytes, sha256_hex


def has_image(row: Mapping[str, Any]) -> bool:
    return row.get("image_path") is not None or row.get("image_bytes") is not None


class AnalyzeStage(RowStage):
    name = "decode"

    def __init__(self, cfg: DecodeConfig, annotators: list[ImageAnnotator] | None = None):
        super().__init__()
        self.cfg = cfg
        self.annotators = list(annotators or [])

    @property
    def extra_columns(self) -> dict[str, pa.DataType]:
        cols: dict[str, pa.DataType] = {}
        for a in self.annotators:
            cols.update(a.output_columns)
        return cols

    def setup(self) -> None:
        for a in self.annotators:
            a.setup()

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        if not has_image(row):
            return None
        data = read_bytes(row, self.cfg.max_bytes)
        # Record what we know before decoding, so a sample that fails to decode still has its identity.
        row["sha256"] = sha256_hex(data)
        row["bytes"] = len(data)
        rgb, alpha, facts = decode(data, self.cfg.max_pixels, self.cfg.timeout_s, self.cfg.analysis_side)
        row.update(facts)
        dw, dh = display_size(facts["width"], facts["height"], facts["orientation"])
        image = AnalysisImage(image=_shrink(rgb, self.cfg.analysis_side), display_width=dw, display_height=dh,
                              data=data, alpha=_shrink(alpha, self.cfg.analysis_side) if alpha else None)  # fmt: skip
        for a in self.annotators:
            row.update(a.annotate(row, image))
        return None


def _shrink(im, short_side: int):
    """Draft decoding stops at a DCT scale; finish the reduction so annotators see a bounded image."""
    w, h = im.size
    scale = short_side / min(w, h)
    if scale >= 1:
        return im
    return im.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample=3, reducing_gap=2.0)
