"""Shared fixtures: one CPU thread, the embedded model built once per session in a temp cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Label Studio: a real server for the review tests (tests/labelstudio_fixtures.py)
pytest_plugins = ["tests.labelstudio_fixtures"]

# The machines running the suite have 2 cores shared by several jobs.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def daamset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh DAAMSET_CACHE for the session (tests never write to the user's ~/.cache)."""
    path = tmp_path_factory.mktemp("daamset-cache")
    old = os.environ.get("DAAMSET_CACHE")
    os.environ["DAAMSET_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("DAAMSET_CACHE", None)
    else:
        os.environ["DAAMSET_CACHE"] = old


@pytest.fixture(scope="session")
def embedded_pipe(daamset_cache: Path):
    """The embedded default model, loaded as a user would (CPU, float32)."""
    from pipeline.models import load_pipeline

    return load_pipeline("embedded", device="cpu")
