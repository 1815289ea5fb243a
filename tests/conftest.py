"""Shared fixtures: one CPU thread, the shipped embedded model loaded once per session."""

from __future__ import annotations

import pytest
import torch

# Label Studio: a real server for the review tests (tests/labelstudio_fixtures.py)
pytest_plugins = ["tests.labelstudio_fixtures"]

# The machines running the suite have 2 cores shared by several jobs.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedded_pipe():
    """The embedded default model, loaded as a user would (CPU, float32)."""
    from pipeline.models import load_pipeline

    return load_pipeline("embedded", device="cpu")
