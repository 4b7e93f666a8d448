"""Typed run configuration, loaded from YAML. Unknown keys and wrong types are errors naming the key path.

Each stage family keeps its own config class next to its code; this module composes them into one
`PipelineConfig`, which every run saves next to its outputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from curation.config_base import Strict
from annotators.clip_config import ClipConfig
from filters.config import FiltersConfig
from filters.config import resolve_paths as resolve_filter_paths
from stages.bucketing import BucketingConfig
from stages.dedup.config import DedupConfig


class SourceConfig(Strict):
    name: str = Field(description="Short name of the source; part of every sample_id, so keep it stable.")
    path: str = Field(
        description="fsspec path: a folder, a table glob (*.parquet|*.jsonl|*.csv) or a tar pattern "
        "with braces ({000..009}.tar) or globs. Relative paths resolve against the config file's folder."
    )
    priority: int = Field(1, description="Dedup survivor rule: the copy from the source with the HIGHER number wins.")
    kind: Literal["auto", "folder", "table", "webdataset"] = Field(
        "auto", description="auto: .tar -> webdataset, .parquet/.jsonl/.csv -> table, else folder."
    )
    image_column: str | None = Field(
        "image", description="Table column holding an image path (relative to the table) or URL, or bytes."
    )
    caption_column: str | list[str] = Field(
        "caption", description="Table column(s) with captions; the first non-empty one is the caption."
    )
    key_column: str | None = Field(None, description="Table column with a stable per-row key; default: file:row.")
    text_only: bool = Field(False, description="The source has captions/text but no images.")
    partition_size: int = Field(256, ge=1, description="Folder/table rows per unit of ingest work.")

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-" for c in v):
            raise ValueError("use letters, digits, '_' or '-'")
        return v

    @property
    def caption_columns(self) -> list[str]:
        return [self.caption_column] if isinstance(self.caption_column, str) else list(self.caption_column)


class DecodeConfig(Strict):
    max_pixels: int = Field(80_000_000, ge=1, description="Images declaring more pixels are dropped (too_many_pixels).")
    max_bytes: int = Field(64 * 2**20, ge=1, description="Files larger than this are dropped (file_too_large).")
    timeout_s: float = Field(10.0, gt=0, description="Per-sample decode time limit (decode_timeout).")
    analysis_side: int = Field(
        256, ge=32, description="Short side of the small image the analysis pass decodes (JPEG draft mode)."
    )


class ShardConfig(Strict):
    max_samples: int = Field(1000, ge=1, description="Target samples per shard.")
    max_bytes: int = Field(512 * 2**20, ge=1, description="Target bytes per shard.")


class RayConfig(Strict):
    address: str | None = Field(None, description="None: start an embedded local Ray; 'auto' or HOST:PORT: join.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs for the embedded Ray (default: all).")
    object_store_memory: int | None = Field(None, ge=2**26, description="Bytes for the embedded object store.")
    batch_size: int = Field(64, ge=1, description="Samples per batch handed to a stage.")
    range_rows: int = Field(
        8192, ge=1, description="Records per publish task (a sample_id range): bounds each task's memory, "
        "whatever the corpus size; the outputs do not depend on it."
    )
    progress: Literal["auto", "bars", "lines", "off"] = Field("auto", description="Progress display.")


class PipelineConfig(Strict):
    sources: list[SourceConfig] = Field(min_length=1)
    output: str = Field(description="Output folder: shards/, manifest/ and the run's records.")
    decode: DecodeConfig = DecodeConfig()
    filters: FiltersConfig = FiltersConfig()
    dedup: DedupConfig = DedupConfig()
    clip: ClipConfig = ClipConfig()
    bucketing: BucketingConfig = BucketingConfig()
    shards: ShardConfig = ShardConfig()
    ray: RayConfig = RayConfig()
    seed: int = 0

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique, repeated: {dupes}")
        return v


class ConfigError(ValueError):
    """A config that failed validation; the message names every bad key path."""


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        got = e.get("input")
        shown = "" if e["type"] in ("missing", "extra_forbidden") else f" (got {got!r:.60})"
        lines.append(f"  {path}: {e['msg']}{shown}")
    return "\n".join(lines)


def parse_config(data: Any, base_dir: Path | None = None, origin: str = "config") -> PipelineConfig:
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{origin} is invalid:\n{_format_errors(e)}") from None
    if base_dir is not None:
        cfg = resolve_paths(cfg, base_dir)
    return cfg


def resolve_paths(cfg: PipelineConfig, base_dir: Path) -> PipelineConfig:
    """Make local relative paths absolute against the config file's folder; URLs stay as they are."""

    def resolve(p: str) -> str:
        if "://" in p or Path(p).is_absolute():
            return p
        return str((base_dir / p).resolve())

    out = cfg.model_copy(deep=True)
    for s in out.sources:
        s.path = resolve(s.path)
    out.output = resolve(out.output)
    out.filters = resolve_filter_paths(out.filters, base_dir)
    clip = out.clip
    for name in ("checkpoint", "architecture_file", "cache_dir", "aesthetic_head"):
        if getattr(clip, name):
            setattr(clip, name, resolve(getattr(clip, name)))
    if clip.captioner and clip.captioner.path:
        clip.captioner.path = resolve(clip.captioner.path)
    if clip.tags and isinstance(clip.tags.vocabulary, str):
        clip.tags.vocabulary = resolve(clip.tags.vocabulary)
    return out


# An unquoted brace pattern (`path: data/{000..009}.tar`) inside a YAML flow mapping is a YAML syntax
# error, yet it is the natural way to write shard ranges; such values are quoted before a second parse.
_BRACE_PATH = re.compile(r"(\bpath:\s*)([^\s,'\"{}]*(?:\{[^{}]*\}[^\s,'\"{}]*)+)")


def parse_yaml(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as first:
        quoted = _BRACE_PATH.sub(lambda m: f'{m.group(1)}"{m.group(2)}"', text)
        if quoted == text:
            raise first
        try:
            return yaml.safe_load(quoted)
        except yaml.YAMLError:
            raise first from None


def load_config(path: str | Path) -> PipelineConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    return parse_config(data, base_dir=path.parent.resolve(), origin=str(path))


def dump_config(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
