"""Every registered similarity measure against what it declares, against a naive reference written
here straight from the published formula, and on adversarial input (offsets, degenerate layers)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from repmatch.similarity import (
    INVARIANCES,
    MEASURES,
    DegenerateInputError,
    SimilarityInputError,
    check_measures,
    get_measure,
    similarity,
)

PARAMS = {"rbf_sigma": 0.8, "svcca_variance": 0.99, "minibatch_size": 30}
N, D = 120, 8


def _value(x, y, name):
    return similarity(x, y, name, **PARAMS)


@pytest.fixture(scope="module")
def xy():
    """Two related but different representations with the same width (so PWCCA's side choice is a tie)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D)) @ rng.standard_normal((D, D)) + rng.standard_normal(D)
    y = np.tanh(x @ rng.standard_normal((D, D)) / 3) + 0.3 * rng.standard_normal((N, D))
    return x, y


def _orthogonal(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _invertible(d, seed):
    rng = np.random.default_rng(seed)
    return _orthogonal(d, seed) @ np.diag(rng.uniform(0.3, 3.0, d)) @ _orthogonal(d, seed + 1)


TRANSFORMS = {
    "orthogonal": lambda x, s: x @ _orthogonal(x.shape[1], s),
    "isotropic_scaling": lambda x, s: 3.7 * x,
    "translation": lambda x, s: x + 5 * np.random.default_rng(s).standard_normal(x.shape[1]),
    "invertible_linear": lambda x, s: x @ _invertible(x.shape[1], s),
}


# --- the registry contract ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_identity_value(name, xy):
    x, _ = xy
    m = get_measure(name)
    assert _value(x, x, name) == pytest.approx(m.identity_value, abs=1e-9)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_symmetry_is_as_declared(name, xy):
    x, y = xy
    forward, backward = _value(x, y, name), _value(y, x, name)
    if get_measure(name).symmetric:
        assert forward == pytest.approx(backward, abs=1e-10)
    else:
        assert abs(forward - backward) > 1e-6, f"{name} is declared asymmetric but is symmetric here"


@pytest.mark.parametrize("invariance", [i for i in INVARIANCES if i != "invertible_linear_a"])
@pytest.mark.parametrize("name", sorted(MEASURES))
def test_invariances_are_as_declared(name, invariance, xy):
    """Declared invariances hold on either argument; undeclared ones are really violated."""
    x, y = xy
    m = get_measure(name)
    base = _value(x, y, name)
    t = TRANSFORMS[invariance]
    changed_a = _value(t(x, 1), y, name)
    changed_b = _value(x, t(y, 2), name)
    if invariance in m.invariances:
        assert changed_a == pytest.approx(base, abs=1e-8)
        assert changed_b == pytest.approx(base, abs=1e-8)
    elif invariance == "invertible_linear" and "invertible_linear_a" in m.invariances:
        assert changed_a == pytest.approx(base, abs=1e-8)
        assert abs(changed_b - base) > 1e-6
    else:
        assert max(abs(changed_a - base), abs(changed_b - base)) > 1e-6, f"{name} is invariant to {invariance} but does not declare it"


def test_registry_rejects_unknown_and_repeated_names():
    with pytest.raises(SimilarityInputError, match="unknown similarity measure 'linear_ckaa'.*linear_cka"):
        check_measures(["linear_ckaa"])
    with pytest.raises(SimilarityInputError, match="more than once"):
        check_measures(["linear_cka", "linear_cka"])
    with pytest.raises(SimilarityInputError, match="empty"):
        check_measures([])


# --- naive references, straight from the formulas ----------------------------------------------


def _hsic_biased(k, l):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def _cka_from_kernels(k, l):
    return _hsic_biased(k, l) / np.sqrt(_hsic_biased(k, k) * _hsic_biased(l, l))


def ref_linear_cka(x, y):
    return _cka_from_kernels(x @ x.T, y @ y.T)


def ref_rbf_cka(x, y, frac=0.8):
    def kernel(z):
        d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * frac**2 * np.median(d2)))

    return _cka_from_kernels(kernel(x), kernel(y))


def _hsic_unbiased(k, l):
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ kt @ lt @ one)) / (n * (n - 3))


def ref_debiased_cka(x, y):
    k, l = x @ x.T, y @ y.T  # deliberately uncentred: HSIC_1 does not need it
    return _hsic_unbiased(k, l) / np.sqrt(_hsic_unbiased(k, k) * _hsic_unbiased(l, l))


def ref_minibatch_cka(x, y, m=30):
    num = sx = sy = 0.0
    for start in range(0, len(x), m):
        xb, yb = x[start:start + m], y[start:start + m]
        k, l = xb @ xb.T, yb @ yb.T
        num += _hsic_unbiased(k, l)
        sx += _hsic_unbiased(k, k)
        sy += _hsic_unbiased(l, l)
    return num / np.sqrt(sx * sy)


def _centre(z):
    return z - z.mean(axis=0)


def _inv_sqrt(s):
    w, v = np.linalg.eigh(s)
    return v @ np.diag(w**-0.5) @ v.T


def _cca(x, y):
    """Canonical correlations and weights from the covariance matrices (full-rank input)."""
    xc, yc = _centre(x), _centre(y)
    sxx_is, syy_is = _inv_sqrt(xc.T @ xc), _inv_sqrt(yc.T @ yc)
    u, rho, vt = np.linalg.svd(sxx_is @ (xc.T @ yc) @ syy_is, full_matrices=False)
    return xc, yc, rho, sxx_is @ u, syy_is @ vt.T


def ref_mean_cca(x, y):
    return _cca(x, y)[2].mean()


def ref_svcca(x, y, keep=0.99):
    def reduce(z):
        u, s, _ = np.linalg.svd(_centre(z), full_matrices=False)
        k = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= keep)) + 1
        return u[:, :k] * s[:k]

    return ref_mean_cca(reduce(x), reduce(y))


def ref_pwcca(x, y):
    xc, yc, rho, wx, wy = _cca(x, y)
    z, w = (xc, wx) if x.shape[1] <= y.shape[1] else (yc, wy)
    h = z @ w[:, : len(rho)]
    h = h / np.linalg.norm(h, axis=0)
    alpha = np.abs(h.T @ z).sum(axis=1)
    return float((alpha * rho).sum() / alpha.sum())


def ref_procrustes(x, y):
    xn, yn = _centre(x), _centre(y)
    xn, yn = xn / np.linalg.norm(xn), yn / np.linalg.norm(yn)
    width = max(xn.shape[1], yn.shape[1])  # zero-pad the narrower layer (Ding et al. 2021)
    xn, yn = (np.pad(z, ((0, 0), (0, width - z.shape[1]))) for z in (xn, yn))
    u, _, vt = np.linalg.svd(xn.T @ yn)
    dist = np.linalg.norm(xn @ (u @ vt) - yn) ** 2  # the optimal orthogonal map (Schoenemann 1966)
    return 1 - dist / 2, dist


def ref_linear_regression(x, y):
    xc, yc = _centre(x), _centre(y)
    w = np.linalg.lstsq(xc, yc, rcond=None)[0]
    return 1 - np.linalg.norm(yc - xc @ w) ** 2 / np.linalg.norm(yc) ** 2


def knn_naive(z, k=10, distance="cosine"):
    """k nearest neighbours of every row (itself excluded), ordered by (distance, index), and the distances."""
    if distance == "cosine":
        zn = z / np.linalg.norm(z, axis=1, keepdims=True)
        d = 1 - zn @ zn.T
    else:
        zc = _centre(z)
        d = np.sqrt(((zc[:, None, :] - zc[None, :, :]) ** 2).sum(-1))
    lists = [[q for _, q in sorted((d[p, q], q) for q in range(len(z)) if q != p)[:k]] for p in range(len(z))]
    return lists, d


def ref_mutual_knn(x, y, k=10, distance="cosine"):
    (la, _), (lb, _) = knn_naive(x, k, distance), knn_naive(y, k, distance)
    return np.mean([len(set(a) & set(b)) / k for a, b in zip(la, lb)])


def ref_jaccard_knn(x, y, k=10, distance="cosine"):
    (la, _), (lb, _) = knn_naive(x, k, distance), knn_naive(y, k, distance)
    return np.mean([len(set(a) & set(b)) / len(set(a) | set(b)) for a, b in zip(la, lb)])


def ref_rank_similarity(x, y, k=10, distance="cosine"):
    (la, _), (lb, _) = knn_naive(x, k, distance), knn_naive(y, k, distance)
    scores = []
    for a, b in zip(la, lb):
        common = set(a) & set(b)
        if not common:
            scores.append(0.0)
            continue
        s = sum(2 / ((1 + abs(a.index(j) - b.index(j))) * (a.index(j) + b.index(j) + 2)) for j in common)
        scores.append(s / sum(1 / i for i in range(1, len(common) + 1)))
    return np.mean(scores)


def ref_second_order_cosine(x, y, k=10, distance="cosine"):
    (la, da), (lb, db) = knn_naive(x, k, distance), knn_naive(y, k, distance)
    out = []
    for p, (a, b) in enumerate(zip(la, lb)):
        u = sorted(set(a) | set(b))
        va, vb = da[p, u], db[p, u]
        out.append(va @ vb / np.sqrt((va @ va) * (vb @ vb)))
    return np.mean(out)


def rdm_naive(z, distance="correlation"):
    n = len(z)
    if distance == "correlation":
        d = 1 - np.corrcoef(z)
    elif distance == "cosine":
        d = np.array([[1 - z[p] @ z[q] / np.linalg.norm(z[p]) / np.linalg.norm(z[q]) for q in range(n)] for p in range(n)])
    else:
        d = np.array([[np.linalg.norm(z[p] - z[q]) for q in range(n)] for p in range(n)])
    return d[np.triu_indices(n, 1)]


def tau_a_naive(u, v):
    su, sv = np.sign(u[:, None] - u[None, :]), np.sign(v[:, None] - v[None, :])
    m = len(u)
    return (su * sv).sum() / 2 / (m * (m - 1) / 2)


def ref_rsa(x, y, distance="correlation", compare="spearman"):
    u, v = rdm_naive(x, distance), rdm_naive(y, distance)
    if compare == "spearman":
        return scipy.stats.spearmanr(u, v).statistic
    if compare == "pearson":
        return np.corrcoef(u, v)[0, 1]
    return tau_a_naive(u, v)


def _whitened(z, alpha):
    """netrep's partial whitening of the centred, unit-norm layer (on its nonzero eigenvalues), back to unit norm."""
    zc = _centre(z)
    zc = zc / np.linalg.norm(zc)
    lam, v = np.linalg.eigh(zc.T @ zc)
    keep = lam > lam.max() * 1e-12
    lam, v = lam[keep], v[:, keep]
    w = zc @ (v * (alpha + (1 - alpha) / np.sqrt(lam))) @ v.T
    return w / np.linalg.norm(w)


def ref_shape(x, y, alpha=1.0):
    """(angular, euclidean) shape distances: whiten, zero-pad, optimal rotation (netrep's fit and score)."""
    wx, wy = _whitened(x, alpha), _whitened(y, alpha)
    width = max(wx.shape[1], wy.shape[1])
    wx, wy = (np.pad(z, ((0, 0), (0, width - z.shape[1]))) for z in (wx, wy))
    u, s, vt = np.linalg.svd(wx.T @ wy)
    return np.arccos(min(s.sum(), 1.0)), np.linalg.norm(wx @ u @ vt - wy)


def ref_concentricity_difference(x, y):
    def conc(z):
        mu = z.mean(axis=0)
        return np.mean([z[p] @ mu / np.linalg.norm(z[p]) / np.linalg.norm(mu) for p in range(len(z))])

    return abs(conc(x) - conc(y))


REFERENCES = {
    "mutual_knn": ref_mutual_knn,
    "jaccard_knn": ref_jaccard_knn,
    "rank_similarity": ref_rank_similarity,
    "second_order_cosine": ref_second_order_cosine,
    "rsa": ref_rsa,
    "shape_angular": lambda x, y: ref_shape(x, y)[0],
    "shape_euclidean": lambda x, y: ref_shape(x, y)[1],
    "magnitude_difference": lambda x, y: abs(np.linalg.norm(x.mean(axis=0)) - np.linalg.norm(y.mean(axis=0))),
    "concentricity_difference": ref_concentricity_difference,
    "linear_cka": ref_linear_cka,
    "rbf_cka": ref_rbf_cka,
    "debiased_cka": ref_debiased_cka,
    "minibatch_cka": ref_minibatch_cka,
    "mean_cca": ref_mean_cca,
    "svcca": ref_svcca,
    "pwcca": ref_pwcca,
    "procrustes": lambda x, y: ref_procrustes(x, y)[0],
    "procrustes_distance": lambda x, y: ref_procrustes(x, y)[1],
    "linear_regression": ref_linear_regression,
}


def test_every_measure_has_a_reference():
    assert set(REFERENCES) == set(MEASURES)


@pytest.fixture(scope="module")
def xy_uneven():
    """Different widths (6 vs 10), anisotropic features, a low-variance tail for SVCCA to drop."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, 6)) * np.array([5, 3, 2, 1, 0.5, 0.05]) + 2.0
    y = np.concatenate([np.sin(x), x[:, :2] ** 2, rng.standard_normal((N, 2))], axis=1) + 0.2 * rng.standard_normal((N, 10))
    return x, y


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("order", ["xy", "yx"])
def test_agrees_with_naive_reference(name, order, xy_uneven):
    x, y = xy_uneven if order == "xy" else xy_uneven[::-1]
    expected = REFERENCES[name](x, y)
    assert _value(x, y, name) == pytest.approx(expected, abs=1e-6)


def test_svcca_reference_is_not_mean_cca(xy_uneven):
    """The 99% truncation really drops directions on this data (else the SVCCA check proves nothing)."""
    x, y = xy_uneven
    assert abs(ref_svcca(x, y) - ref_mean_cca(x, y)) > 1e-3


# --- numerics ------------------------------------------------------------------------------------


def _exact_fp32_offset_data():
    """Values on a 1/256 grid within +-8: x and x + 1000 are both exact in float32."""
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((200, 12)) * 2 * 256).clip(-2047, 2047) / 256
    y = np.round((np.tanh(x @ rng.standard_normal((12, 9)) / 4) + 0.2 * rng.standard_normal((200, 9))) * 256) / 256
    return x.astype(np.float32), y.astype(np.float32)


def _naive_fp32_linear_cka(x, y):
    """What several public CKA packages do: uncentred fp32 Gram matrices, then centring."""
    def centred_gram(z):
        k = z @ z.T
        return k - k.mean(0, keepdims=True) - k.mean(1, keepdims=True) + k.mean()
    k, l = centred_gram(x), centred_gram(y)
    return float((k * l).sum() / np.sqrt((k * k).sum() * (l * l).sum()))


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_large_offset_in_float32_does_not_change_the_value(name):
    if "translation" not in get_measure(name).invariances:
        pytest.skip(f"{name} is not translation invariant by definition: an offset changes its value")
    x, y = _exact_fp32_offset_data()
    shifted = x + np.float32(1000)
    assert np.array_equal(shifted - np.float32(1000), x)  # the offset itself is exact
    assert _value(shifted, y, name) == pytest.approx(_value(x, y, name), abs=1e-9)
    assert _value(x, y + np.float32(1000), name) == pytest.approx(_value(x, y, name), abs=1e-9)


def test_naive_fp32_cka_fails_the_offset_test():
    """The offset test can fail: the uncentred-fp32 recipe is visibly wrong on the same data."""
    x, y = _exact_fp32_offset_data()
    assert abs(_naive_fp32_linear_cka(x + np.float32(1000), y) - _naive_fp32_linear_cka(x, y)) > 1e-2


# --- degenerate and bad input --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_constant_layer_is_a_clear_error(name, xy):
    x, _ = xy
    const = np.full_like(x, 3.25)
    with pytest.raises(DegenerateInputError, match="zero variance"):
        _value(const, x, name)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_nan_and_inf_are_errors(name, xy):
    x, y = xy
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(SimilarityInputError, match="NaN or Inf"):
        _value(bad, y, name)
    bad[3, 2] = np.inf
    with pytest.raises(SimilarityInputError, match="NaN or Inf"):
        _value(x, bad, name)


@pytest.mark.parametrize("name", ["mean_cca", "svcca", "pwcca", "linear_regression"])
def test_more_features_than_samples_is_degenerate_for_cca_and_regression(name):
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 60)), rng.standard_normal((40, 5))
    with pytest.raises(DegenerateInputError, match="rank"):
        similarity(x, y, name, svcca_variance=1.0)


def test_dead_units_are_fine(xy):
    """A constant column (a dead ReLU unit) is centred away; CCA works on the numerical rank."""
    x, y = xy
    dead = x.copy()
    dead[:, 0] = 0.0
    for name in MEASURES:
        v = _value(dead, y, name)
        assert np.isfinite(v), name
    assert _value(dead, dead, "mean_cca") == pytest.approx(1.0, abs=1e-9)
    assert _value(dead, y, "mean_cca") == pytest.approx(ref_mean_cca(dead[:, 1:], y), abs=1e-6)


def test_shape_errors_name_the_problem(xy):
    x, y = xy
    with pytest.raises(SimilarityInputError, match="sample counts differ"):
        similarity(x, y[:-1], "linear_cka")
    with pytest.raises(SimilarityInputError, match=r"\(n, d\), \(n, T, D\) tokens or \(n, C, H, W\)"):
        similarity(x.reshape(N, 2, 2, 2, 1), y, "linear_cka")  # 3-D is a token layer, 5-D is nothing
    with pytest.raises(SimilarityInputError, match="unknown conv_mode"):
        similarity(x, y, "linear_cka", conv_mode="avgpool")
    with pytest.raises(SimilarityInputError, match="unknown measure parameters.*rbf_sigmaa"):
        similarity(x, y, "rbf_cka", rbf_sigmaa=0.5)
    with pytest.raises(SimilarityInputError, match="at least 4 rows"):
        similarity(x, y, "minibatch_cka", minibatch_size=2)
