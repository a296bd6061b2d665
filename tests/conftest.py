"""Shared fixtures: the real default dataset (small split), one torch thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The test command runs two pytest-xdist workers side by side (pyproject's addopts) on 2-core machines.
# Each worker and the jobs it starts get one BLAS/OpenMP thread, or two workers that each spawn
# a thread per core oversubscribe the CPU, and spinning OpenMP threads crawl. Set before any test
# module imports numpy or torch; a value the caller exported wins.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def mnist_splits():
    from repmatch.data import load_splits
    from repmatch.settings import section_settings

    return load_splits(section_settings("data", {"name": "mnist5k", "split_seed": 0, "n_test": 1000, "n_probe": 100}))


@pytest.fixture(scope="session")
def mnist_subset(mnist_splits):
    """``mnist_subset(n_train, n_test)``: that many random digits of each split, in split order (seeded).

    The split files are sorted by label, so a prefix would hold a few classes only."""

    def take(n_train: int, n_test: int):
        import numpy as np

        rng = np.random.default_rng(0)
        train = mnist_splits.train.subset(np.sort(rng.permutation(len(mnist_splits.train))[:n_train]))
        test = mnist_splits.test.subset(np.sort(rng.permutation(len(mnist_splits.test))[:n_test]))
        return train, test

    return take


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: the CPU is shared (2 cores), and oversubscribed OpenMP threads crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
