"""What the CLIP stage runs, and whether the files it needs are here.

`check_clip` runs on the driver before any Ray work and again in every worker's `setup`: a configured file
that cannot be found stops the run with a message naming what was looked for and how to fetch it. With
`optional: true` the stage is skipped instead and says so in the manifest; it never scores with random
weights. `fetch_weights` downloads and caches the CLIP weights ahead of a run, on a machine with a network.

open_clip (and torch with it) is imported inside the functions that need it: the run's config imports this
module, and loading a config should not cost a torch import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from curation.config_base import Strict

FETCH_HINT = (
    "fetch it on a machine with a network with `curation fetch-models CONFIG` (the same clip.cache_dir), "
    "or point clip.checkpoint at a local file"
)
OPTIONAL_HINT = "or set clip.optional: true to run without CLIP scores"
# The preprocessing a pretrained tag sets, which open_clip applies to a tag but not to a file of its weights.
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


class CaptionerConfig(Strict):
    path: str = Field(description="Local folder of a transformers image-to-text model (BLIP, GIT, ...) and its processor.")
    prompt: str | None = Field(None, description="Text prefix for conditional captioners (BLIP: 'a photograph of').")
    max_new_tokens: int = Field(32, ge=1, description="Longest generated caption, in tokens.")


class TagsConfig(Strict):
    vocabulary: list[str] | str = Field(description="Tags: a list, or a text file with one tag a line ('#' comments).")
    prompt: str = Field("a photo of {}", description="Template the tag is encoded in; '{}' is the tag.")
    top_k: int = Field(5, ge=1, description="Tags in the composed caption, best first.")

    @model_validator(mode="after")
    def _prompt_has_slot(self) -> TagsConfig:
        if "{}" not in self.prompt:
            raise ValueError("prompt needs a '{}' where the tag goes")
        return self


class ClipConfig(Strict):
    enabled: bool = Field(False, description="Run the CLIP stage (needs weights; see optional).")
    optional: bool = Field(False, description="Missing files skip the stage (recorded in clip.skipped) instead of stopping the run.")
    model: str = Field("ViT-L-14", description="open_clip architecture name, built in or from architecture_file.")
    pretrained: str | None = Field("datacomp_xl_s13b_b90k", description="open_clip pretrained tag, looked up in the local cache.")
    checkpoint: str | None = Field(None, description="Local CLIP state_dict file (.pt/.bin/.safetensors); wins over pretrained.")
    architecture_file: str | None = Field(None, description="open_clip model config JSON that registers a custom architecture named after the file.")
    cache_dir: str | None = Field(None, description="Where pretrained weights are cached; None: open_clip's default (the Hugging Face cache).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: the GPU when the worker has one.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field("auto", description="auto: fp16 on a GPU, fp32 on CPU.")
    batch_size: int = Field(64, ge=1, description="Images per forward pass (and per Ray batch).")
    actors: int = Field(1, ge=1, description="Publish tasks that run CLIP at once, each with its own model copy.")
    num_cpus: int = Field(1, ge=1, description="CPUs per worker; torch uses as many threads.")
    num_gpus: float = Field(1.0, gt=0, le=1, description="GPU share per worker when the cluster has GPUs.")
    decode_side: int | None = Field(None, ge=16, description="JPEG draft-decode short side; None: the model's input size.")
    sidecar: bool = Field(True, description="Write image and caption embeddings to OUT/embeddings/.")
    sidecar_dtype: Literal["float16", "float32"] = Field("float16", description="Storage type of the sidecar embeddings.")
    aesthetic_head: str | None = Field(None, description="Aesthetic head on the image embedding (see annotators.clip); writes clip.aesthetic.")
    aesthetic_activation: Literal["none", "relu", "gelu"] = Field("none", description="Between the head's layers; LAION's MLP has none.")
    recaption: bool = Field(True, description="False: the shard keeps the original caption; candidates are still scored.")
    margin: float = Field(0.03, ge=0, description="Cosine by which a candidate must beat the original caption to replace it.")
    captioner: CaptionerConfig | None = Field(None, description="A generative captioner whose caption becomes a candidate.")
    tags: TagsConfig | None = Field(None, description="A tag vocabulary whose top-k tags form a candidate caption.")

    @model_validator(mode="after")
    def _consistent(self) -> ClipConfig:
        if self.enabled and not (self.pretrained or self.checkpoint):
            raise ValueError("an enabled CLIP stage needs pretrained (a tag) or checkpoint (a file)")
        if self.device == "cpu" and self.precision == "fp16":
            raise ValueError("fp16 needs a GPU; use fp32 or bf16 on CPU")
        if self.architecture_file and Path(self.architecture_file).stem != self.model:
            raise ValueError("open_clip names an architecture after its file: model must be the architecture_file's stem")
        return self


class ClipWeightsMissing(RuntimeError):
    """A file the CLIP stage needs is not where the config says; the message says where it looked."""


@dataclass(frozen=True)
class ClipWeights:
    """A local file holding the CLIP weights, and what open_clip needs to load it as the tag would."""

    model: str
    path: Path
    pretrained: str | None = None  # the tag the file was fetched for; None for clip.checkpoint
    preprocess: dict[str, Any] = field(default_factory=dict)  # the tag's mean/std/interpolation
    quick_gelu: bool = False  # the tag was trained with QuickGELU (OpenAI's weights)


@dataclass(frozen=True)
class ClipCheck:
    """The driver's verdict on the CLIP stage: it runs, it is off, or it is skipped (optional, files missing)."""

    state: Literal["disabled", "ready", "skipped"]
    weights: ClipWeights | None = None
    reason: str | None = None

    def summary(self) -> str:
        """One line for run.json (`clip: ...`)."""
        if self.state == "ready" and self.weights is not None:
            source = self.weights.pretrained or str(self.weights.path)
            return f"ready ({self.weights.model} {source})"
        if self.state == "skipped":
            return f"skipped ({self.reason})"
        return self.state


def register_architecture(cfg: ClipConfig) -> None:
    """Make `architecture_file` known to open_clip in this process (workers call it too)."""
    import open_clip

    if cfg.architecture_file is None:
        return
    path = Path(cfg.architecture_file)
    if not path.is_file():
        raise ClipWeightsMissing(f"open_clip architecture file not found: {path}; {OPTIONAL_HINT}")
    if path.stem not in open_clip.list_models():
        open_clip.add_model_config(path)


def _hub_candidates(hf_hub: str) -> tuple[str, list[str]]:
    """(repo id, file names) as open_clip's `download_pretrained` tries them: safetensors first."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hf_hub)
    filename = filename or HF_WEIGHTS_NAME
    if filename == HF_WEIGHTS_NAME:
        return repo_id, [HF_SAFE_WEIGHTS_NAME, filename]
    if filename.endswith((".bin", ".pth")):
        return repo_id, [filename[:-4] + ".safetensors", filename]
    return repo_id, [filename]


def cached_tag_file(tag_cfg: dict[str, Any], cache_dir: str | None) -> tuple[Path | None, list[str]]:
    """The cached weights of a pretrained tag, without touching the network, and the places looked at."""
    from huggingface_hub import try_to_load_from_cache

    if tag_cfg.get("file"):
        path = Path(tag_cfg["file"])
        return (path if path.is_file() else None), [str(path)]
    looked: list[str] = []
    if tag_cfg.get("hf_hub"):
        repo_id, names = _hub_candidates(tag_cfg["hf_hub"])
        for name in names:
            looked.append(f"{repo_id}/{name} in the Hugging Face cache{f' {cache_dir}' if cache_dir else ''}")
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return Path(found), looked
        return None, looked
    # Tags without a hub copy are plain URLs, cached under their file name (open_clip's ~/.cache/clip).
    url_cache = Path(cache_dir or os.path.expanduser("~/.cache/clip"))
    path = url_cache / os.path.basename(tag_cfg["url"])
    return (path if path.is_file() else None), [str(path)]


def _tag_config(cfg: ClipConfig) -> dict[str, Any]:
    import open_clip

    tag_cfg = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained or "")
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(cfg.model)
        raise ClipWeightsMissing(
            f"open_clip knows no pretrained tag {cfg.pretrained!r} for {cfg.model} (known: {known}); "
            f"use one of those or point clip.checkpoint at a local file; {OPTIONAL_HINT}"
        )
    return tag_cfg


def _known_model(cfg: ClipConfig) -> None:
    import open_clip

    register_architecture(cfg)
    if cfg.model not in open_clip.list_models():
        raise ClipWeightsMissing(
            f"open_clip has no architecture {cfg.model!r}; use a built-in name or give clip.architecture_file; "
            f"{OPTIONAL_HINT}"
        )


def resolve_weights(cfg: ClipConfig) -> ClipWeights:
    """The local weights file for the config; `ClipWeightsMissing` says what was looked for."""
    _known_model(cfg)
    if cfg.checkpoint:
        path = Path(cfg.checkpoint)
        if not path.is_file():
            raise ClipWeightsMissing(f"CLIP checkpoint for {cfg.model} not found: {path}; {OPTIONAL_HINT}")
        return ClipWeights(cfg.model, path)
    tag_cfg = _tag_config(cfg)
    path, looked = cached_tag_file(tag_cfg, cfg.cache_dir)
    if path is None:
        raise ClipWeightsMissing(
            f"CLIP weights {cfg.model} / {cfg.pretrained} are not cached here: looked for {'; '.join(looked)}; "
            f"{FETCH_HINT}; {OPTIONAL_HINT}"
        )
    preprocess = {k: tag_cfg[k] for k in PREPROCESS_KEYS if k in tag_cfg}
    return ClipWeights(cfg.model, path, cfg.pretrained, preprocess, bool(tag_cfg.get("quick_gelu", False)))


def check_local_files(cfg: ClipConfig) -> None:
    """The heads, captioner and vocabulary the config names exist (they are never downloaded)."""
    wanted: list[tuple[str, str | None, bool]] = [
        ("clip.aesthetic_head", cfg.aesthetic_head, False),
        ("clip.captioner.path", cfg.captioner.path if cfg.captioner else None, True),
        ("clip.tags.vocabulary", cfg.tags.vocabulary if cfg.tags and isinstance(cfg.tags.vocabulary, str) else None, False),
    ]
    for key, value, is_dir in wanted:
        if value is None:
            continue
        path = Path(value)
        if not (path.is_dir() if is_dir else path.is_file()):
            kind = "folder" if is_dir else "file"
            raise ClipWeightsMissing(f"{key}: {kind} not found: {path}; copy it there, {OPTIONAL_HINT}")


def check_clip(cfg: ClipConfig) -> ClipCheck:
    """Stop now (raise `ClipWeightsMissing`) if a needed file is missing, unless the stage is optional."""
    if not cfg.enabled:
        return ClipCheck("disabled")
    try:
        weights = resolve_weights(cfg)
        check_local_files(cfg)
    except ClipWeightsMissing as e:
        if not cfg.optional:
            raise
        return ClipCheck("skipped", reason=str(e))
    return ClipCheck("ready", weights)


def fetch_weights(cfg: ClipConfig) -> Path:
    """Download and cache the configured CLIP weights (a no-op when cached); returns the local file.

    A `checkpoint` is a local file that cannot be fetched: it is only checked. Heads, captioner and tag
    vocabulary are local files too; `check_local_files` reports the missing ones.
    """
    import open_clip

    _known_model(cfg)
    if not cfg.checkpoint:
        tag_cfg = _tag_config(cfg)
        try:
            open_clip.download_pretrained(tag_cfg, cache_dir=cfg.cache_dir)
        except Exception as e:  # noqa: BLE001 - network and hub errors come in many types; name the model
            raise ClipWeightsMissing(f"could not download CLIP weights {cfg.model} / {cfg.pretrained}: {e}") from e
    # Resolve through the same lookup a run uses, so a fetch that a run could not find fails here.
    return resolve_weights(cfg).path
