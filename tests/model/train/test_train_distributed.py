"""Two data-parallel CPU processes (torchrun, gloo) train like one process on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_settings
from train_helpers import losses, read_metrics, write_config

REPO = Path(__file__).resolve().parents[3]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(curated, tmp_path):
    # A batch of 5 splits 3 + 2, and the short last batches leave a rank with fewer (or no) samples.
    settings = dict(steps=8, batch_size=5)
    single = write_config(tmp_path / "one.yaml", **tiny_settings(curated, output=str(tmp_path / "one"), **settings))
    double = write_config(tmp_path / "two.yaml", **tiny_settings(curated, output=str(tmp_path / "two"), **settings))
    _run([sys.executable, "-m", "model.train", str(single)])
    _run([str(TORCHRUN), "--nproc_per_node", "2", "--master_port", "29531", "-m", "model.train", str(double)])

    one, two = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["samples"] for r in one] == [r["samples"] for r in two]
    assert losses(two) == pytest.approx(losses(one), rel=1e-4, abs=1e-6)
    for key in ("ce", "mse"):
        assert [key in r for r in two] == [key in r for r in one]
        present = [(a[key], b[key]) for a, b in zip(one, two) if key in a]
        assert [b for _, b in present] == pytest.approx([a for a, _ in present], rel=1e-4, abs=1e-6)
