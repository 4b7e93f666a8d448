"""Stage base classes. Stages are plain classes that import no executor; `curation.ray_adapter` runs them.

A stage has a `setup` (load models on the worker, never in `__init__`) and a `process` over a batch of
records (an Arrow table). `RowStage` owns the per-sample bookkeeping once for every stage: it skips rows
already dropped, turns a `Drop` into a recorded reason, turns any other exception into `internal_error`
with the message.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import pyarrow as pa

from curation import schema as rec


class Drop(Exception):
    """Raised by a stage to drop the current sample with a short snake_case reason."""

    def __init__(self, reason: str, value: float | None = None, error: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.value = value
        self.error = error


@dataclass(frozen=True)
class Resources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    # Model-backed: the model loads once per worker process (an actor pool in Ray Data maps; publish keeps
    # set-up stages per worker, one model copy per concurrent task) and gets a GPU share when there is one.
    actor: bool = False


class Stage:
    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()
    # Columns this stage adds to the record (scores), name -> Arrow type.
    output_columns: ClassVar[Mapping[str, pa.DataType]] = {}

    def __init__(self) -> None:
        self._ready = False
        self.schema: pa.Schema | None = None

    def bind(self, schema: pa.Schema) -> "Stage":
        """Give the stage the pipeline's full record schema, which its output batches must match."""
        self.schema = schema
        return self

    def setup(self) -> None:
        """Load models or other per-worker state. Called once per worker before the first batch."""

    def ensure_setup(self) -> None:
        if not self._ready:
            self.setup()
            self._ready = True

    def process(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        self.ensure_setup()
        return self.process(batch)


class RowStage(Stage):
    """A stage that looks at one sample at a time and returns the fields it changes."""

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> pa.Table:
        assert self.schema is not None, f"stage {self.name} was not bound to a schema"
        rows = batch.to_pylist()
        for row in rows:
            if row["status"] != rec.KEPT:
                continue
            self.apply(row)
        return rec.to_table(rows, self.schema)

    def apply(self, row: dict[str, Any]) -> None:
        """Run `process_row` on one kept row, recording a drop or a failure on the row itself."""
        try:
            updates = self.process_row(row)
            if updates:
                row.update(updates)
        except Drop as d:
            rec.drop(row, self.name, d.reason, d.value, d.error)
        except Exception as e:  # noqa: BLE001 - a bad sample must never kill the job
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            rec.drop(row, self.name, "internal_error", error=last[:2000])

