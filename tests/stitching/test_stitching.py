"""Model stitching maths: the stitch layer, DM least squares, OOD scores, analyses (synthetic data, fast)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from repmatch.stitching import (
    GridNormalEquations,
    NormalEquations,
    Stitch,
    StitchShapeError,
    auroc,
    fit_affine,
    fit_affine_pinv,
    mahalanobis_per_sample,
    resize_to,
    stitch_inputs,
    stitching_pairs,
    to_rows,
)
from repmatch.stitching.analysis import accuracy_vs_layer_distance
from repmatch.stitching.scores import gaussian_whitener

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- the stitch layer


def test_conv_stitch_equals_per_position_affine_map_by_hand():
    g = torch.Generator().manual_seed(0)
    stitch = Stitch((3, 5, 4), (2, 5, 4), generator=g)
    x = torch.randn(2, 3, 5, 4, generator=g)
    out = stitch(x)
    w, b = stitch.weight.detach().numpy(), stitch.bias.detach().numpy()
    xn = x.numpy()
    expected = np.zeros((2, 2, 5, 4), dtype=np.float64)
    for n in range(2):
        for h in range(5):
            for v in range(4):
                for o in range(2):
                    expected[n, o, h, v] = b[o] + sum(w[o, c] * xn[n, c, h, v] for c in range(3))
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_resize_rules():
    x = torch.randn(3, 4, 8, 6)
    # bilinear 2x downsampling (align_corners=False) is exactly the 2x2 mean
    np.testing.assert_allclose(resize_to(x, (4, 3)).numpy(), F.avg_pool2d(x, 2).numpy(), atol=1e-6)
    # conv -> flat: global average pool; flat -> conv: broadcast to every position
    np.testing.assert_allclose(resize_to(x, (1, 1))[:, :, 0, 0].numpy(), x.mean((2, 3)).numpy(), atol=1e-6)
    v = torch.randn(3, 4)
    up = resize_to(v, (5, 7))
    assert up.shape == (3, 4, 5, 7)
    np.testing.assert_array_equal(up.numpy(), np.broadcast_to(v.numpy()[:, :, None, None], (3, 4, 5, 7)))
    assert resize_to(x, (8, 6)) is x


def test_resize_matrix_is_the_resize_operator():
    """vec(resize(x)) = U vec(x) per channel, for bilinear up/down-sampling, pooling and broadcast."""
    from repmatch.stitching.layer import resize_matrix

    g = torch.Generator().manual_seed(7)
    for src, dst in [((4, 4), (8, 8)), ((7, 7), (28, 28)), ((1, 1), (5, 5)), ((6, 6), (1, 1)), ((8, 8), (4, 4))]:
        x = torch.randn(2, 3, *src, dtype=F64, generator=g)
        u = resize_matrix(src, dst)
        assert u.shape == (dst[0] * dst[1], src[0] * src[1])
        np.testing.assert_allclose((x.flatten(2) @ u.T).numpy(), resize_to(x, dst).flatten(2).numpy(), atol=1e-12)


def test_upsampling_stitch_equals_resize_then_affine():
    """The stitch maps before upsampling (cheaper); that must equal the documented resize-then-map."""
    g = torch.Generator().manual_seed(1)
    for in_shape, out_shape in [((6, 4, 4), (3, 8, 8)), ((6,), (3, 5, 5)), ((6, 7, 7), (3,)), ((6,), (3,))]:
        stitch = Stitch(in_shape, out_shape, generator=g)
        x = torch.randn(2, *in_shape, generator=g)
        naive = stitch_inputs(x, out_shape) @ stitch.weight.detach().T + stitch.bias.detach()
        out = stitch(x)
        assert out.shape == (2, *out_shape)
        np.testing.assert_allclose(to_rows(out).detach().numpy(), naive.numpy(), rtol=1e-5, atol=1e-5)


def test_shape_mismatch_gives_clear_error():
    stitch = Stitch((4, 6, 6), (8, 3, 3))
    with pytest.raises(StitchShapeError, match=r"expects front-half activations of shape \(N, 4, 6, 6\).*got \(2, 5, 6, 6\)"):
        stitch(torch.zeros(2, 5, 6, 6))
    with pytest.raises(StitchShapeError, match="does not fit a stitch"):
        stitch.set_affine(torch.zeros(8, 5), torch.zeros(8))
    with pytest.raises(StitchShapeError, match=r"needs \(C,\), \(T, D\) or \(C, H, W\)"):
        Stitch((4, 6, 6, 2), (8,))
    ne = NormalEquations()
    with pytest.raises(ValueError, match="needs 10 rows"):
        ne.update(torch.zeros(10, 3), {"y": torch.zeros(9, 2)})
    ne.update(torch.randn(10, 3), {"y": torch.zeros(10, 2)})
    with pytest.raises(ValueError, match="has 4 channels, earlier batches had 3"):
        ne.update(torch.zeros(10, 4), {"y": torch.zeros(10, 2)})


# ---------------------------------------------------------------- direct matching


def test_dm_recovers_planted_affine_map_exactly():
    rng = _rng(0)
    x = rng.normal(size=(3000, 12)) * rng.uniform(0.1, 5, size=12) + rng.normal(size=12) * 3
    w = rng.normal(size=(7, 12))
    b = rng.normal(size=7)
    y = x @ w.T + b
    # accumulated over several batches in float32 inputs, as the grid does with activations
    ne = NormalEquations()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for chunk in range(0, 3000, 700):
        ne.update(xt[chunk : chunk + 700], {"y": yt[chunk : chunk + 700]})
    w_hat, b_hat = ne.solve("y")
    assert w_hat.dtype == F64
    np.testing.assert_allclose(w_hat.numpy(), w, atol=1e-5)
    np.testing.assert_allclose(b_hat.numpy(), b, atol=1e-5)


def test_dm_matches_naive_least_squares_and_ridge():
    rng = _rng(1)
    x = rng.normal(size=(500, 6)) + 2.0
    y = rng.normal(size=(500, 3)) + x[:, :3]
    w_hat, b_hat = fit_affine(torch.from_numpy(x), torch.from_numpy(y))
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)  # naive: bias column
    np.testing.assert_allclose(w_hat.numpy(), coef[:-1].T, atol=1e-10)
    np.testing.assert_allclose(b_hat.numpy(), coef[-1], atol=1e-10)
    # ridge: penalises W (not the bias), lambda relative to the mean variance of x
    ridge = 0.3
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam = ridge * np.trace(xc.T @ xc / len(x)) / x.shape[1]
    w_ref = np.linalg.solve(xc.T @ xc / len(x) + lam * np.eye(6), xc.T @ yc / len(x)).T
    w_r, b_r = fit_affine(torch.from_numpy(x), torch.from_numpy(y), ridge=ridge)
    np.testing.assert_allclose(w_r.numpy(), w_ref, atol=1e-10)
    np.testing.assert_allclose(b_r.numpy(), y.mean(0) - w_ref @ x.mean(0), atol=1e-10)


def test_dm_with_dead_channel_gives_min_norm_solution():
    """A channel that never fires (dead ReLU) makes the covariance singular: no failure, zero weight."""
    rng = _rng(2)
    x = rng.normal(size=(400, 5))
    x[:, 2] = 0.0
    w = rng.normal(size=(3, 5))
    y = x @ w.T + 1.0
    w_hat, b_hat = fit_affine(torch.from_numpy(x), torch.from_numpy(y))
    w_expected = w.copy()
    w_expected[:, 2] = 0.0
    np.testing.assert_allclose(w_hat.numpy(), w_expected, atol=1e-8)
    np.testing.assert_allclose(b_hat.numpy(), np.ones(3), atol=1e-8)


def test_small_k_pinv_matches_lstsq():
    rng = _rng(3)
    x, y = rng.normal(size=(40, 4)), rng.normal(size=(40, 2))
    w, b = fit_affine_pinv(torch.from_numpy(x), torch.from_numpy(y))
    coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(40)], y, rcond=None)
    np.testing.assert_allclose(w.numpy(), coef[:-1].T, atol=1e-10)
    np.testing.assert_allclose(b.numpy(), coef[-1], atol=1e-10)


def test_grid_normal_equations_equal_naive_per_pair_fits():
    """The shared-Gram grid accumulator equals one naive lstsq per pair on the resized rows."""
    g = torch.Generator().manual_seed(4)
    shapes_a = {"c1": (3, 8, 8), "c2": (5, 4, 4), "f": (6,)}
    shapes_b = {"d1": (2, 8, 8), "d2": (4, 4, 4), "g": (3,)}
    pairs = [(la, lb) for la in shapes_a for lb in shapes_b]
    batches = [
        ({k: torch.randn(7, *s, generator=g) for k, s in shapes_a.items()}, {k: torch.randn(7, *s, generator=g) for k, s in shapes_b.items()})
        for _ in range(3)
    ]
    grid = GridNormalEquations(pairs, shapes_a, shapes_b)
    for fa, fb in batches:
        grid.update(fa, fb)
    for la, lb in pairs:
        x = torch.cat([stitch_inputs(fa[la], shapes_b[lb]) for fa, _ in batches]).double().numpy()
        y = torch.cat([to_rows(fb[lb]) for _, fb in batches]).double().numpy()
        coef, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
        w, b = grid.solve(la, lb)
        np.testing.assert_allclose(w.numpy(), coef[:-1].T, atol=1e-8, err_msg=f"{la}->{lb}")
        np.testing.assert_allclose(b.numpy(), coef[-1], atol=1e-8, err_msg=f"{la}->{lb}")


# ---------------------------------------------------------------- scores


def test_auroc_matches_naive_pairwise_count():
    rng = _rng(5)
    pos = rng.integers(0, 6, size=40).astype(float)  # many ties
    neg = rng.integers(0, 5, size=30).astype(float)
    naive = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(pos, neg) == pytest.approx(naive, abs=1e-12)
    assert auroc(neg, neg) == pytest.approx(0.5)
    assert auroc(np.arange(5) + 10.0, np.arange(5)) == 1.0
    assert auroc(np.arange(5), np.arange(5) + 10.0) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([np.nan]), np.array([1.0]))


def test_mahalanobis_matches_naive_inverse():
    rng = _rng(6)
    real = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4)) + 1.0
    mean, cov = real.mean(0), np.cov(real.T, bias=True)
    shrink = 0.05
    prec = np.linalg.inv(cov + shrink * np.trace(cov) / 4 * np.eye(4))
    h = torch.randn(3, 4, 2, 2, dtype=F64)
    whiten, shift = gaussian_whitener(torch.from_numpy(mean), torch.from_numpy(cov), shrink)
    got = mahalanobis_per_sample(h, whiten, shift).numpy()
    hn = h.numpy()
    naive = [np.mean([(hn[n, :, i, j] - mean) @ prec @ (hn[n, :, i, j] - mean) for i in range(2) for j in range(2)]) for n in range(3)]
    np.testing.assert_allclose(got, naive, rtol=1e-8)


# ---------------------------------------------------------------- config and analyses


def test_stitching_pairs_selection():
    from repmatch.settings import StitchPairSettings

    models = ["m_seed0", "m_seed1", "m_seed2"]
    assert stitching_pairs(models, StitchPairSettings("first", "first")) == ["m_seed0__m_seed0", "m_seed0__m_seed1"]
    full = stitching_pairs(models, StitchPairSettings("all", "all"))
    assert len(full) == 9 and len(set(full)) == 9
    assert stitching_pairs(models, StitchPairSettings("none", "none")) == []


def test_settings_errors_are_named():
    from repmatch.settings import ConfigError, section_settings

    with pytest.raises(ConfigError, match="stitching.methods"):
        section_settings("stitching", {"methods": ["dm", "tlm_typo"]})
    with pytest.raises(ConfigError, match="stitching.dm.solver"):
        section_settings("stitching", {"dm": {"solver": "svd"}})
    with pytest.raises(ConfigError, match="stitching.tlm"):
        section_settings("stitching", {"tlm": {"epoch": 3}})
    cfg = section_settings("stitching", {"tlm": {"epochs": 2}})
    assert cfg.layers is None and cfg.tlm.epochs == 2 and cfg.tlm.lr > 0


def _table(values: dict[str, np.ndarray], pair=("m0", "m0")) -> pd.DataFrame:
    layers = ["l0", "l1", "l2"]
    rows = []
    for method, grid in values.items():
        for i, la in enumerate(layers):
            for j, lb in enumerate(layers):
                rows.append((pair[0], la, i, pair[1], lb, j, method, "accuracy", grid[i, j]))
    return pd.DataFrame(rows, columns=["model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method", "metric", "value"])


def test_distance_curve():
    tlm = np.array([[0.9, 0.8, 0.95], [0.91, 0.9, 0.7], [0.92, 0.5, 0.9]])
    dm = np.array([[0.9, 0.5, 0.2], [0.5, 0.9, 0.5], [0.2, 0.5, 0.9]])
    df = _table({"tlm": tlm, "dm": dm})
    dist = accuracy_vs_layer_distance(df).set_index(["method", "distance"])
    for method, grid in (("tlm", tlm), ("dm", dm)):
        for d in range(-2, 3):
            cells = [grid[i, j] for i in range(3) for j in range(3) if j - i == d]
            assert dist.loc[(method, d), "mean"] == pytest.approx(np.mean(cells))
            assert dist.loc[(method, d), "n"] == len(cells)
    assert set(accuracy_vs_layer_distance(pd.concat([df, _table({"dm": dm}, ("m0", "m1"))]))["kind"]) == {"within", "cross"}
    with pytest.raises(ValueError, match="no rows for metric"):
        accuracy_vs_layer_distance(df, metric="loss")


def test_accuracy_intervals_and_mcnemar_against_the_counterpart():
    """Wilson interval of each stitched accuracy; one-sided McNemar p-value of a cell against its
    column's and row's counterpart on the same images (b = 7 discordant images for the cell, c = 2
    for the counterpart: exact p = P(X >= 7), X ~ Bin(9, 1/2); mid-p takes half of P(X = 7))."""
    from math import comb

    from repmatch.settings import section_settings
    from repmatch.stitching.grid import accuracy_uncertainty
    from repmatch.stitching.network import Cell

    n = 40
    own = np.zeros(n, bool)
    own[:20] = True  # (l1, l1): 20 right
    other = own.copy()
    other[:2] = False  # 2 images only the counterpart gets right (c = 2)
    other[20:27] = True  # 7 images only the other cell gets right (b = 7)
    per_image = {Cell("tlm", "l1", "l1"): own, Cell("tlm", "l0", "l1"): other, Cell("tlm", "l0", "l0"): own}
    out = accuracy_uncertainty(per_image, section_settings("uncertainty", {"mcnemar": "exact", "level": 0.95}))
    lo, hi, p_col, p_row = out[Cell("tlm", "l0", "l1")]
    exact = sum(comb(9, k) for k in range(7, 10)) / 2**9
    assert p_col == pytest.approx(exact)  # against (l1, l1): b = 7, c = 2
    assert p_row == pytest.approx(exact)  # against (l0, l0), which equals (l1, l1) here
    k = other.sum()
    p, z = k / n, 1.959963984540054
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half))
    assert np.isnan(out[Cell("tlm", "l1", "l1")][2]) and np.isnan(out[Cell("tlm", "l1", "l1")][3])  # itself
    midp = accuracy_uncertainty(per_image, section_settings("uncertainty", {"mcnemar": "midp"}))[Cell("tlm", "l0", "l1")][2]
    assert midp == pytest.approx(exact - comb(9, 7) / 2**9 / 2)
