"""Shared fixtures: test data paths and one embedded Ray session for the tests that need it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
SHARED = TESTS.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def bad_images_dir() -> Path:
    return DATA / "bad_images"


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session: starting Ray costs seconds each time."""
    import ray

    from curation.config import RayConfig
    from curation.ray_adapter import ray_session as session

    with session(RayConfig(num_cpus=2, progress="off")):
        yield ray
