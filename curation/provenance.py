"""What a run writes next to its outputs so it can be reproduced: resolved config, version, git commit."""

from __future__ import annotations

import platform
import posixpath
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import fsspec

from curation.commit import write_json_atomically
from curation.config import PipelineConfig, dump_config

PACKAGE = "neo-curation"


def package_version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit(repo_dir: Path | None = None) -> str | None:
    """The commit of the code that ran (with '-dirty' if it had local changes); None outside a git checkout."""
    here = repo_dir or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in ("ray", "pyarrow", "pillow", "webdataset", "datasketch", "imagehash", "torch", "open_clip_torch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions}


def write_json(out_root: str, name: str, data: dict[str, Any]) -> None:
    write_json_atomically(posixpath.join(out_root, name), data)


def write_config(out_root: str, cfg: PipelineConfig) -> None:
    fs, _ = fsspec.core.url_to_fs(out_root)
    with fs.open(posixpath.join(out_root, "config.yaml"), "w") as f:
        f.write(dump_config(cfg))
