"""Loading is safe: weights and configs are untrusted input, and no loader of ours runs code they carry.

A checkpoint whose pickle would call `os.system` (to create a marker file) is refused by every loader of
weights in the repo, YAML tags that build Python objects are refused by both config loaders, and a guard
test keeps unsafe loading calls out of the repo's own code.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
from pathlib import Path

import open_clip
import pytest
import torch

from annotators.clip import ClipEncoder
from annotators.clip_config import ClipWeights
from annotators.clip_heads import load_head
from curation.config import ConfigError, load_config
from model import NeoConfig, NeoUnify
from model.checkpoint import load_checkpoint
from model.train.checkpointing import load_training_checkpoint
from model.train.config import load_train_config

REPO = Path(__file__).resolve().parent.parent
# Folders that hold no code of ours: the virtual environment, run outputs, caches, git's own files.
NOT_OURS = {"runs", "__pycache__", "tmp"}
TINY_CLIP = "tiny-safety-clip"
TINY_CLIP_ARCHITECTURE = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


class RunsShellCommand:
    """Pickles as a call to os.system: unpickling it runs the command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


@pytest.fixture
def evil_checkpoint(tmp_path: Path, marker: Path) -> Path:
    """A torch file shaped like our checkpoints whose pickle creates `marker` when loaded unsafely."""
    path = tmp_path / "evil.pt"
    payload = {"config": {}, "state_dict": {"weight": RunsShellCommand(f"touch {shlex.quote(str(marker))}")}, "extra": {}}
    torch.save(payload, path)
    return path


def test_the_evil_checkpoint_does_run_code_when_loaded_unsafely(evil_checkpoint: Path, marker: Path):
    """The refusals below mean something only if the payload works."""
    torch.load(evil_checkpoint, weights_only=False)
    assert marker.exists()


def test_model_checkpoint_loader_refuses_pickled_code(evil_checkpoint: Path, marker: Path):
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_checkpoint(evil_checkpoint)
    assert not marker.exists()


def test_training_checkpoint_loader_refuses_pickled_code(evil_checkpoint: Path, marker: Path):
    model = NeoUnify(NeoConfig.preset("tiny"))
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_training_checkpoint(evil_checkpoint, model)
    assert not marker.exists()


def test_clip_head_loader_refuses_pickled_code(evil_checkpoint: Path, marker: Path):
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        load_head(evil_checkpoint)
    assert not marker.exists()


def test_clip_weights_loader_refuses_pickled_code(tmp_path: Path, evil_checkpoint: Path, marker: Path):
    architecture = tmp_path / f"{TINY_CLIP}.json"
    architecture.write_text(json.dumps(TINY_CLIP_ARCHITECTURE))
    open_clip.add_model_config(architecture)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        ClipEncoder(ClipWeights(TINY_CLIP, evil_checkpoint))
    assert not marker.exists()


def test_captioner_loader_refuses_pickled_code(tmp_path: Path, evil_checkpoint: Path, marker: Path):
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipImageProcessor,
        BlipProcessor,
    )

    from annotators.captioner import TransformersCaptioner

    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n")
    processor = BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=BertTokenizer(str(tmp_path / "vocab.txt")))
    folder = tmp_path / "captioner"
    processor.save_pretrained(folder)
    small = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 1}
    text, vision = {"vocab_size": 6, **small}, {"image_size": 32, "patch_size": 16, **small}
    BlipConfig(text_config=text, vision_config=vision).save_pretrained(folder)
    evil_checkpoint.rename(folder / "pytorch_model.bin")  # transformers' name for pickled weights
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        TransformersCaptioner(folder)
    assert not marker.exists()


def evil_yaml(tmp_path: Path, marker: Path, body: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"{body}\nhook: !!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(marker)))}]\n")
    return path


def test_pipeline_config_refuses_python_tags(tmp_path: Path, marker: Path):
    path = evil_yaml(tmp_path, marker, f"sources: [{{name: web, path: {tmp_path}}}]\noutput: {tmp_path / 'out'}")
    with pytest.raises(ConfigError, match="python/object/apply"):
        load_config(path)
    assert not marker.exists()


def test_train_config_refuses_python_tags(tmp_path: Path, marker: Path):
    path = evil_yaml(tmp_path, marker, f"data: {tmp_path}\noutput: {tmp_path / 'out'}")
    with pytest.raises(ConfigError, match="python/object/apply"):
        load_train_config(path)
    assert not marker.exists()


# ---- the guard: no unsafe loading call in the repo's own code ---------------------------------------------


def our_python_files() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in NOT_OURS and not d.endswith(".egg-info")]
        found.extend(Path(folder) / f for f in files if f.endswith(".py"))
    return sorted(found)


def dotted(node: ast.expr) -> str:
    """`torch.load` for the call target `torch.load`; '' for anything that is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def keyword_is(call: ast.Call, name: str, allowed: tuple[object, ...]) -> bool:
    for k in call.keywords:
        if k.arg == name:
            value = k.value.value if isinstance(k.value, ast.Constant) else dotted(k.value)
            return value in allowed
    return False


def unsafe_call(call: ast.Call) -> str | None:
    """Why this call can run code from the data it loads (or write outside where it should), or None."""
    name = dotted(call.func)
    method = name.rsplit(".", 1)[-1]
    if name == "torch.load" and not keyword_is(call, "weights_only", (True,)):
        return "torch.load without weights_only=True"
    if name.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "marshal", "shelve") and method.startswith(("load", "open")):
        return f"{name} unpickles code"
    if name in ("yaml.unsafe_load", "yaml.full_load") or (
        name == "yaml.load" and not keyword_is(call, "Loader", ("yaml.SafeLoader", "yaml.CSafeLoader"))
    ):
        return f"{name} without a safe loader"
    if name in ("np.load", "numpy.load") and keyword_is(call, "allow_pickle", (True,)):
        return "np.load with allow_pickle=True"
    if name in ("eval", "exec"):
        return f"{name} of a string"
    if method in ("extractall", "extract") and isinstance(call.func, ast.Attribute):
        return f"{method} writes archive members to the paths they name"
    return None


def test_repo_code_has_no_unsafe_loading_calls():
    files = our_python_files()
    assert REPO / "stages" / "decode.py" in files and not any(".venv" in p.parts for p in files)
    found = []
    # This file's one unsafe load is the control showing that the evil checkpoint works.
    for path in (p for p in files if p != Path(__file__).resolve()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Call) and (why := unsafe_call(node)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {why}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "code",
    [
        "torch.load(p)",
        "torch.load(p, weights_only=False)",
        "pickle.loads(b)",
        "yaml.load(text)",
        "yaml.load(text, Loader=yaml.Loader)",
        "yaml.unsafe_load(text)",
        "np.load(p, allow_pickle=True)",
        "eval(s)",
        "tar.extractall(out)",
    ],
)
def test_the_guard_catches_each_unsafe_call(code: str):
    call = ast.parse(code).body[0].value
    assert unsafe_call(call)


@pytest.mark.parametrize(
    "code",
    ["torch.load(p, weights_only=True)", "yaml.safe_load(t)", "yaml.load(t, Loader=yaml.SafeLoader)",
     "np.load(p)", "model.eval()", "json.loads(s)"],
)  # fmt: skip
def test_the_guard_lets_safe_calls_pass(code: str):
    call = ast.parse(code).body[0].value
    assert unsafe_call(call) is None
