"""The caption MinHash pass: a batch stage, so text-only samples (no image to analyse) get signatures too."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from curation import schema as rec
from curation.stage import Stage
from stages.dedup.config import DedupConfig
from stages.dedup.minhash import minhash_captions, signature_type, signatures_to_arrow
from stages.dedup.signatures import MINHASH


class CaptionMinHashStage(Stage):
    """Writes `dedup.minhash` (null when the caption has no shingles or the row is already dropped)."""

    name = "dedup_minhash"

    def __init__(self, cfg: DedupConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # The column width depends on the config, so it is declared per instance.
        self.output_columns = {MINHASH: signature_type(cfg)}

    def process(self, batch: pa.Table) -> pa.Table:
        captions = batch["caption"]
        captions = pc.if_else(pc.equal(batch["status"], rec.KEPT), captions, pa.scalar(None, captions.type))
        column = signatures_to_arrow(minhash_captions(captions, self.cfg))
        index = batch.schema.get_field_index(MINHASH)
        batch = batch.set_column(index, MINHASH, column) if index >= 0 else batch.append_column(MINHASH, column)
        return batch.select(self.schema.names).cast(self.schema) if self.schema is not None else batch
