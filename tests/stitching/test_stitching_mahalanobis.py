"""Mahalanobis OOD scores: variance floor (dead channels count), two-sided reading, class-conditional."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repmatch.stitching.ood_metrics import auroc, separability
from repmatch.stitching.scores import (
    ClassMoments,
    class_mahalanobis_per_sample,
    class_whitener,
    gaussian_whitener,
    mahalanobis_per_sample,
)

F64 = torch.float64


def _maps_with_dead_channel(n: int, seed: int) -> np.ndarray:
    """(n, 4, 3, 3) ReLU-like maps whose channel 2 is exactly 0 everywhere (a dead channel)."""
    rng = np.random.default_rng(seed)
    h = np.maximum(rng.normal(size=(n, 4, 3, 3)) @ np.eye(3) + 0.5, 0.0)
    h[:, 2] = 0.0
    return h


def _moments(h: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    rows = h.transpose(0, 2, 3, 1).reshape(-1, h.shape[1])
    return torch.from_numpy(rows.mean(0)), torch.from_numpy(np.cov(rows.T, bias=True))


def test_activated_dead_channel_scores_higher_than_the_real_map():
    train, test = _maps_with_dead_channel(500, 0), _maps_with_dead_channel(50, 1)
    mean, cov = _moments(train)
    stitched = test.copy()
    stitched[:, 2] += 100.0  # the stitch writes into a channel B never uses
    real_t, stitched_t = torch.from_numpy(test), torch.from_numpy(stitched)
    w, c = gaussian_whitener(mean, cov, 0.01)
    real_s, stitched_s = mahalanobis_per_sample(real_t, w, c), mahalanobis_per_sample(stitched_t, w, c)
    assert (stitched_s > real_s + 1e3).all()  # 100^2 / floor: by far the most atypical
    assert auroc(stitched_s.numpy(), real_s.numpy()) == 1.0
    # the pseudo-inverse rule (no floor) drops the dead direction: the activated channel is invisible
    w0, c0 = gaussian_whitener(mean, cov, 0.0)
    torch.testing.assert_close(mahalanobis_per_sample(stitched_t, w0, c0), mahalanobis_per_sample(real_t, w0, c0))


def test_floored_whitener_matches_naive_inverse_of_singular_covariance():
    train = _maps_with_dead_channel(400, 2)
    mean, cov = _moments(train)
    assert np.linalg.matrix_rank(cov.numpy()) == 3
    shrink = 0.05
    prec = np.linalg.inv(cov.numpy() + shrink * np.trace(cov.numpy()) / 4 * np.eye(4))
    h = np.random.default_rng(3).normal(size=(5, 4, 3, 3))
    got = mahalanobis_per_sample(torch.from_numpy(h), *gaussian_whitener(mean, cov, shrink)).numpy()
    m = mean.numpy()
    naive = [np.mean([(h[n, :, i, j] - m) @ prec @ (h[n, :, i, j] - m) for i in range(3) for j in range(3)]) for n in range(5)]
    np.testing.assert_allclose(got, naive, rtol=1e-8)
    # a wholly constant layer: the floor is absolute, the score finite
    w, c = gaussian_whitener(torch.zeros(3, dtype=F64), torch.zeros(3, 3, dtype=F64), 0.01)
    np.testing.assert_allclose(mahalanobis_per_sample(torch.ones(2, 3, dtype=F64), w, c).numpy(), [300.0, 300.0])


def test_two_sided_reading():
    assert separability(0.1) == (pytest.approx(0.9), -1.0)
    assert separability(0.8) == (0.8, 1.0)
    assert separability(0.5) == (0.5, 0.0)
    assert separability(0.0) == (1.0, -1.0)  # perfectly separable, in the "less atypical" direction


def _mixture(n_per: int, seed: int):
    """Three classes with different means and one shared, correlated covariance (the LDA model)."""
    rng = np.random.default_rng(seed)
    means = np.array([[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [-6.0, -6.0, 0.0]])
    chol = np.array([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.2, -0.3, 0.7]])
    y = np.repeat(np.arange(3), n_per)
    x = means[y] + rng.normal(size=(len(y), 3)) @ chol.T
    return x, y, means


def _class_whitener_from(x: np.ndarray, y: np.ndarray, shrink: float):
    mom = ClassMoments(3)
    mom.update(torch.from_numpy(x), torch.from_numpy(y))
    mu, cov = torch.from_numpy(x.mean(0)), torch.from_numpy(np.cov(x.T, bias=True))
    return class_whitener(mu, cov, *mom.means(), shrink)


def test_class_conditional_matches_naive_lee_score_on_planted_mixture():
    x, y, _ = _mixture(400, 0)
    shrink = 0.01
    cw = _class_whitener_from(x, y, shrink)
    # naive: pooled within-class covariance, per-class means, min over classes
    mus = np.stack([x[y == k].mean(0) for k in range(3)])
    within = sum(((x[y == k] - mus[k]).T @ (x[y == k] - mus[k])) for k in range(3)) / len(x)
    prec = np.linalg.inv(within + shrink * np.trace(within) / 3 * np.eye(3))  # the floor is relative to the within-class variance
    q = np.random.default_rng(1).normal(size=(6, 3, 2, 2)) * 4
    got = class_mahalanobis_per_sample(torch.from_numpy(q), *cw).numpy()
    naive = [min(np.mean([(q[n, :, i, j] - mus[k]) @ prec @ (q[n, :, i, j] - mus[k]) for i in range(2) for j in range(2)])
                 for k in range(3)) for n in range(6)]
    np.testing.assert_allclose(got, naive, rtol=1e-8)
    flat = class_mahalanobis_per_sample(torch.from_numpy(q[:, :, 0, 0]), *cw).numpy()
    naive_flat = [min((q[n, :, 0, 0] - mus[k]) @ prec @ (q[n, :, 0, 0] - mus[k]) for k in range(3)) for n in range(6)]
    np.testing.assert_allclose(flat, naive_flat, rtol=1e-8)


def test_class_conditional_flags_points_between_classes_that_the_agnostic_score_misses():
    """Points half-way between two class means lie near the global mean: typical for one Gaussian, atypical for the mixture."""
    x, y, means = _mixture(400, 0)
    held_out, _, _ = _mixture(100, 1)
    rng = np.random.default_rng(2)
    between = 0.5 * (means[0] + means[1]) + 0.3 * rng.normal(size=(300, 3))
    cw = _class_whitener_from(x, y, 0.01)
    w, c = gaussian_whitener(torch.from_numpy(x.mean(0)), torch.from_numpy(np.cov(x.T, bias=True)), 0.01)
    cc_in, cc_out = (class_mahalanobis_per_sample(torch.from_numpy(a), *cw).numpy() for a in (held_out, between))
    ag_in, ag_out = (mahalanobis_per_sample(torch.from_numpy(a), w, c).numpy() for a in (held_out, between))
    assert auroc(cc_out, cc_in) > 0.95
    assert auroc(ag_out, ag_in) < 0.5
