"""Learned OOD detectors (energy outlier exposure): metrics against references, and detection on planted data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from repmatch.networks import StitchableNet
from repmatch.settings import section_settings
from repmatch.stitching.detectors import energy, energy_oe_loss, fit_detectors, outlier_images, sanity_check
from repmatch.stitching.ood_metrics import auroc, average_precision, average_ranks, detection_metrics, fpr_at_95_tpr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_average_precision_and_fpr95_match_references():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 8, 50).astype(float) + 1.0, rng.integers(0, 8, 70).astype(float)  # many ties
    sklearn = pytest.importorskip("sklearn.metrics")
    ref = sklearn.average_precision_score(np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg])
    assert average_precision(pos, neg) == pytest.approx(ref, abs=1e-12)
    assert average_precision(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    real = np.arange(100.0)  # 95th percentile (higher) = 95
    assert fpr_at_95_tpr(np.array([94.0, 95.0, 96.0, 200.0]), real) == 0.5
    m = detection_metrics(np.array([5.0, 6.0]), np.array([1.0, 2.0, 3.0]))
    assert m == {"detector_auroc": 1.0, "detector_separability": 1.0, "detector_direction": 1.0, "detector_aupr": 1.0,
                 "detector_fpr95": 0.0}


def test_energy_loss_is_liu_et_al():
    logits_in, logits_out = torch.randn(6, 4), torch.randn(5, 4)
    y = torch.randint(0, 4, (6,))
    got = energy_oe_loss(logits_in, y, logits_out, m_in=-25.0, m_out=-7.0, weight=0.1)
    e_in, e_out = -torch.logsumexp(logits_in, 1), -torch.logsumexp(logits_out, 1)
    naive = nn.functional.cross_entropy(logits_in, y) + 0.1 * (
        (torch.clamp(e_in + 25, min=0) ** 2).mean() + (torch.clamp(-7 - e_out, min=0) ** 2).mean())
    torch.testing.assert_close(got, naive)
    torch.testing.assert_close(energy(torch.zeros(2, 4)), torch.full((2,), -float(np.log(4))))


def test_outlier_images_kinds():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 2, 5, 5)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    out = outlier_images(x, y, 21, seed=0)
    assert out.shape == (21, 2, 5, 5) and out.dtype == np.float32 and np.isfinite(out).all()
    # permuted: the first 6 keep some training image's per-channel multiset of values
    for img in out[:6]:
        assert any(np.allclose(np.sort(img.reshape(2, -1), 1), np.sort(x[k].reshape(2, -1), 1)) for k in range(40))


def _stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1 x 12 x 12 images: four classes of oriented stripe patterns (horizontal, vertical, two diagonals) + noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    i, j = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    patterns = np.stack([np.sin(i * 1.2), np.sin(j * 1.2), np.sin((i + j) * 0.9), np.sin((i - j) * 0.9)])
    phase = rng.uniform(0.7, 1.3, size=(n, 1, 1))
    x = patterns[y] * phase + 0.3 * rng.normal(size=(n, 12, 12))
    return x[:, None].astype(np.float32), y.astype(np.int64)


def _feature_net() -> StitchableNet:
    """A fixed 'network B' with a map layer and a flat layer (random frozen weights)."""
    torch.manual_seed(0)
    blocks = [("map", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU())),
              ("flat", nn.Sequential(nn.Flatten(), nn.Linear(8 * 144, 32), nn.ReLU()))]
    return StitchableNet(blocks, nn.Linear(32, 4)).eval()


def test_detector_separates_planted_outliers_and_keeps_held_out_data_in():
    net = _feature_net()
    x, y = _stripes(1200, 0)
    x_test, _ = _stripes(400, 1)
    cfg = section_settings("stitching", {"detector": {"epochs": 4, "oe_epochs": 3, "batch_size": 64, "width": 16}}).detector
    dets = fit_detectors(net, ["map", "flat"], x, y, cfg)
    # planted outliers the detector never saw: checkerboards and images of a fifth pattern (rings)
    i, j = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    rng = np.random.default_rng(2)
    rings = np.sin(np.hypot(i - 6, j - 6) * 1.5)[None] + 0.3 * rng.normal(size=(200, 12, 12))
    checker = ((i + j) % 2 * 2.0 - 1.0)[None] + 0.3 * rng.normal(size=(200, 12, 12))
    planted = np.concatenate([rings, checker])[:, None].astype(np.float32)
    with torch.no_grad():
        for layer, det in dets.items():
            e_in = det.score(net.forward_until(torch.from_numpy(x_test), layer)).numpy()
            e_out = det.score(net.forward_until(torch.from_numpy(planted), layer)).numpy()
            m = detection_metrics(e_out, e_in)
            assert m["detector_auroc"] > 0.95, (layer, m)
            assert m["detector_fpr95"] < 0.3, (layer, m)
            # inverting a stripe image only shifts its phase (same class), so the corruption here is heavy additive noise
            noisy = (x_test + 2.0 * rng.normal(size=x_test.shape)).astype(np.float32)
            sanity = sanity_check(det, net, layer, x, x_test, x_corrupt=noisy)
            assert sanity["sanity_in_rate"] > 0.85, (layer, sanity)  # held-out real data is kept in
            assert sanity["sanity_corrupt_auroc"] > 0.8, (layer, sanity)  # additive noise it never saw


def test_average_ranks_equal_scipy_rankdata_and_auroc_a_naive_pair_count():
    """Average ranks with ties (scipy's rankdata 'average' as the reference) and the AUROC built on
    them against the naive count over all (positive, negative) pairs, ties counting 1/2."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    for v in (rng.normal(size=50), rng.integers(0, 5, size=40).astype(float), np.array([2.0]), np.zeros(7)):
        np.testing.assert_array_equal(average_ranks(v), rankdata(v))
    pos, neg = rng.integers(0, 6, size=30).astype(float), rng.integers(0, 6, size=25).astype(float)
    naive = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])
    assert auroc(pos, neg) == pytest.approx(naive, abs=1e-12)
