"""Fixtures of the filter tests: real photos, records, and running stages over them the way the pipeline does."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable

import pyarrow as pa
import pytest

from curation import schema as rec
from curation.stage import Stage

DATA = Path(__file__).resolve().parents[1] / "data"

_keys = itertools.count()


def record(**fields: Any) -> dict[str, Any]:
    """A kept record with a unique key; image samples give image_path or image_bytes."""
    return rec.new_record("test", f"sample-{next(_keys)}", 1, **fields)


def run_stages(
    stages: Iterable[Stage], rows: list[dict[str, Any]], extra: dict[str, pa.DataType] | None = None
) -> list[dict[str, Any]]:
    """Bind every stage to one schema holding all their columns and run them in order, as the pipeline does."""
    stages = list(stages)
    columns: dict[str, pa.DataType] = dict(extra or {})
    for stage in stages:
        columns.update(getattr(stage, "extra_columns", stage.output_columns))
    schema = rec.record_schema(columns)
    table = rec.to_table(rows, schema)
    for stage in stages:
        stage.bind(schema)
        table = stage(table)
    return table.to_pylist()


@pytest.fixture
def run() -> Callable[..., list[dict[str, Any]]]:
    return run_stages


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    return record


@pytest.fixture
def sharp_photo() -> Path:
    """A sharp COCO photo (640x408); its first COCO caption is 'A plane floating on top of a lake...'."""
    return DATA / "photos" / "val2017_000000205401.jpg"


@pytest.fixture
def blurred_photo() -> Path:
    """A real motion-blurred photo (scikit-image's clock_motion, 400x300)."""
    return DATA / "filters" / "clock_motion.png"


@pytest.fixture
def rocket_photo() -> Path:
    return DATA / "filters" / "rocket.jpg"
