"""Wide layers (features >> rows) go through their centred n x n Gram matrix instead of a QR of the
n x d matrix. Checked here against naive formulas written from the papers (explicit centred
n x n kernels, the full SVD of the feature matrices), with float32 input at a +1000 offset, and
against the decision of which route a layer takes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repmatch.similarity import similarity_grids
from repmatch.similarity.linalg import kernel_cross_grid
from repmatch.similarity.stats import LayerStats

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 60


def _relu_layer(rng, z, d, offset):
    h = np.maximum(z @ rng.standard_normal((z.shape[1], d)), 0) + 0.1 * rng.standard_normal((z.shape[0], d))
    return (h + offset).astype(np.float32)


@pytest.fixture(scope="module")
def layers():
    """Model a: a flattened-conv-like layer (d = 3000 >> n = 60) and a narrow one; model b: one wide,
    one narrow. float32 with a +1000 offset: uncentred float32 Grams would lose every digit."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((N, 12))
    a = {"wide": _relu_layer(rng, z, 3000, 1000.0), "narrow": _relu_layer(rng, z, 20, 1000.0)}
    b = {"wide": _relu_layer(rng, z, 1500, 1000.0), "narrow": _relu_layer(rng, z, 35, 0.0)}
    return a, b


def _centred(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0)


def _naive_linear_cka(x, y):
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l = h @ (x.astype(np.float64) @ x.astype(np.float64).T) @ h, h @ (y.astype(np.float64) @ y.astype(np.float64).T) @ h
    return np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))


def _naive_hsic1(k, l):
    n = k.shape[0]
    k, l = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l @ one) / (n * (n - 3))


def _naive_debiased_cka(x, y):
    xc, yc = _centred(x), _centred(y)
    k, l = xc @ xc.T, yc @ yc.T
    return _naive_hsic1(k, l) / np.sqrt(_naive_hsic1(k, k) * _naive_hsic1(l, l))


def _naive_procrustes(x, y):
    xc, yc = _centred(x), _centred(y)
    xn, yn = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    return np.linalg.svd(xn.T @ yn, compute_uv=False).sum()


def _naive_regression(x, y):
    xc, yc = _centred(x), _centred(y)
    coef, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    return 1 - np.sum((yc - xc @ coef) ** 2) / np.sum(yc**2)


NAIVE = {
    "linear_cka": _naive_linear_cka,
    "debiased_cka": _naive_debiased_cka,
    "procrustes": _naive_procrustes,
}


@pytest.mark.parametrize("measure", sorted(NAIVE))
def test_wide_grid_matches_naive_formula(layers, measure):
    a, b = layers
    fwd, _ = similarity_grids(a, b, [measure], conv_mode="flatten")
    for i, x in enumerate(a.values()):
        for j, y in enumerate(b.values()):
            assert fwd[measure][i, j] == pytest.approx(NAIVE[measure](x, y), abs=1e-10, rel=0)


def test_wide_minibatch_cka_matches_naive_sum_of_hsic1(layers):
    a, b = layers
    fwd, _ = similarity_grids(a, b, ["minibatch_cka"], conv_mode="flatten", params={"minibatch_size": 20})
    x, y = a["wide"], b["wide"]  # the model-level centring is shared by all batches
    xc, yc = _centred(x), _centred(y)
    sl = [slice(0, 20), slice(20, 40), slice(40, 60)]
    kk = [(xc[s] @ xc[s].T, yc[s] @ yc[s].T) for s in sl]
    num = sum(_naive_hsic1(k, l) for k, l in kk)
    den = np.sqrt(sum(_naive_hsic1(k, k) for k, _ in kk) * sum(_naive_hsic1(l, l) for _, l in kk))
    assert fwd["minibatch_cka"][0, 0] == pytest.approx(num / den, abs=1e-10, rel=0)


def test_wide_target_regression_matches_lstsq(layers):
    """A narrow predictor, a wide target: R^2 enters through the target's Gram matrix."""
    a, b = layers
    fwd, _ = similarity_grids({"narrow": b["narrow"]}, {"wide": a["wide"]}, ["linear_regression"], conv_mode="flatten")
    assert fwd["linear_regression"][0, 0] == pytest.approx(_naive_regression(b["narrow"], a["wide"]), abs=1e-10, rel=0)


def test_wide_layer_takes_the_gram_route(layers):
    """The float32 wide layer is decomposed from eigh(G), not from a QR of Xc^T, and its SVD factor
    reproduces the true singular values of Xc."""
    a, _ = layers
    x = torch.as_tensor(a["wide"], dtype=torch.float64)
    s = LayerStats(x, source_eps=float(np.finfo(np.float32).eps))
    assert s.wide
    lam, _ = s._gram_eigh
    assert s._eigh_resolves(lam.clamp(min=0).sqrt())
    ref = np.linalg.svd(_centred(a["wide"]), compute_uv=False)
    u, sv = s.svd
    assert np.allclose(sv.numpy(), ref[: sv.numel()], rtol=1e-10, atol=1e-10 * ref[0])
    f = s.factor.numpy()
    xc = _centred(a["wide"])
    assert np.allclose(f @ f.T, xc @ xc.T, rtol=0, atol=1e-12 * ref[0] ** 2)


def test_ill_conditioned_float64_wide_layer_falls_back_to_qr():
    """float64 input whose kept spectrum spans 9 decades: eigh(G) cannot resolve it (and sees the
    centring's null direction at ~sqrt(eps)), so the exact QR route is used; Procrustes still
    matches the SVD of the full features."""
    rng = np.random.default_rng(0)
    n = 50
    u = np.linalg.qr(rng.standard_normal((n, n)))[0]
    v = np.linalg.qr(rng.standard_normal((400, n)))[0]
    x = (u * np.logspace(0, -9, n)) @ v.T
    s = LayerStats(torch.as_tensor(x))
    lam, _ = s._gram_eigh
    assert not s._eigh_resolves(lam.clamp(min=0).sqrt())
    y = np.tanh(x @ rng.standard_normal((400, 30)) * 3) + 0.1 * rng.standard_normal((n, 30))
    fwd, _ = similarity_grids({"x": x}, {"y": y}, ["procrustes"])
    assert fwd["procrustes"][0, 0] == pytest.approx(_naive_procrustes(x, y), abs=1e-10, rel=0)


def test_kernel_cross_grid_mixed_operands():
    """Every operand pairing (features/Gram on either side) gives <K_i, L_j> of the naive kernels."""
    rng = np.random.default_rng(1)
    n = 30
    mats = [rng.standard_normal((n, d)) for d in (5, 80, 12, 200)]
    ks = [m @ m.T for m in mats]
    ops = [(torch.as_tensor(m), False) if m.shape[1] <= n else (torch.as_tensor(m @ m.T), True) for m in mats]
    ops_b = [(torch.as_tensor(m @ m.T), True) if m.shape[1] <= n else (torch.as_tensor(m), False) for m in mats]
    ref = np.array([[np.sum(k * l) for l in ks] for k in ks])
    assert np.allclose(kernel_cross_grid(ops, ops).numpy(), ref, rtol=1e-12)
    assert np.allclose(kernel_cross_grid(ops, ops_b).numpy(), ref, rtol=1e-12)
    assert np.allclose(kernel_cross_grid(ops_b, ops).numpy(), ref, rtol=1e-12)


def test_symmetric_gram_equals_the_full_product():
    from repmatch.similarity.stats import symmetric_gram

    x = torch.as_tensor(np.random.default_rng(2).standard_normal((517, 90)))
    g = symmetric_gram(x)
    assert torch.equal(g, g.T)
    assert np.allclose(g.numpy(), x.numpy() @ x.numpy().T, rtol=0, atol=1e-12 * float(g.abs().max()))
