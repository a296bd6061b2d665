"""The similarity bootstrap (repmatch.similarity.bootstrap: resampled forms against the engine on the
resampled rows) and the generic statistics of repmatch.uncertainty; the "more similar than itself"
counts built on them are tested in tests/sanity/test_sanity.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from repmatch.similarity import bootstrap_similarity_grids, interval_table, similarity_grids, similarity_table
from repmatch.uncertainty import (
    across_pairs,
    binomial_test_vs_chance,
    bootstrap_counts,
    bootstrap_indices,
    bootstrap_mean_interval,
    clopper_pearson_interval,
    holm,
    mcnemar_one_sided_pvalue,
    mcnemar_pvalue,
    mcnemar_test,
    paired_bootstrap_pvalue,
    percentile_interval,
    permutation_test,
    t_interval,
    t_interval_from_summary,
    wilson_interval,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MEASURES = ["linear_cka", "rbf_cka", "debiased_cka", "minibatch_cka", "mean_cca", "svcca", "pwcca", "procrustes",
            "procrustes_distance", "linear_regression"]
PARAMS = {"rbf_sigma": 0.8, "svcca_variance": 0.99, "minibatch_size": 25}


def _net(seed: int, n: int = 90, widths=(3, 5, 6, 4), conv: bool = False) -> dict[str, np.ndarray]:
    z = np.random.default_rng(0).standard_normal((n, 6))
    r = np.random.default_rng(seed)
    out = {}
    for k, w in enumerate(widths):
        x = np.tanh(z @ r.standard_normal((6, w))) + 0.3 * r.standard_normal((n, w))
        if conv:
            x = x[:, :, None, None] + 0.2 * r.standard_normal((n, w, 3, 3))
        out[f"l{k}"] = x.astype(np.float32)
    return out


# --- the bootstrap engine ------------------------------------------------------------------------


@pytest.mark.parametrize("same", [False, True])
def test_weighted_replicates_equal_engine_on_resampled_rows(same):
    """Each weighted-path replicate equals the grid engine run on the gathered rows (duplicates
    included), for every measure and both orientations of the asymmetric ones. The naive
    reference is written here: gather, then the public similarity_grids."""
    a = _net(1, conv=True)
    b = a if same else _net(2, widths=(4, 6, 3), conv=True)
    res = bootstrap_similarity_grids(a, b, MEASURES, n_boot=4, seed=7, params=PARAMS, same_model=same, reverse=not same)
    assert res.path == "weighted" and res.n_boot == 4
    for k, rows in enumerate(res.indices):
        ga = {name: v[rows] for name, v in a.items()}
        gb = ga if same else {name: v[rows] for name, v in b.items()}
        fwd, bwd = similarity_grids(ga, gb, MEASURES, "gap", params=PARAMS, same_model=same, reverse=not same)
        for m in MEASURES:
            np.testing.assert_allclose(res.replicates[m][k], fwd[m], rtol=0, atol=1e-9, err_msg=m)
            if m in bwd:
                np.testing.assert_allclose(res.backward[m][k], bwd[m], rtol=0, atol=1e-9, err_msg=m)
    if not same:
        assert set(res.backward) == {"pwcca", "linear_regression"}


def test_gather_path_handles_per_position_and_matches_weighted_on_gap():
    a, b = _net(1, n=40, conv=True), _net(2, n=40, conv=True)
    g = bootstrap_similarity_grids(a, b, ["linear_cka", "procrustes"], n_boot=3, seed=1, path="gather")
    w = bootstrap_similarity_grids(a, b, ["linear_cka", "procrustes"], n_boot=3, seed=1, path="weighted")
    for m in ("linear_cka", "procrustes"):
        np.testing.assert_allclose(g.replicates[m], w.replicates[m], atol=1e-10)
    pp = bootstrap_similarity_grids(a, b, ["linear_cka"], n_boot=2, seed=1, conv_mode="per_position")
    assert pp.path == "gather"
    rows = pp.indices[0]
    fwd, _ = similarity_grids({k: v[rows] for k, v in a.items()}, {k: v[rows] for k, v in b.items()}, ["linear_cka"],
                              "per_position")
    np.testing.assert_allclose(pp.replicates["linear_cka"][0], fwd["linear_cka"], atol=1e-12)


def _row_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """An asymmetric user measure with no resampled form: mean cosine of x's rows with y's first columns."""
    k = min(x.shape[1], y.shape[1])
    a, b = x[:, :k] - x[:, :k].mean(0), y[:, :k] - y[:, :k].mean(0)
    return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)))


def test_measure_without_resampled_form_gets_intervals_from_the_generic_form():
    """A registered measure without a resampled form (here a user measure) is bootstrapped by the grid
    engine on each resample's rows, beside built-in measures that keep their resampled forms (whose
    replicates do not change by the company)."""
    from repmatch.similarity import MEASURES, SimilarityInputError
    from repmatch.similarity.user import make_user_measure, register_user_measure

    props = {"symmetric": False, "larger_is_similar": True, "identity_value": 1.0, "invariances": []}
    before = dict(MEASURES)
    register_user_measure(make_user_measure("row_cosine", _row_cosine, props))
    try:
        a, b = _net(1, n=60), _net(2, n=60, widths=(4, 6, 3))
        ms = ["linear_cka", "row_cosine", "pwcca"]
        res = bootstrap_similarity_grids(a, b, ms, n_boot=3, seed=5, params=PARAMS, reverse=True)
        alone = bootstrap_similarity_grids(a, b, ["linear_cka", "pwcca"], n_boot=3, seed=5, params=PARAMS, reverse=True)
        assert res.path == "weighted+gather" and alone.path == "weighted"
        assert set(res.backward) == {"row_cosine", "pwcca"}
        for m in ("linear_cka", "pwcca"):
            np.testing.assert_array_equal(res.replicates[m], alone.replicates[m])
        np.testing.assert_array_equal(res.backward["pwcca"], alone.backward["pwcca"])
        for k, rows in enumerate(res.indices):
            ga, gb = {n: v[rows] for n, v in a.items()}, {n: v[rows] for n, v in b.items()}
            want = np.array([[_row_cosine(x.astype(np.float64), y.astype(np.float64)) for y in gb.values()] for x in ga.values()])
            np.testing.assert_allclose(res.replicates["row_cosine"][k], want, rtol=0, atol=1e-12)
            back = np.array([[_row_cosine(y.astype(np.float64), x.astype(np.float64)) for x in ga.values()] for y in gb.values()])
            np.testing.assert_allclose(res.backward["row_cosine"][k], back, rtol=0, atol=1e-12)
        with pytest.raises(SimilarityInputError, match="row_cosine"):
            bootstrap_similarity_grids(a, b, ms, n_boot=2, seed=5, path="weighted")
    finally:
        MEASURES.clear()
        MEASURES.update(before)


def test_minibatch_form_is_the_same_whatever_blocks_the_chunk_used():
    """Minibatch CKA reads the chunk's per-block products when the chunk formed them over its own
    minibatches, and forms them itself otherwise: the same numbers either way."""
    import torch

    from repmatch.similarity.cka import minibatch_cka_resampled
    from repmatch.similarity.context import GridContext
    from repmatch.similarity.resampled import ResampleChunk, ResampleSet, row_blocks

    a, b = _net(1), _net(2, widths=(4, 6, 3))
    xa = [torch.as_tensor(v, dtype=torch.float64) for v in a.values()]
    xb = [torch.as_tensor(v, dtype=torch.float64) for v in b.values()]
    rs = ResampleSet([x - x.mean(0) for x in xa], [x - x.mean(0) for x in xb], [1e-7] * 4, [1e-7] * 3, same=False)
    idx = bootstrap_indices(90, 3, seed=2)
    rows, w = torch.as_tensor(idx), torch.as_tensor(bootstrap_counts(idx, 90))
    ctx = GridContext(PARAMS)
    own, _ = minibatch_cka_resampled(ResampleChunk(rs, rows, w, row_blocks(90, 25)), ctx, False)
    other, _ = minibatch_cka_resampled(ResampleChunk(rs, rows, w, [slice(0, 90)]), ctx, False)
    torch.testing.assert_close(own, other, rtol=0, atol=0)
    res = bootstrap_similarity_grids(a, b, ["minibatch_cka"], n_boot=3, seed=2, params=PARAMS)
    np.testing.assert_array_equal(res.replicates["minibatch_cka"], own.numpy())


def test_interval_table_rows_match_similarity_table_and_bracket_the_point():
    a, b = _net(1, n=150), _net(2, n=150, widths=(4, 6, 3))
    ms = ["linear_cka", "pwcca", "linear_regression"]
    point = similarity_table(a, b, "A", "B", ms, params=PARAMS)
    res = bootstrap_similarity_grids(a, b, ms, n_boot=200, seed=0, params=PARAMS, reverse=True)
    ci = interval_table(res, "A", "B", list(a), list(b), level=0.95)
    keys = ["model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method"]
    merged = point.merge(ci, on=keys, how="outer", validate="one_to_one", indicator=True)
    assert (merged["_merge"] == "both").all() and len(merged) == len(point)
    assert (merged["n_boot"] == 200).all()
    assert (merged["ci_low"] <= merged["ci_high"]).all()
    lin = merged[merged["method"] == "linear_cka"]
    assert ((lin["ci_low"] <= lin["value"]) & (lin["value"] <= lin["ci_high"])).all()


def test_zero_variance_layer_is_nan_like_the_engine():
    a, b = _net(1), _net(2, widths=(4, 6, 3))
    a["l1"] = np.full_like(a["l1"], 2.5)
    res = bootstrap_similarity_grids(a, b, MEASURES, n_boot=3, seed=0, params=PARAMS, reverse=True)
    for m in MEASURES:
        assert np.isnan(res.replicates[m][:, 1, :]).all(), m
        assert np.isfinite(res.replicates[m][:, 0, :]).all(), m
        if m in res.backward:
            assert np.isnan(res.backward[m][:, :, 1]).all(), m


def test_resamples_are_seeded_and_shared_by_measures():
    a, b = _net(1), _net(2)
    both = bootstrap_similarity_grids(a, b, ["linear_cka", "mean_cca"], n_boot=6, seed=3)
    one = bootstrap_similarity_grids(a, b, ["mean_cca"], n_boot=6, seed=3)
    np.testing.assert_array_equal(both.indices, one.indices)
    np.testing.assert_allclose(both.replicates["mean_cca"], one.replicates["mean_cca"], atol=1e-12)
    other = bootstrap_indices(90, 6, seed=4)
    assert not np.array_equal(other, both.indices)
    counts = bootstrap_counts(both.indices, 90)
    assert np.all(counts.sum(1) == 90)
    assert np.all(np.diff(both.indices, axis=1) >= 0)


def _gaussian_pair(rng: np.random.Generator, n: int, rho: float, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, 3)) * scales
    y = rho * x + np.sqrt(1 - rho**2) * rng.standard_normal((n, 3)) * scales
    return x, y


def test_linear_cka_interval_covers_population_value():
    """95% percentile intervals of linear CKA cover the population value in >= 90% of 200 probe sets.

    x ~ N(0, S), y = rho x + sqrt(1 - rho^2) e, e ~ N(0, S), S = diag(s^2): Sxx = Syy = S,
    Sxy = rho S, so CKA = ||rho S||_F^2 / ||S||_F^2 = rho^2, whatever S. Checked against a huge sample too.
    """
    rho, scales, n = 0.6, np.array([1.0, 0.7, 0.4]), 400
    population = rho**2
    big = _gaussian_pair(np.random.default_rng(123), 400_000, rho, scales)
    huge, _ = similarity_grids({"x": big[0]}, {"y": big[1]}, ["linear_cka"])
    assert abs(huge["linear_cka"][0, 0] - population) < 5e-3
    rng = np.random.default_rng(2024)
    covered = 0
    for sim in range(200):
        x, y = _gaussian_pair(rng, n, rho, scales)
        res = bootstrap_similarity_grids({"x": x}, {"y": y}, ["linear_cka"], n_boot=400, seed=sim)
        lo, hi, nv = res.interval("linear_cka", level=0.95)
        assert nv[0, 0] == 400
        covered += int(lo[0, 0] <= population <= hi[0, 0])
    assert covered >= 180, covered


# --- McNemar, Holm, binomial, permutation --------------------------------------------------------


def test_mcnemar_hand_computed():
    """7 images right only in cell 1, 2 right only in cell 2 (and 41 concordant).
    Bin(9, 1/2): P(X <= 2) = (1 + 9 + 36) / 512 = 46/512, P(X = 2) = 36/512.
    exact p = 2 * 46/512 = 0.1796875; mid-p = 92/512 - 36/512 = 56/512 = 0.109375."""
    c1 = np.array([1] * 7 + [0] * 2 + [1] * 30 + [0] * 11)
    c2 = np.array([0] * 7 + [1] * 2 + [1] * 30 + [0] * 11)
    ex = mcnemar_test(c1, c2, method="exact")
    mid = mcnemar_test(c1, c2, method="midp")
    assert (ex.b, ex.c) == (7, 2)
    assert ex.p_value == pytest.approx(92 / 512, abs=1e-12)
    assert mid.p_value == pytest.approx(56 / 512, abs=1e-12)
    assert mcnemar_test(c2, c1, "exact").p_value == pytest.approx(ex.p_value)
    assert mcnemar_pvalue(0, 0) == 1.0
    assert mcnemar_pvalue(5, 5, "exact") == 1.0
    # 10 vs 0: exact 2 / 2^10
    assert mcnemar_pvalue(10, 0, "exact") == pytest.approx(2 / 1024)
    with pytest.raises(ValueError):
        mcnemar_test(np.array([0, 2]), np.array([1, 1]))


def test_mcnemar_one_sided_hand_computed():
    """b = 4 right only in the first cell, c = 3 only in the second: X ~ Bin(7, 1/2).
    exact P(X >= 4) = (35 + 21 + 7 + 1)/128; mid-p P(X > 4) + P(X = 4)/2 = (21 + 7 + 1)/128 + 35/256 = 93/256."""
    assert mcnemar_one_sided_pvalue(4, 3, "exact") == pytest.approx((35 + 21 + 7 + 1) / 128)
    assert mcnemar_one_sided_pvalue(4, 3, "midp") == pytest.approx(93 / 256)
    assert mcnemar_one_sided_pvalue(0, 0) == 1.0


def test_mcnemar_exact_sums_match_scipy_binomial_on_a_grid():
    """The exact integer sums equal scipy's binomial tail (a reference computed another way) for every
    discordant split up to m = 60, and stay finite and in [0, 1] far out (m = 5000)."""
    from scipy import stats

    for m in range(1, 61):
        for b in range(m + 1):
            c, k = m - b, min(b, m - b)
            assert mcnemar_pvalue(b, c, "exact") == pytest.approx(min(1.0, 2 * stats.binom.cdf(k, m, 0.5)), rel=1e-12, abs=1e-300)
            midp = min(1.0, 2 * stats.binom.cdf(k, m, 0.5) - stats.binom.pmf(k, m, 0.5))
            assert mcnemar_pvalue(b, c, "midp") == pytest.approx(midp, rel=1e-12, abs=1e-300)
            assert mcnemar_one_sided_pvalue(b, c, "exact") == pytest.approx(stats.binom.sf(b - 1, m, 0.5), rel=1e-12, abs=1e-300)
            one_mid = stats.binom.sf(b, m, 0.5) + 0.5 * stats.binom.pmf(b, m, 0.5)
            assert mcnemar_one_sided_pvalue(b, c, "midp") == pytest.approx(one_mid, rel=1e-12, abs=1e-300)
    far = mcnemar_one_sided_pvalue(2600, 2400, "midp")
    assert 0.0 < far < 0.01 and mcnemar_one_sided_pvalue(2400, 2600, "midp") > 0.99


def test_holm_hand_computed_and_nan():
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm(p)[4])
    assert np.all(holm(np.array([0.5, 0.9])) <= 1.0)


def test_binomial_intervals_and_test():
    lo, hi = wilson_interval(5, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = clopper_pearson_interval(5, 10)
    assert (float(lo), float(hi)) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    lo, hi = wilson_interval(0, 20)
    assert float(lo) == 0.0 and 0 < float(hi) < 0.2
    r = binomial_test_vs_chance(31, 36, 1 / 6)
    assert r.p_value == pytest.approx(stats.binomtest(31, 36, 1 / 6, alternative="greater").pvalue, rel=1e-9)
    assert r.ci_low <= 31 / 36 <= r.ci_high and r.ci_low > 1 / 6
    assert binomial_test_vs_chance(1, 6, 1 / 6).p_value > 0.5


def test_wilson_coverage_simulated():
    rng = np.random.default_rng(0)
    n, p = 36, 0.8
    k = rng.binomial(n, p, size=4000)
    lo, hi = wilson_interval(k, np.full_like(k, n))
    assert np.mean((lo <= p) & (p <= hi)) >= 0.93


def test_permutation_exact_hand_computed():
    # x = {3, 4}, y = {1, 2}: obs = 2; of the 6 splits, |diff| >= 2 for {3,4} and {1,2}: p = 1/3
    obs, p = permutation_test([3, 4], [1, 2])
    assert obs == 2.0 and p == pytest.approx(1 / 3)
    obs, p = permutation_test([3, 4], [1, 2], alternative="greater")
    assert p == pytest.approx(1 / 6)


def test_permutation_monte_carlo_detects_shift_and_not_noise():
    rng = np.random.default_rng(1)
    _, p_shift = permutation_test(rng.normal(1, 1, 30), rng.normal(0, 1, 30), n_perm=2000)
    _, p_null = permutation_test(rng.normal(0, 1, 30), rng.normal(0, 1, 30), n_perm=2000)
    assert p_shift < 0.01 and p_null > 0.05


def test_paired_bootstrap_pvalue_bounds():
    x = np.linspace(0, 1, 99)
    assert paired_bootstrap_pvalue(x + 1, x, "greater") == pytest.approx(1 / 100)
    assert paired_bootstrap_pvalue(x, x + 1, "greater") == pytest.approx(1.0)
    assert paired_bootstrap_pvalue(x, x + 1, "two-sided") == pytest.approx(2 / 100)


# --- t intervals, across pairs, percentile -------------------------------------------------------


def test_t_interval_matches_scipy_and_summary_form():
    v = np.array([0.61, 0.72, 0.66, 0.69])
    mean, std, lo, hi, count = t_interval(v)
    ref = stats.t.interval(0.95, df=3, loc=v.mean(), scale=stats.sem(v))
    assert (float(lo), float(hi)) == pytest.approx(ref)
    lo2, hi2 = t_interval_from_summary(v.mean(), v.std(), 4, ddof=0)  # the subspace table stores np.std
    assert (float(lo2), float(hi2)) == pytest.approx(ref)
    _, _, lo1, hi1, c1 = t_interval(np.array([0.5]))
    assert np.isnan(lo1) and c1 == 1


def test_across_pairs_grid():
    grids = np.stack([np.full((2, 3), x) for x in (0.1, 0.2, 0.3)])
    grids[0, 0, 0] = np.nan
    agg = across_pairs(grids)
    assert agg.mean.shape == (2, 3) and agg.count[0, 0] == 2 and agg.count[1, 1] == 3
    assert agg.ci_low[1, 1] < 0.2 < agg.ci_high[1, 1]
    assert agg.std[1, 1] == pytest.approx(0.1)


def test_percentile_interval_drops_nan_resamples():
    reps = np.arange(100, dtype=float).reshape(100, 1)
    reps[:10] = np.nan
    lo, hi, nv = percentile_interval(reps, level=0.9)
    assert nv[0] == 90 and lo[0] == pytest.approx(np.quantile(np.arange(10, 100), 0.05))
    lo, hi, nv = percentile_interval(np.full((5, 1), np.nan))
    assert np.isnan(lo[0]) and nv[0] == 0


def test_bootstrap_mean_interval_over_draws():
    v = np.random.default_rng(0).normal(0.5, 0.1, size=(16, 3))
    lo, hi = bootstrap_mean_interval(v, n_boot=2000, seed=0)
    assert np.all(lo < v.mean(0)) and np.all(v.mean(0) < hi)


# --- resampled forms of the neighbourhood, RSA, shape and descriptive measures ---------------------------------

NEW_MEASURES = ["mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine", "rsa", "shape_angular",
                "shape_euclidean", "magnitude_difference", "concentricity_difference"]


def _offset_net(seed: int, n: int = 60, widths=(5, 8, 4), integer: bool = False) -> dict[str, np.ndarray]:
    """Layers with a nonzero mean (cosine distances and the baselines see the offset); ``integer``:
    small integer activations, so that distances and RDM entries tie exactly."""
    r = np.random.default_rng(seed)
    z = np.random.default_rng(0).standard_normal((n, 6))
    out = {}
    for k, w in enumerate(widths):
        x = np.tanh(z @ r.standard_normal((6, w))) + 0.3 * r.standard_normal((n, w)) + 0.5
        out[f"l{k}"] = (np.round(3 * x) if integer else x).astype(np.float32)
    return out


@pytest.mark.parametrize("same", [False, True])
@pytest.mark.parametrize("variant", [
    {"knn_distance": "cosine", "rsa_rdm": "correlation", "rsa_compare": "spearman", "shape_alpha": 1.0},
    {"knn_distance": "euclidean", "rsa_rdm": "euclidean", "rsa_compare": "pearson", "shape_alpha": 0.5},
    {"knn_distance": "cosine", "rsa_rdm": "cosine", "rsa_compare": "kendall_tau_a", "shape_alpha": 0.0},
])
@pytest.mark.parametrize("integer", [False, True])
def test_new_measures_resampled_forms_equal_the_generic_form(same, variant, integer):
    """Each resampled form equals the generic form (the engine on the gathered rows, told which rows
    are copies of one sample) on the same resamples, a resample's repeated neighbours (exact ties)
    included (a resample's ties are exact in both forms). Integer data: distances and RDM entries of
    different pairs that tie in exact arithmetic round differently in the two forms (distances on the
    probe set's or the resample's rows), so orders and ranks (k-NN, RSA by ranks) are not comparable
    there; the other measures are compared on it too. Weighted ranks with true ties:
    test_resampled_rsa_ranks_equal_scipy_on_the_expanded_entries."""
    a = _offset_net(1, integer=integer)
    b = a if same else _offset_net(2, widths=(4, 6, 3), integer=integer)
    params = {"knn_k": 5, **variant}
    fast = bootstrap_similarity_grids(a, b, NEW_MEASURES, n_boot=4, seed=3, params=params, same_model=same)
    slow = bootstrap_similarity_grids(a, b, NEW_MEASURES, n_boot=4, seed=3, params=params, same_model=same, path="gather")
    assert fast.path == "weighted" and slow.path == "gather"
    for m in NEW_MEASURES:
        assert np.isfinite(fast.replicates[m]).all(), m
        if integer and (m in ("mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine")
                        or (m == "rsa" and variant["rsa_compare"] != "pearson")):
            continue
        np.testing.assert_allclose(fast.replicates[m], slow.replicates[m], rtol=0, atol=1e-10, err_msg=m)


def test_shape_alpha_zero_resampled_form_is_nan_where_the_ranks_exceed_n_minus_1():
    """CCA-like shape metric (alpha = 0): the cells the grid leaves undefined are NaN in both forms."""
    a, b = _offset_net(1, n=14, widths=(5, 9)), _offset_net(2, n=14, widths=(4, 8))
    params = {"shape_alpha": 0.0}
    fast = bootstrap_similarity_grids(a, b, ["shape_angular"], n_boot=3, seed=1, params=params)
    slow = bootstrap_similarity_grids(a, b, ["shape_angular"], n_boot=3, seed=1, params=params, path="gather")
    nan = np.isnan(slow.replicates["shape_angular"])
    assert nan.any() and (~nan).any()
    np.testing.assert_array_equal(np.isnan(fast.replicates["shape_angular"]), nan)
    np.testing.assert_allclose(fast.replicates["shape_angular"][~nan], slow.replicates["shape_angular"][~nan], rtol=0, atol=1e-10)


def _naive_knn_sets(x: np.ndarray, ids: np.ndarray, k: int) -> list[set[int]]:
    """k nearest rows (cosine distance) of each row, skipping every row that is a copy of its sample;
    ties by (distance, row), as the measures; one sample at a time."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    out = []
    for p in range(len(x)):
        cand = [(1.0 - float(unit[p] @ unit[q]), q) for q in range(len(x)) if ids[q] != ids[p]]
        out.append({q for _, q in sorted(cand)[:k]})
    return out


def _naive_spearman_rsa(xa: np.ndarray, xb: np.ndarray, ids: np.ndarray) -> float:
    """Spearman correlation of the correlation-distance RDMs over the pairs of rows that are not copies of one sample."""
    keep = [(p, q) for p in range(len(ids)) for q in range(p + 1, len(ids)) if ids[p] != ids[q]]
    da, db = 1.0 - np.corrcoef(xa), 1.0 - np.corrcoef(xb)
    return float(stats.spearmanr([da[p, q] for p, q in keep], [db[p, q] for p, q in keep]).statistic)


def test_resampled_knn_and_rsa_leave_copies_of_a_sample_out_against_a_naive_reference():
    """Copies of a resampled sample are neither its neighbours (k-NN) nor compared (RSA): checked
    against references written here, one sample at a time, on the weighted path's resamples."""
    a, b = _offset_net(1, n=40), _offset_net(2, n=40, widths=(4, 6, 3))
    k = 4
    res = bootstrap_similarity_grids(a, b, ["mutual_knn", "rsa"], n_boot=3, seed=5, params={"knn_k": k})
    assert res.path == "weighted"
    for r, rows in enumerate(res.indices):
        assert len(set(rows)) < len(rows)  # the resample has copies
        for i, xa in enumerate(a.values()):
            for j, xb in enumerate(b.values()):
                ga, gb = xa[rows].astype(np.float64), xb[rows].astype(np.float64)
                na, nb = _naive_knn_sets(ga, rows, k), _naive_knn_sets(gb, rows, k)
                mutual = np.mean([len(sa & sb) / k for sa, sb in zip(na, nb)])
                assert res.replicates["mutual_knn"][r, i, j] == pytest.approx(mutual, abs=1e-12)
                assert res.replicates["rsa"][r, i, j] == pytest.approx(_naive_spearman_rsa(ga, gb, rows), abs=1e-10)


def test_knn_resampled_form_without_copies_equals_the_point_form_on_those_rows():
    """A resample that draws every sample once (a permutation) has no copies: its k-NN values are
    the point form's on the permuted rows, for every neighbourhood measure and both distances."""
    import torch

    from repmatch.similarity.context import GridContext
    from repmatch.similarity.neighbourhood import MEASURE_NAMES, mutual_knn_resampled
    from repmatch.similarity.resampled import ResampleChunk, ResampleSet

    n = 50
    a, b = _offset_net(1, n=n), _offset_net(2, n=n, widths=(4, 6, 3))
    xa = [torch.as_tensor(v, dtype=torch.float64) for v in a.values()]
    xb = [torch.as_tensor(v, dtype=torch.float64) for v in b.values()]
    rs = ResampleSet([x - x.mean(0) for x in xa], [x - x.mean(0) for x in xb], [1e-7] * 3, [1e-7] * 3, same=False,
                     mean_a=[x.mean(0, keepdim=True) for x in xa], mean_b=[x.mean(0, keepdim=True) for x in xb])
    perm = np.random.default_rng(4).permutation(n)
    rows = torch.as_tensor(np.sort(perm))[None]  # the chunk holds sorted rows, as the bootstrap's
    w = torch.ones(1, n, dtype=torch.float64)
    for distance in ("cosine", "euclidean"):
        params = {"knn_k": 5, "knn_distance": distance}
        ch = ResampleChunk(rs, rows, w, [slice(0, n)])
        mutual_knn_resampled(ch, GridContext(params), False)
        fast = ch.memo(("knn", 5, distance), lambda: None)
        point, _ = similarity_grids({k: v[perm] for k, v in a.items()}, {k: v[perm] for k, v in b.items()},
                                    list(MEASURE_NAMES), "gap", params=params)  # fmt: skip
        for m in MEASURE_NAMES:
            np.testing.assert_allclose(fast[m][0].numpy(), point[m], rtol=0, atol=1e-12, err_msg=f"{m} {distance}")


def test_resampled_rsa_ranks_equal_scipy_on_the_expanded_entries():
    """The weighted average ranks (an entry held omega times, ties within and across entries) equal
    scipy's average ranks of the entries written out omega times each."""
    import torch

    from repmatch.similarity.rsa import ResampledRdms

    r = np.random.default_rng(0)
    values = torch.as_tensor(r.integers(0, 6, size=(2, 40)).astype(np.float64))  # many exact ties
    omega = torch.as_tensor(r.integers(0, 4, size=40).astype(np.float64))  # 0: entry absent from the resample
    ranks = ResampledRdms.ranks(ResampledRdms.tie_groups(values), omega)
    reps = omega.long().numpy()
    for layer in range(2):
        expanded = stats.rankdata(np.repeat(values[layer].numpy(), reps))
        np.testing.assert_array_equal(np.repeat(ranks[layer].numpy(), reps), expanded)
