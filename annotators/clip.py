"""The CLIP stage: embeddings, CLIP scores and re-captioning, once per kept image sample, after dedup.

It runs as a Ray actor pool (the model loads once per worker, in `setup`): on the GPU in the precision the
config asks (fp16 by default) when the worker has one, on CPU with `num_cpus` torch threads otherwise (a
Ray worker runs torch on one thread unless told). Each image is read from its source and decoded again,
small (JPEG draft mode at the model's input size), since rows carry paths, never pixels.

Columns (all null on rows the stage did not score: dropped, text-only, or the stage skipped):
- `clip.sim`: cosine of the image and `caption`, the caption the shard gets (what a CLIP-score threshold
  on the training pair should see); `clip.sim_original`: cosine of the image and `caption_original`.
- `caption`: the chosen caption (`annotators.recaption` has the rule); `caption_origin`: original |
  inherited | captioner | tags; `caption_candidates`: JSON list of {"text", "origin", "score", "source"}.
- `clip.model`: provenance: architecture, pretrained tag or the checkpoint's sha256, open_clip version.
- `clip.skipped`: why the stage did not run (optional stage, files missing); null when it ran.
- `clip.aesthetic` (when `aesthetic_head` is set) and the CLIP-head columns of `annotators.clip_heads`
  (`safety.nsfw_clip`, `quality.watermark`) when heads are given: plain floats for the threshold filter.
Embeddings go to the sidecar (`annotators.embeddings`).

Aesthetic head format: a state_dict of `nn.Linear` layers on the L2-normalised image embedding, read without
pickle (`torch.load(weights_only=True)` or `.safetensors`), in `annotators.clip_heads`' layout: LAION's
improved aesthetic predictor (`layers.0/2/4/6/7`, no activations, `aesthetic_activation: none`) or its
linear one (`weight`/`bias`); the raw output (about 1-10 for LAION's) is the score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import fsspec
import pyarrow as pa
import torch
from PIL import Image

from annotators.captioner import Captioner, TransformersCaptioner
from annotators.clip_config import ClipConfig, ClipWeights, check_clip
from annotators.clip_heads import ClipHeadScorer, load_head
from annotators.embeddings import EmbeddingSidecar
from annotators.recaption import (
    ORIGINAL,
    Candidate,
    TagCaptioner,
    candidates_json,
    choose_caption,
    gather_candidates,
    load_vocabulary,
)
from curation import schema as rec
from curation.commit import file_sha256
from curation.config import DecodeConfig
from curation.stage import Resources, RowStage
from filters.config import ClipHeadsConfig
from stages.analyze import has_image
from stages.decode import decode, read_bytes

AESTHETIC_COLUMN = "clip.aesthetic"
CLIP_COLUMNS: dict[str, pa.DataType] = {
    "clip.sim": pa.float32(),
    "clip.sim_original": pa.float32(),
    "clip.model": pa.string(),
    "clip.skipped": pa.string(),
    "caption_origin": pa.string(),
    "caption_candidates": pa.string(),
}
# The decoded image rides on its row from the per-row decode to the batched encode, then is popped.
IMAGE_KEY = "_clip_image"



def clip_provenance(weights: ClipWeights) -> str:
    """What made the embeddings: a tag names its weights; a local file is named by its content."""
    import open_clip

    source = f"pretrained={weights.pretrained}" if weights.pretrained else f"checkpoint_sha256={file_sha256(fsspec.filesystem('file'), str(weights.path))[0]}"
    return f"{weights.model} {source} open_clip={open_clip.__version__}"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("clip.device is cuda but this worker sees no GPU")
    return device


def resolve_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "fp16" if device == "cuda" else "fp32"
    if precision == "fp16" and device == "cpu":
        raise RuntimeError("clip.precision fp16 needs a GPU and this worker has none; use fp32 or bf16")
    return precision


class ClipEncoder:
    """An open_clip model on one device; embeddings come out L2-normalised, float32, as numpy."""

    def __init__(self, weights: ClipWeights, device: str = "cpu", precision: str = "fp32", batch_size: int = 64):
        import open_clip

        # Loading from the local file (never the tag) keeps setup offline; the tag's preprocessing and
        # activation come along explicitly, which open_clip would otherwise only apply to a tag. A weights
        # file is untrusted input: weights_only refuses pickled code, whatever open_clip's default becomes.
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            weights.model,
            pretrained=str(weights.path),
            weights_only=True,
            precision=precision,
            device=device,
            force_quick_gelu=weights.quick_gelu,
            image_mean=weights.preprocess.get("mean"),
            image_std=weights.preprocess.get("std"),
            image_interpolation=weights.preprocess.get("interpolation"),
            image_resize_mode=weights.preprocess.get("resize_mode"),
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(weights.model)
        self.input_dtype = open_clip.get_input_dtype(precision)
        self.device = device
        self.batch_size = batch_size
        size = open_clip.get_model_preprocess_cfg(model)["size"]
        self.image_side = max(size) if isinstance(size, (tuple, list)) else int(size)
        self.dim = int(open_clip.get_model_config(weights.model)["embed_dim"])
        self.provenance = clip_provenance(weights)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            pixels = torch.stack([self.preprocess(im) for im in images[start : start + self.batch_size]])
            emb = self.model.encode_image(pixels.to(self.device, dtype=self.input_dtype))
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[start : start + self.batch_size])).to(self.device)
            emb = self.model.encode_text(tokens)
            out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


class AestheticScorer:
    """The aesthetic head on image embeddings (format in the module docstring)."""

    def __init__(self, path: str | Path, dim: int, activation: str = "none"):
        self.head = load_head(path, activation=activation, output="identity")
        if self.head.layers[0].in_features != dim:
            raise ValueError(f"aesthetic head {path} takes {self.head.layers[0].in_features}-d embeddings, the CLIP model gives {dim}")

    @torch.inference_mode()
    def score(self, image_embeddings: np.ndarray) -> np.ndarray:
        return self.head(torch.as_tensor(image_embeddings, dtype=torch.float32)).numpy().astype(np.float32)


class ClipStage(RowStage):
    """Scores kept image samples with CLIP, picks their caption and writes the embeddings sidecar.

    Args:
        cfg: the stage's config (must be enabled).
        decode: the pipeline's decode limits (bytes, pixels, time) for reading each image again.
        embeddings_dir: the sidecar folder, OUT/embeddings; needed when `cfg.sidecar`.
        heads: CLIP heads (NSFW, watermark) to score from the same embeddings; None: no head columns.
        captioner: a captioner to use instead of the one `cfg.captioner` describes (loaded in setup).
    """

    name = "clip"

    def __init__(
        self,
        cfg: ClipConfig,
        decode: DecodeConfig,
        embeddings_dir: str | None = None,
        heads: ClipHeadsConfig | None = None,
        captioner: Captioner | None = None,
    ):
        super().__init__()
        if not cfg.enabled:
            raise ValueError("ClipStage needs clip.enabled; leave the stage out of the pipeline instead")
        if cfg.sidecar and embeddings_dir is None:
            raise ValueError("clip.sidecar is on but no embeddings_dir was given")
        self.cfg = cfg
        self.decode_cfg = decode
        self.embeddings_dir = embeddings_dir
        self.heads_cfg = heads
        self.heads: ClipHeadScorer | None = None
        self.captioner = captioner
        # Per instance, from the config: each task that runs it reserves these (and a GPU share when there is one).
        self.resources = Resources(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, actor=True)
        self.skip_reason: str | None = None
        self.encoder: Any = None  # a ClipEncoder after setup (tests put stand-ins here)
        self.aesthetic: AestheticScorer | None = None
        self.tagger: TagCaptioner | None = None
        self.sidecar: EmbeddingSidecar | None = None
        self.decode_side = cfg.decode_side

    @property
    def extra_columns(self) -> dict[str, pa.DataType]:
        cols = dict(CLIP_COLUMNS)
        if self.cfg.aesthetic_head:
            cols[AESTHETIC_COLUMN] = pa.float32()
        if self.heads_cfg is not None:
            cols.update({c: pa.float32() for c in ClipHeadScorer(self.heads_cfg).output_columns})
        return cols

    def setup(self) -> None:
        # Again on the worker: the driver's check says nothing about this machine's disk.
        check = check_clip(self.cfg)
        if check.state == "skipped":
            self.skip_reason = check.reason
            return
        assert check.weights is not None
        device = resolve_device(self.cfg.device)
        if device == "cpu":
            torch.set_num_threads(self.cfg.num_cpus)
        self.encoder = ClipEncoder(check.weights, device, resolve_precision(self.cfg.precision, device), self.cfg.batch_size)
        self.decode_side = self.cfg.decode_side or self.encoder.image_side
        if self.cfg.aesthetic_head:
            self.aesthetic = AestheticScorer(self.cfg.aesthetic_head, self.encoder.dim, self.cfg.aesthetic_activation)
        if self.heads_cfg is not None:
            self.heads = ClipHeadScorer(self.heads_cfg, self.encoder.encode_texts)
            self.heads.setup()
        if self.captioner is None and self.cfg.captioner is not None:
            c = self.cfg.captioner
            dtype = torch.float16 if device == "cuda" else torch.float32
            self.captioner = TransformersCaptioner(c.path, device, c.max_new_tokens, c.prompt, dtype)
        if self.cfg.tags is not None:
            t = self.cfg.tags
            self.tagger = TagCaptioner.from_encoder(load_vocabulary(t.vocabulary), self.encoder.encode_texts, t.prompt, t.top_k)
        if self.cfg.sidecar:
            assert self.embeddings_dir is not None
            self.sidecar = EmbeddingSidecar(self.embeddings_dir, self.cfg.sidecar_dtype)

    def process_row(self, row: dict[str, Any]) -> Mapping[str, Any] | None:
        """Read and decode one image; a bad file becomes the row's drop reason (through `RowStage.apply`)."""
        data = read_bytes(row, self.decode_cfg.max_bytes)
        rgb, _, _ = decode(data, self.decode_cfg.max_pixels, self.decode_cfg.timeout_s, self.decode_side)
        return {IMAGE_KEY: rgb}

    def process(self, batch: pa.Table) -> pa.Table:
        assert self.schema is not None, f"stage {self.name} was not bound to a schema"
        rows = batch.to_pylist()
        kept = [r for r in rows if r["status"] == rec.KEPT]
        if self.skip_reason is not None:
            for row in kept:
                row["clip.skipped"] = self.skip_reason
            return rec.to_table(rows, self.schema)
        for row in kept:
            if has_image(row):
                self.apply(row)
        scored = [r for r in kept if IMAGE_KEY in r]
        images = [r.pop(IMAGE_KEY) for r in scored]
        if scored:
            self.annotate(scored, images)
        return rec.to_table(rows, self.schema)

    def annotate(self, rows: list[dict[str, Any]], images: list[Image.Image]) -> None:
        """Embed, score and re-caption a batch of decoded samples in place; write their sidecar file."""
        image_emb = self.encoder.encode_images(images)
        for column, values in self.image_scores(image_emb).items():
            for row, value in zip(rows, values):
                row[column] = float(value)
        candidates = self.candidates(rows, images, image_emb)
        texts = list(dict.fromkeys(c.text for cands in candidates for c in cands))
        text_emb = self.encoder.encode_texts(texts)
        text_index = {t: i for i, t in enumerate(texts)}
        chosen_emb: list[np.ndarray | None] = []
        for row, cands, emb in zip(rows, candidates, image_emb):
            vectors = text_emb[[text_index[c.text] for c in cands]]
            sims = [float(s) for s in vectors @ emb]
            chosen = self.choose(cands, sims)
            row.update(self.caption_fields(cands, sims, chosen))
            chosen_emb.append(vectors[chosen] if chosen is not None else None)
        if self.sidecar is not None:
            self.sidecar.write([r["sample_id"] for r in rows], image_emb, chosen_emb, self.encoder.provenance)

    def image_scores(self, image_emb: np.ndarray) -> dict[str, np.ndarray]:
        scores = {}
        if self.aesthetic is not None:
            scores[AESTHETIC_COLUMN] = self.aesthetic.score(image_emb)
        if self.heads is not None:
            scores.update(self.heads.score(image_emb))
        return scores

    def candidates(self, rows: list[dict[str, Any]], images: list[Image.Image], image_emb: np.ndarray) -> list[list[Candidate]]:
        n = len(rows)
        generated: list[str | None] = list(self.captioner.caption(images)) if self.captioner else [None] * n
        by = self.captioner.name if self.captioner else None
        tagged: list[str | None] = list(self.tagger.captions(image_emb)) if self.tagger else [None] * n
        return [
            gather_candidates(row.get("caption_original"), row.get("captions_inherited"), gen, by, tags)
            for row, gen, tags in zip(rows, generated, tagged)
        ]

    def choose(self, cands: list[Candidate], sims: list[float]) -> int | None:
        if self.cfg.recaption:
            return choose_caption(cands, sims, self.cfg.margin)
        return 0 if cands and cands[0].origin == ORIGINAL else None

    def caption_fields(self, cands: list[Candidate], sims: list[float], chosen: int | None) -> dict[str, Any]:
        """The caption columns of one scored sample; `caption` changes only when another candidate wins."""
        has_original = bool(cands) and cands[0].origin == ORIGINAL
        fields: dict[str, Any] = {
            "clip.model": self.encoder.provenance,
            "clip.sim_original": sims[0] if has_original else None,
            "caption_candidates": candidates_json(cands, sims) if cands else None,
        }
        if chosen is None:
            return fields
        fields.update({"clip.sim": sims[chosen], "caption_origin": cands[chosen].origin})
        # The original keeps its exact text; candidates are whitespace-stripped.
        if cands[chosen].origin != ORIGINAL:
            fields["caption"] = cands[chosen].text
        return fields
