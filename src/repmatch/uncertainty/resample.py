"""Seeded bootstrap draws of probe rows.

Why one function: every layer and every measure of a model pair must see the *same* resamples
(so differences between cells are paired), and two runs with the same seed must draw the same
rows. Indices are sorted within a resample: a bootstrap sample is a multiset, and sorting makes
the one order-dependent measure (minibatch CKA, contiguous minibatches) well defined and
reproducible.
"""

from __future__ import annotations

import numpy as np


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) int64 row indices drawn uniformly with replacement, each row sorted ascending."""
    if n < 2 or n_boot < 1:
        raise ValueError(f"need n >= 2 probe rows and n_boot >= 1 resamples, got n={n}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.integers(0, n, size=(n_boot, n), dtype=np.int64), axis=1)


def bootstrap_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """(n_boot, n) float64 multiplicities: how often each original row occurs in each resample (rows sum to n)."""
    b = indices.shape[0]
    out = np.zeros((b, n), dtype=np.float64)
    np.add.at(out, (np.repeat(np.arange(b), indices.shape[1]), indices.ravel()), 1.0)
    return out
