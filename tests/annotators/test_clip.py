"""The CLIP stage with a tiny randomly initialised open_clip model, loaded through the real code path: a custom
architecture file registered with open_clip and a state_dict checkpoint on disk (no CLIP weights ship in a
package, and the tests run offline)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pytest
import torch
from PIL import Image
from torch import nn

from annotators.clip import AESTHETIC_COLUMN, ClipEncoder, ClipStage
from annotators.clip_config import ClipConfig, ClipWeightsMissing, check_clip, fetch_weights, resolve_weights
from annotators.embeddings import read_embeddings
from annotators.recaption import Candidate
from curation import schema as rec
from curation.config import DecodeConfig
from stages.dedup_apply import ApplyDedupStage
from test_recaption import tiny_blip  # noqa: F401 - a fixture: a tiny BLIP captioner saved to a folder

TINY = "tiny-test-clip"
ARCHITECTURE = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
DIM = ARCHITECTURE["embed_dim"]
HUB_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> tuple[Path, Path]:
    """(architecture json, checkpoint) of a tiny CLIP with seeded random weights."""
    folder = tmp_path_factory.mktemp("tiny_clip")
    architecture = folder / f"{TINY}.json"
    architecture.write_text(json.dumps(ARCHITECTURE))
    open_clip.add_model_config(architecture)
    torch.manual_seed(0)
    checkpoint = folder / "tiny_clip.pt"
    torch.save(open_clip.create_model(TINY).state_dict(), checkpoint)
    return architecture, checkpoint


def tiny_config(files: tuple[Path, Path], **overrides) -> ClipConfig:
    architecture, checkpoint = files
    # num_cpus: setup sets torch's thread count to it; keep this test process's own.
    fields = dict(enabled=True, model=TINY, architecture_file=str(architecture), checkpoint=str(checkpoint),
                  pretrained=None, device="cpu", batch_size=4, margin=0.0, num_cpus=torch.get_num_threads())  # fmt: skip
    return ClipConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def encoder(tiny_files) -> ClipEncoder:
    return ClipEncoder(resolve_weights(tiny_config(tiny_files)), batch_size=4)


def noise_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def record(key: str, caption: str | None, image: Image.Image | None = None, **fields) -> dict:
    data = png_bytes(image) if image is not None else None
    return rec.new_record("test", key, 1, caption=caption, caption_original=caption, image_bytes=data, **fields)


def bound(stage: ClipStage) -> ClipStage:
    return stage.bind(rec.record_schema({**ApplyDedupStage.output_columns, **stage.extra_columns}))


def run_stage(stage: ClipStage, rows: list[dict]) -> list[dict]:
    out = stage(rec.to_table(rows, stage.schema)).to_pylist()
    return sorted(out, key=lambda r: r["source_key"])


# ---- the encoder --------------------------------------------------------------------------------------


def test_batched_embeddings_match_one_by_one(tiny_files, encoder):
    images = [noise_image(i) for i in range(6)]
    batched = encoder.encode_images(images)  # batches of 4 and 2
    single = np.concatenate([encoder.encode_images([im]) for im in images])
    assert batched.shape == (6, DIM)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)
    texts = ["a dog", "a red car on a road", "x"]
    np.testing.assert_allclose(encoder.encode_texts(texts), np.concatenate([encoder.encode_texts([t]) for t in texts]), atol=1e-5)


def test_embeddings_are_deterministic_and_come_from_the_checkpoint(tiny_files, encoder):
    image = noise_image(7)
    again = ClipEncoder(resolve_weights(tiny_config(tiny_files)), batch_size=1)
    np.testing.assert_array_equal(encoder.encode_images([image]), again.encode_images([image]))
    # The saved model (seed 0) gives the same embedding, one with other random weights does not.
    for seed, same in ((0, True), (1, False)):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY).eval()
        with torch.inference_mode():
            theirs = model.encode_image(encoder.preprocess(image)[None], normalize=True).numpy()
        assert np.allclose(encoder.encode_images([image]), theirs, atol=1e-5) == same


def test_provenance_names_architecture_checkpoint_hash_and_open_clip_version(tiny_files, encoder):
    _, checkpoint = tiny_files
    assert encoder.provenance == f"{TINY} checkpoint_sha256={hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()} open_clip={open_clip.__version__}"
    assert encoder.image_side == 32 and encoder.dim == DIM


# ---- missing weights ----------------------------------------------------------------------------------


def test_missing_checkpoint_stops_the_run_naming_the_file(tiny_files, tmp_path):
    missing = tmp_path / "nowhere" / "clip.pt"
    cfg = tiny_config(tiny_files, checkpoint=str(missing))
    with pytest.raises(ClipWeightsMissing, match="clip.optional") as err:
        check_clip(cfg)
    assert str(missing) in str(err.value)
    with pytest.raises(ClipWeightsMissing):  # and again on the worker, in setup
        bound(ClipStage(cfg, DecodeConfig(), str(tmp_path / "emb"))).setup()


def test_uncached_pretrained_tag_says_where_it_looked_and_how_to_fetch(tmp_path):
    cfg = ClipConfig(enabled=True, model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    with pytest.raises(ClipWeightsMissing) as err:
        check_clip(cfg)
    message = str(err.value)
    assert f"{HUB_REPO}/open_clip_model.safetensors" in message and f"{HUB_REPO}/open_clip_pytorch_model.bin" in message
    assert "curation fetch-models" in message and str(tmp_path) in message


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ClipWeightsMissing, match="laion2b_s34b_b79k"):
        check_clip(ClipConfig(enabled=True, model="ViT-B-32", pretrained="no_such_tag"))


def hub_cache_file(cache_dir: Path, repo: str, name: str, data: bytes = b"weights") -> Path:
    """A file laid out as huggingface_hub caches it (refs/main -> snapshots/<commit>/name)."""
    commit = "0" * 40
    root = cache_dir / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / name
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_cached_tag_weights_are_found_offline_with_the_tags_preprocessing(tmp_path):
    cached = hub_cache_file(tmp_path, HUB_REPO, "open_clip_model.safetensors")
    cfg = ClipConfig(enabled=True, model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    weights = resolve_weights(cfg)
    assert weights.path == cached and weights.pretrained == "laion2b_s34b_b79k"
    assert weights.preprocess["interpolation"] == "bicubic" and not weights.quick_gelu
    assert check_clip(cfg).summary() == "ready (ViT-B-32 laion2b_s34b_b79k)"
    assert Path(fetch_weights(cfg)) == cached  # HF_HUB_OFFLINE: the cache answers, nothing is downloaded


def test_fetch_without_network_fails_naming_the_model(tmp_path):
    cfg = ClipConfig(enabled=True, model="ViT-B-32", pretrained="laion2b_s34b_b79k", cache_dir=str(tmp_path))
    with pytest.raises(ClipWeightsMissing, match="could not download CLIP weights ViT-B-32 / laion2b_s34b_b79k"):
        fetch_weights(cfg)


def test_optional_stage_with_missing_weights_is_skipped_and_says_so(tiny_files, tmp_path):
    cfg = tiny_config(tiny_files, checkpoint=str(tmp_path / "missing.pt"), optional=True)
    check = check_clip(cfg)
    assert check.state == "skipped" and check.summary().startswith("skipped (CLIP checkpoint")
    stage = bound(ClipStage(cfg, DecodeConfig(), str(tmp_path / "emb")))
    (row,) = run_stage(stage, [record("a", "a cat", noise_image(0))])
    assert row["status"] == rec.KEPT and row["caption"] == "a cat"
    assert "missing.pt" in row["clip.skipped"]
    assert row["clip.sim"] is None and row["clip.model"] is None and row["caption_origin"] is None
    assert not (tmp_path / "emb").exists()


def test_missing_captioner_or_head_file_is_missing_weights_too(tiny_files, tmp_path):
    with pytest.raises(ClipWeightsMissing, match="clip.aesthetic_head: file not found"):
        check_clip(tiny_config(tiny_files, aesthetic_head=str(tmp_path / "head.pth")))
    with pytest.raises(ClipWeightsMissing, match="clip.captioner.path: folder not found"):
        check_clip(tiny_config(tiny_files, captioner={"path": str(tmp_path / "blip")}))


def test_config_refuses_inconsistent_settings(tiny_files):
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        ClipConfig(device="cpu", precision="fp16")
    with pytest.raises(ValueError, match="needs pretrained"):
        ClipConfig(enabled=True, pretrained=None)
    with pytest.raises(ValueError, match="stem"):
        tiny_config(tiny_files, model="ViT-B-32")
    with pytest.raises(ValueError, match="Extra inputs"):
        ClipConfig.model_validate({"threshold": 0.3})


# ---- the stage ----------------------------------------------------------------------------------------


def test_stage_scores_kept_images_and_writes_the_sidecar(tiny_files, encoder, tmp_path):
    emb_dir = tmp_path / "embeddings"
    stage = bound(ClipStage(tiny_config(tiny_files), DecodeConfig(), str(emb_dir)))
    images = [noise_image(i) for i in range(5)]
    rows = [record(f"img{i}", f"caption {i}", im) for i, im in enumerate(images)]
    rows.append(record("text", "only text"))  # text-only: nothing to score
    rows.append(rec.new_record("test", "broken", 1, caption="x", image_bytes=b"not an image"))
    rows.append(record("gone", "y", images[0], status=rec.DROPPED, drop_stage="dedup", drop_reason="dup_exact"))
    out = {r["source_key"]: r for r in run_stage(stage, rows)}

    assert (out["broken"]["status"], out["broken"]["drop_stage"], out["broken"]["drop_reason"]) == ("dropped", "clip", "not_an_image")
    for key in ("text", "gone", "broken"):
        assert out[key]["clip.sim"] is None and out[key]["clip.model"] is None
    image_emb = encoder.encode_images(images)
    text_emb = encoder.encode_texts([f"caption {i}" for i in range(5)])
    for i in range(5):
        row = out[f"img{i}"]
        # margin 0 and one candidate each: the original stays, and both scores are its cosine.
        assert row["caption"] == f"caption {i}" and row["caption_origin"] == "original"
        assert row["clip.sim"] == pytest.approx(float(image_emb[i] @ text_emb[i]), abs=1e-5)
        assert row["clip.sim_original"] == row["clip.sim"]
        assert row["clip.model"] == encoder.provenance and row["clip.skipped"] is None
        assert json.loads(row["caption_candidates"]) == [
            {"text": f"caption {i}", "origin": "original", "score": round(row["clip.sim"], 6), "source": None}
        ]

    sidecar = read_embeddings(str(emb_dir))
    ids = sorted(out[f"img{i}"]["sample_id"] for i in range(5))
    assert sidecar["sample_id"].to_pylist() == ids
    assert sidecar.schema.field("image_embedding").type == pa.list_(pa.float16(), DIM)
    assert set(sidecar["clip_model"].to_pylist()) == {encoder.provenance}
    by_id = {out[f"img{i}"]["sample_id"]: i for i in range(5)}
    order = [by_id[s] for s in ids]
    stored_image = np.asarray(sidecar["image_embedding"].to_pylist(), dtype=np.float32)
    stored_text = np.asarray(sidecar["text_embedding"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(stored_image, image_emb[order], atol=1e-3)  # float16 storage
    np.testing.assert_allclose(stored_text, text_emb[order], atol=1e-3)


def test_rerunning_a_batch_rewrites_the_same_sidecar_file(tiny_files, tmp_path):
    emb_dir = tmp_path / "embeddings"
    stage = bound(ClipStage(tiny_config(tiny_files, sidecar_dtype="float32"), DecodeConfig(), str(emb_dir)))
    rows = [record(f"img{i}", "a photo", noise_image(i)) for i in range(3)]
    first = run_stage(stage, rows)
    files = sorted(p.name for p in emb_dir.iterdir())
    second = run_stage(stage, list(reversed(rows)))
    assert sorted(p.name for p in emb_dir.iterdir()) == files and len(files) == 1
    assert [r["clip.sim"] for r in first] == [r["clip.sim"] for r in second]


class FixedEncoder:
    """Stands in for ClipEncoder with embeddings chosen so that every cosine is known exactly."""

    provenance = "fixed-test-encoder"
    dim = 2

    def __init__(self, text_scores: dict[str, float]):
        self.text_scores = text_scores

    def encode_images(self, images) -> np.ndarray:
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(images), 1))

    def encode_texts(self, texts) -> np.ndarray:
        # A unit vector whose cosine with the image [1, 0] is the text's score.
        s = np.array([self.text_scores[t] for t in texts], dtype=np.float32)
        return np.stack([s, np.sqrt(1 - s**2)], axis=1).reshape(-1, 2)


class FixedCaptioner:
    name = "fixed-captioner"

    def __init__(self, captions: list[str]):
        self.captions = captions

    def caption(self, images) -> list[str]:
        return self.captions[: len(images)]


def test_stage_recaptions_by_the_margin_rule(tiny_files, tmp_path):
    scores = {"orig a": 0.20, "copy a": 0.30, "gen a": 0.26, "orig b": 0.25, "copy b": 0.28, "gen b": 0.10}
    stage = bound(ClipStage(tiny_config(tiny_files, margin=0.05, sidecar=False), DecodeConfig(),
                            captioner=FixedCaptioner(["gen a", "gen b"])))  # fmt: skip
    stage.ensure_setup()
    stage.encoder = FixedEncoder(scores)
    inherited = lambda text: json.dumps([{"sample_id": "s0", "source": "web", "caption": text}])  # noqa: E731
    rows = [record("a", "orig a", noise_image(0), captions_inherited=inherited("copy a")),
            record("b", "orig b", noise_image(1), captions_inherited=inherited("copy b"))]  # fmt: skip
    a, b = run_stage(stage, rows)
    # a: the inherited caption beats the original by 0.10 >= 0.05, and beats the captioner's.
    assert (a["caption"], a["caption_origin"], a["caption_original"]) == ("copy a", "inherited", "orig a")
    assert a["clip.sim"] == pytest.approx(0.30, abs=1e-6) and a["clip.sim_original"] == pytest.approx(0.20, abs=1e-6)
    assert [(c["origin"], c["source"]) for c in json.loads(a["caption_candidates"])] == [
        ("original", None), ("inherited", "s0"), ("captioner", "fixed-captioner")]  # fmt: skip
    # b: the best other candidate gains only 0.03 < 0.05: the original stays.
    assert (b["caption"], b["caption_origin"]) == ("orig b", "original")
    assert b["clip.sim"] == pytest.approx(0.25, abs=1e-6)


def test_recaption_off_keeps_the_original_but_lists_scored_candidates(tiny_files):
    stage = bound(ClipStage(tiny_config(tiny_files, recaption=False, sidecar=False), DecodeConfig(),
                            captioner=FixedCaptioner(["much better"])))  # fmt: skip
    stage.ensure_setup()
    stage.encoder = FixedEncoder({"weak": 0.1, "much better": 0.9})
    (row,) = run_stage(stage, [record("a", "weak", noise_image(0))])
    assert (row["caption"], row["caption_origin"]) == ("weak", "original")
    assert [c["score"] for c in json.loads(row["caption_candidates"])] == pytest.approx([0.1, 0.9], abs=1e-6)


def test_uncaptioned_image_gets_its_best_candidate(tiny_files):
    stage = bound(ClipStage(tiny_config(tiny_files, margin=0.5, sidecar=False), DecodeConfig(),
                            captioner=FixedCaptioner(["generated"])))  # fmt: skip
    stage.ensure_setup()
    stage.encoder = FixedEncoder({"generated": 0.2})
    (row,) = run_stage(stage, [record("a", None, noise_image(0))])
    assert (row["caption"], row["caption_origin"], row["clip.sim_original"]) == ("generated", "captioner", None)


class LaionAestheticMLP(nn.Module):
    """The layout of LAION's improved aesthetic predictor (Linear layers with Dropout between), sized for DIM."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(DIM, 16), nn.Dropout(0.2), nn.Linear(16, 8), nn.Dropout(0.2),
                                    nn.Linear(8, 4), nn.Dropout(0.1), nn.Linear(4, 2), nn.Linear(2, 1))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def test_aesthetic_head_scores_the_image_embedding(tiny_files, encoder, tmp_path):
    torch.manual_seed(3)
    mlp = LaionAestheticMLP().eval()
    head_path = tmp_path / "aesthetic.pth"
    torch.save(mlp.state_dict(), head_path)
    stage = bound(ClipStage(tiny_config(tiny_files, aesthetic_head=str(head_path), sidecar=False), DecodeConfig()))
    assert stage.extra_columns[AESTHETIC_COLUMN] == pa.float32()
    images = [noise_image(i) for i in range(3)]
    out = run_stage(stage, [record(f"img{i}", "c", im) for i, im in enumerate(images)])
    with torch.inference_mode():
        expected = mlp(torch.from_numpy(encoder.encode_images(images))).squeeze(-1).numpy()
    np.testing.assert_allclose([r[AESTHETIC_COLUMN] for r in out], expected, rtol=1e-4, atol=1e-6)


def test_aesthetic_head_for_another_embedding_size_is_refused(tiny_files, tmp_path):
    head_path = tmp_path / "linear.pth"
    torch.save(nn.Linear(768, 1).state_dict(), head_path)
    stage = bound(ClipStage(tiny_config(tiny_files, aesthetic_head=str(head_path), sidecar=False), DecodeConfig()))
    with pytest.raises(ValueError, match="768-d embeddings, the CLIP model gives 32"):
        stage.setup()


def test_columns_follow_the_config(tiny_files):
    plain = ClipStage(tiny_config(tiny_files, sidecar=False), DecodeConfig())
    assert AESTHETIC_COLUMN not in plain.extra_columns
    assert {"clip.sim", "clip.sim_original", "clip.model", "clip.skipped", "caption_origin", "caption_candidates"} <= set(plain.extra_columns)
    with pytest.raises(ValueError, match="embeddings_dir"):
        ClipStage(tiny_config(tiny_files), DecodeConfig())
    with pytest.raises(ValueError, match="clip.enabled"):
        ClipStage(tiny_config(tiny_files, enabled=False), DecodeConfig())


def test_candidates_are_gathered_in_rule_order(tiny_files):
    stage = bound(ClipStage(tiny_config(tiny_files, sidecar=False), DecodeConfig(), captioner=FixedCaptioner(["gen"])))
    stage.ensure_setup()
    row = record("a", "orig", captions_inherited=json.dumps([{"sample_id": "s1", "source": "x", "caption": "copy"}]))
    (cands,) = stage.candidates([row], [noise_image(0)], np.zeros((1, DIM), np.float32))
    assert cands == [Candidate("orig", "original"), Candidate("copy", "inherited", "s1"), Candidate("gen", "captioner", "fixed-captioner")]


def test_configured_captioner_and_tags_become_scored_candidates(tiny_files, tiny_blip):
    cfg = tiny_config(tiny_files, sidecar=False, captioner={"path": str(tiny_blip), "max_new_tokens": 4},
                      tags={"vocabulary": ["dog", "cat", "tree", "car"], "top_k": 2})  # fmt: skip
    stage = bound(ClipStage(cfg, DecodeConfig()))
    out = run_stage(stage, [record(f"img{i}", "a photo", noise_image(i)) for i in range(3)])
    for row in out:
        candidates = json.loads(row["caption_candidates"])
        assert [c["origin"] for c in candidates] == ["original", "captioner", "tags"]
        assert candidates[1]["source"] == f"{tiny_blip.name} (blip)"
        assert len(candidates[2]["text"].split(", ")) == 2
        best = max(candidates, key=lambda c: c["score"])
        expected = best if best["score"] > candidates[0]["score"] + 1e-6 else candidates[0]
        assert (row["caption"], row["caption_origin"]) == (expected["text"], expected["origin"])


@pytest.mark.slow
def test_stage_runs_as_a_ray_actor_pool(ray_session, tiny_files, tmp_path):
    """The worker loads the model in setup, registering the architecture file in its own process."""
    import ray.data

    from curation.ray_adapter import map_stage

    emb_dir = tmp_path / "embeddings"
    stage = bound(ClipStage(tiny_config(tiny_files), DecodeConfig(), str(emb_dir)))
    rows = [record(f"img{i}", f"caption {i}", noise_image(i)) for i in range(6)]
    ds = ray.data.from_arrow(rec.to_table(rows, stage.schema))
    out = map_stage(ds, stage, batch_size=4, actors=1).take_all()
    assert len(out) == 6 and all(r["clip.sim"] is not None and r["clip.model"].startswith(TINY) for r in out)
    assert sorted(read_embeddings(str(emb_dir))["sample_id"].to_pylist()) == sorted(r["sample_id"] for r in rows)
