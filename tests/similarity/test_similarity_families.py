"""Neighbourhood, RSA and shape measures beyond the registry contract: every parameter variant
against the naive references of test_similarity_measures, the invariances each variant has, tie
handling, the metric axioms of the shape metrics and their two ends (Procrustes, CCA)."""

from __future__ import annotations

import numpy as np
import pytest
from test_similarity_measures import (
    TRANSFORMS,
    _invertible,
    _orthogonal,
    ref_jaccard_knn,
    ref_mean_cca,
    ref_mutual_knn,
    ref_rank_similarity,
    ref_rsa,
    ref_second_order_cosine,
    ref_shape,
)

from repmatch.similarity import SimilarityInputError, similarity, similarity_grids
from repmatch.similarity import neighbourhood

KNN = {"mutual_knn": ref_mutual_knn, "jaccard_knn": ref_jaccard_knn, "rank_similarity": ref_rank_similarity,
       "second_order_cosine": ref_second_order_cosine}


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((60, 7)) @ rng.standard_normal((7, 9)), 0) + 0.1 * rng.standard_normal((60, 9))
    y = np.tanh(x @ rng.standard_normal((9, 5))) + 0.2 * rng.standard_normal((60, 5))
    return x, y


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 4, 15])
@pytest.mark.parametrize("name", sorted(KNN))
def test_knn_variants_match_the_reference(name, k, distance, pair):
    x, y = pair
    got = similarity(x, y, name, knn_k=k, knn_distance=distance)
    assert got == pytest.approx(KNN[name](x, y, k, distance), abs=1e-10)


@pytest.mark.parametrize("name", sorted(KNN))
def test_knn_translation_invariance_depends_on_the_distance(name, pair):
    """Euclidean neighbourhoods ignore a shift of the activations; cosine ones (rows as stored) do not."""
    x, y = pair
    shifted = TRANSFORMS["translation"](x, 3)
    for distance, invariant in (("euclidean", True), ("cosine", False)):
        base = similarity(x, y, name, knn_distance=distance)
        moved = similarity(shifted, y, name, knn_distance=distance)
        assert (abs(moved - base) < 1e-10) is invariant, (distance, base, moved)
        assert similarity(TRANSFORMS["orthogonal"](x, 4), 2.5 * y, name, knn_distance=distance) == pytest.approx(base, abs=1e-10)


def test_knn_ties_are_broken_by_sample_index():
    """Integer points with many exact distance ties and a duplicated row (as a bootstrap resample
    has). 32 rows: the column means are dyadic, so centring and every Euclidean distance are exact
    in float64 and the computed ties are the true ones; the lists must then follow (distance,
    index), as the naive reference does. Cosine distances round, so for them only repeatability."""
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(32, 2)).astype(float)
    x[10] = x[3]
    y = rng.integers(0, 3, size=(32, 3)).astype(float)
    for name, ref in KNN.items():
        values = {similarity(x, y, name, knn_k=5, knn_distance="euclidean") for _ in range(3)}
        assert len(values) == 1
        assert values.pop() == pytest.approx(ref(x, y, 5, "euclidean"), abs=1e-12), name
        assert len({similarity(x + 1, y + 1, name, knn_k=5) for _ in range(3)}) == 1


def test_knn_lists_order_ties_by_index():
    import torch

    d = torch.tensor([[np.inf, 1.0, 0.5, 1.0, 1.0, 0.5]], dtype=torch.float64)
    assert neighbourhood.knn_lists(d, 3).tolist() == [[2, 5, 1]]
    assert neighbourhood.knn_lists(d, 4).tolist() == [[2, 5, 1, 3]]


def test_knn_blocks_give_the_same_grid(pair, monkeypatch):
    """Row blocks (forced tiny here) and the per-layer cache change nothing."""
    x, y = pair
    a, b = {"x": x, "y": y}, {"y": y, "x2": x[:, ::-1] * 2}
    measures = sorted(KNN)
    full, _ = similarity_grids(a, b, measures, params={"knn_k": 6})
    monkeypatch.setattr(neighbourhood, "BLOCK_FLOATS", 7 * 60)
    monkeypatch.setattr(neighbourhood, "MEMO_ROWS", 0)
    blocked, _ = similarity_grids(a, b, measures, params={"knn_k": 6})
    for m in measures:
        np.testing.assert_allclose(blocked[m], full[m], atol=1e-12)
        assert full[m][1, 0] == pytest.approx(1.0)  # y against itself


def test_knn_parameters_are_checked(pair):
    x, y = pair
    with pytest.raises(SimilarityInputError, match="knn_k = 59"):
        similarity(x, y, "mutual_knn", knn_k=59)
    with pytest.raises(SimilarityInputError, match="knn_distance"):
        similarity(x, y, "mutual_knn", knn_distance="manhattan")


def test_cosine_neighbourhood_of_a_zero_row_is_degenerate(pair):
    from repmatch.similarity import DegenerateInputError

    x, y = pair
    x = x.copy()
    x[4] = 0.0
    with pytest.raises(DegenerateInputError, match="all-zero rows"):
        similarity(x, y, "mutual_knn")
    assert np.isfinite(similarity(x, y, "mutual_knn", knn_distance="euclidean"))


# --- RSA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compare", ["spearman", "pearson", "kendall_tau_a"])
@pytest.mark.parametrize("rdm", ["correlation", "euclidean", "cosine"])
def test_rsa_variants_match_the_reference(rdm, compare, pair):
    x, y = pair[0][:30], pair[1][:30]
    got = similarity(x, y, "rsa", rsa_rdm=rdm, rsa_compare=compare)
    assert got == pytest.approx(ref_rsa(x, y, rdm, compare), abs=1e-10)
    assert similarity(x, x, "rsa", rsa_rdm=rdm, rsa_compare=compare) == pytest.approx(1.0, abs=1e-12)


def test_rsa_ties_in_the_rdm():
    """Integer points, 32 rows (dyadic means: exact distances): many equal RDM entries (average ranks, zero-sign pairs)."""
    rng = np.random.default_rng(8)
    x, y = rng.integers(0, 3, (32, 2)).astype(float), rng.integers(0, 3, (32, 3)).astype(float)
    for compare in ("spearman", "kendall_tau_a"):
        got = similarity(x, y, "rsa", rsa_rdm="euclidean", rsa_compare=compare)
        assert got == pytest.approx(ref_rsa(x, y, "euclidean", compare), abs=1e-10)


def test_rsa_invariances_by_rdm(pair):
    """Euclidean RDMs: orthogonal maps and translation too; correlation RDMs: a common offset of all
    features (row centring removes it) but not a per-feature shift or a rotation."""
    x, y = pair
    eu = similarity(x, y, "rsa", rsa_rdm="euclidean")
    assert similarity(TRANSFORMS["translation"](TRANSFORMS["orthogonal"](x, 1), 2), y, "rsa", rsa_rdm="euclidean") == pytest.approx(eu, abs=1e-10)
    corr = similarity(x, y, "rsa")
    assert similarity(x + 1000.0, y, "rsa") == pytest.approx(corr, abs=1e-10)
    assert abs(similarity(TRANSFORMS["translation"](x, 2), y, "rsa") - corr) > 1e-6
    assert abs(similarity(TRANSFORMS["orthogonal"](x, 2), y, "rsa") - corr) > 1e-6


def test_rsa_parameters_are_checked(pair):
    x, y = pair
    with pytest.raises(SimilarityInputError, match="rsa_rdm"):
        similarity(x, y, "rsa", rsa_rdm="mahalanobis")
    with pytest.raises(SimilarityInputError, match="rsa_compare"):
        similarity(x, y, "rsa", rsa_compare="kendall_tau_b")


# --- shape metrics ------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.7, 1.0])
def test_shape_metrics_match_the_reference(alpha, pair):
    x, y = pair
    ang, euc = ref_shape(x, y, alpha)
    assert similarity(x, y, "shape_angular", shape_alpha=alpha) == pytest.approx(ang, abs=1e-9)
    assert similarity(x, y, "shape_euclidean", shape_alpha=alpha) == pytest.approx(euc, abs=1e-9)


@pytest.mark.parametrize("name", ["shape_angular", "shape_euclidean"])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_shape_metrics_satisfy_the_triangle_inequality(name, alpha):
    rng = np.random.default_rng(11)
    worst = np.inf
    for t in range(12):
        base = rng.standard_normal((50, 6))
        z = [base @ rng.standard_normal((6, w)) + s * rng.standard_normal((50, w)) for w, s in ((6, 0.5), (8, 1.0), (5, 2.0))]
        rng.shuffle(z)
        layers = {str(i): v for i, v in enumerate(z)}
        d = similarity_grids(layers, layers, [name], params={"shape_alpha": alpha})[0][name]
        np.testing.assert_allclose(d, d.T, atol=1e-12)
        worst = min(worst, d[0, 1] + d[1, 2] - d[0, 2])
    assert worst >= -1e-12


def test_shape_alpha_one_is_procrustes(pair):
    x, y = pair
    assert similarity(x, y, "shape_angular") == pytest.approx(np.arccos(similarity(x, y, "procrustes")), abs=1e-10)
    assert similarity(x, y, "shape_euclidean") ** 2 == pytest.approx(similarity(x, y, "procrustes_distance"), abs=1e-10)


def test_shape_alpha_zero_is_cca_like(pair):
    """Full whitening: cos(angle) = mean canonical correlation for equal ranks, and every invertible
    linear map of either layer leaves the distance unchanged (not so for alpha > 0)."""
    x, y = pair[0], pair[1] @ np.random.default_rng(2).standard_normal((5, 9))  # rank 5 in 9 columns
    z = pair[0][:, :5] + 0.3 * pair[1]
    assert np.cos(similarity(z, pair[1], "shape_angular", shape_alpha=0.0)) == pytest.approx(ref_mean_cca(z, pair[1]), abs=1e-9)
    base = similarity(x, y, "shape_angular", shape_alpha=0.0)
    moved = similarity(x @ _invertible(9, 3), y, "shape_angular", shape_alpha=0.0)
    assert moved == pytest.approx(base, abs=1e-9)
    assert abs(similarity(x @ _invertible(9, 3), y, "shape_angular", shape_alpha=0.5) - similarity(x, y, "shape_angular", shape_alpha=0.5)) > 1e-6
    q = _orthogonal(9, 4)
    assert similarity(x @ q, y, "shape_angular", shape_alpha=0.5) == pytest.approx(similarity(x, y, "shape_angular", shape_alpha=0.5), abs=1e-10)


def test_shape_alpha_zero_with_too_many_features_is_degenerate():
    from repmatch.similarity import DegenerateInputError

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 12)), rng.standard_normal((20, 12))
    with pytest.raises(DegenerateInputError, match="shape_alpha = 0"):
        similarity(x, y, "shape_angular", shape_alpha=0.0)
    assert np.isfinite(similarity(x, y, "shape_angular", shape_alpha=0.5))


def test_shape_alpha_is_checked(pair):
    with pytest.raises(SimilarityInputError, match="shape_alpha"):
        similarity(*pair, "shape_angular", shape_alpha=1.5)
