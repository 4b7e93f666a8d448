"""The contract between the analysis pass and everything that scores a decoded image.

The analysis pass decodes each image once, small (JPEG draft mode), and hands that one small image to every
`ImageAnnotator`, so signatures and quality scores never decode twice. An annotator only computes values; a
filter decides on them later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import pyarrow as pa
from PIL import Image


@dataclass
class AnalysisImage:
    """One decoded sample, small, as every annotator sees it."""

    image: Image.Image  # RGB, EXIF orientation applied, alpha composited on white
    display_width: int  # full-size width after EXIF rotation
    display_height: int
    data: bytes  # the encoded file, for byte-level signatures (sha256, bytes per pixel)
    alpha: Image.Image | None = None  # the alpha channel at the same small size, when the source had one


class ImageAnnotator:
    """Computes columns from the small decoded image of a sample. Loads models in `setup`."""

    name: ClassVar[str] = "annotator"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = {}

    def setup(self) -> None:
        """Load models or tables; called once per worker."""

    def annotate(self, row: Mapping[str, Any], image: AnalysisImage) -> Mapping[str, Any]:
        raise NotImplementedError
