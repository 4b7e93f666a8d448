"""Shared fixtures: the tiny preset, its sequence builder and a seeded tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from model import NeoConfig, NeoUnify, SequenceBuilder

HERE = Path(__file__).resolve().parent


@pytest.fixture
def config() -> NeoConfig:
    return NeoConfig.preset("tiny")


@pytest.fixture
def builder(config: NeoConfig) -> SequenceBuilder:
    return SequenceBuilder(config)


@pytest.fixture
def tiny_model(config: NeoConfig) -> NeoUnify:
    torch.manual_seed(0)
    return NeoUnify(config)


@pytest.fixture(autouse=True)
def single_cpu_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tiny-model ops gain nothing from a second thread, and on a shared 2-core machine two OpenMP
    threads wait on each other: one thread keeps these tests fast and their timing stable.
    Only for the tests in this folder; subfolders (the trainer's tests) keep their own settings."""
    if request.path.parent != HERE:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
