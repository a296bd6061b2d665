"""Shared fixtures: the real default dataset (small), and a tiny trained network."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mnist_splits():
    from repmatch.data import load_splits

    return load_splits({"name": "mnist5k", "split_seed": 0, "n_test": 1000, "n_probe": 100})
