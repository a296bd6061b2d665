"""Ding et al.'s specificity test within a layer: the per-layer statistic, the stratified mean, its
within-layer permutation test and jackknife interval, the NaN-with-reason rule, the points built
from the job tables, and the key that sets how many networks the test compares."""

from __future__ import annotations

import dataclasses
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from repmatch.sensitivity.specificity import (
    MIN_PAIRS,
    LayerPoints,
    index_distances,
    jackknife_interval,
    layer_specificity,
    network_scores,
    specificity_points,
    specificity_tables,
    stitch_distances,
    stratified_specificity,
)

REPO = Path(__file__).resolve().parents[2]


def _tables(score: np.ndarray, distance, layers=("l1", "l2", "l3"), method="idx"):
    """Point and score tables for networks m0..m{n-1}: ``score[k, i]`` = network i's probe accuracy
    at layer k; ``distance(k, i, j)`` = the method's distance between networks i and j at layer k."""
    n = score.shape[1]
    nets = [f"m{i}" for i in range(n)]
    scores = pd.DataFrame([{"model": nets[i], "layer": layer, "probe": score[k, i], "network": 0.9 + 0.001 * i}
                           for k, layer in enumerate(layers) for i in range(n)])  # fmt: skip
    dist = pd.DataFrame([{"model_a": nets[i], "model_b": nets[j], "layer": layer, "method": method,
                          "distance": distance(k, i, j)} for k, layer in enumerate(layers) for i, j in combinations(range(n), 2)])  # fmt: skip
    return specificity_points(dist, scores), scores


def _simpson(n=6, seed=0):
    """Within each layer the distance rises with the probe gap; across layers the layer with the
    larger gaps has far smaller distances, so a correlation over all points is strongly negative."""
    rng = np.random.default_rng(seed)
    score = np.stack([0.5 + 10.0 ** (k - 2) * rng.uniform(size=n) for k in range(3)])  # gaps grow tenfold per layer
    return _tables(score, lambda k, i, j: 10.0 - 4.0 * k + abs(score[k, i] - score[k, j]))


def test_simpson_construction_pooled_negative_but_every_layer_and_the_stratified_mean_positive():
    points, scores = _simpson()
    pooled = stats.spearmanr(points["distance"], points["probe_gap"]).statistic  # the statistic the old code reported
    assert pooled < -0.5
    by_layer, strat = specificity_tables(points, scores, level=0.95, n_permutations=999, seed=0)
    probe = by_layer[by_layer.gap == "probe"]
    for layer, g in points.groupby("layer"):  # naive per-layer reference
        ref = stats.spearmanr(g["distance"], g["probe_gap"]).statistic
        assert probe.set_index("layer").loc[layer, "spearman"] == pytest.approx(ref) and ref > 0.9
    row = strat[strat.gap == "probe"].iloc[0]
    assert row.spearman == pytest.approx(probe.spearman.mean()) and row.spearman > 0.9 and row.p_value < 0.01
    assert row.spearman_low > 0 and row.n_layers_defined == 3


def test_no_statistic_pools_layers_a_layer_offset_changes_nothing():
    """Shifting one layer's distances and scores by constants moves the pooled correlation, never
    a reported number: no output depends on how points of different layers compare."""
    points, scores = _simpson()
    shifted, sc2 = points.copy(), scores.copy()
    shifted.loc[shifted.layer == "l2", "distance"] += 100.0
    sc2.loc[sc2.layer == "l3", "probe"] += 0.3  # gaps are differences: unchanged
    pooled = stats.spearmanr(points["distance"], points["probe_gap"]).statistic
    assert stats.spearmanr(shifted["distance"], shifted["probe_gap"]).statistic != pytest.approx(pooled)
    a = specificity_tables(points, scores, level=0.9, n_permutations=300, seed=1)
    b = specificity_tables(shifted, sc2, level=0.9, n_permutations=300, seed=1)
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)


def test_null_case_permutation_p_is_rarely_below_alpha():
    """No relation between distance and function, and distances sharing network effects (the
    dependence that makes permuting pairs anti-conservative): p >= 0.05 in >= 90 % of 200 draws."""
    rng = np.random.default_rng(123)
    ps = []
    for _ in range(200):
        u = rng.normal(size=(3, 5))  # a network effect on every distance of that network
        score = rng.uniform(0.8, 0.9, size=(3, 5))
        noise = rng.normal(size=(3, 5, 5))
        a, b = map(np.array, zip(*combinations(range(5), 2)))
        layers = [LayerPoints(f"l{k}", tuple(f"m{i}" for i in range(5)), a, b,
                              np.abs(u[k, a] - u[k, b]) + 0.3 * noise[k, a, b], score[k]) for k in range(3)]  # fmt: skip
        row = stratified_specificity(layers, level=0.95, n_permutations=199, seed=int(rng.integers(1 << 30)))
        ps.append(row["p_value"])
    ps = np.array(ps)
    assert np.all((ps > 0) & (ps <= 1))
    assert np.mean(ps >= 0.05) >= 0.90, np.mean(ps < 0.05)


def test_permutation_permutes_network_scores_within_layers_and_matches_the_exact_null():
    """One layer, 5 networks: the Monte Carlo p approaches the exact p over all 120 relabellings."""
    from itertools import permutations

    rng = np.random.default_rng(5)
    score = rng.uniform(size=(1, 5))
    dist = rng.uniform(size=(5, 5))
    points, scores = _tables(score, lambda k, i, j: dist[i, j] + 2 * abs(score[0, i] - score[0, j]), layers=("l1",))
    _, strat = specificity_tables(points, scores, level=0.95, n_permutations=20000, seed=0)
    row = strat.set_index("gap").loc["probe"]
    pairs = list(combinations(range(5), 2))
    d = np.array([dist[i, j] + 2 * abs(score[0, i] - score[0, j]) for i, j in pairs])
    obs = stats.spearmanr(d, [abs(score[0, i] - score[0, j]) for i, j in pairs]).statistic
    null = [stats.spearmanr(d, [abs(score[0, p[i]] - score[0, p[j]]) for i, j in pairs]).statistic
            for p in permutations(range(5))]  # fmt: skip
    exact = np.mean(np.abs(null) >= abs(obs) - 1e-12)
    assert row.spearman == pytest.approx(obs)
    assert row.p_value == pytest.approx(exact, abs=0.01)


def test_jackknife_interval_matches_a_naive_leave_one_network_out():
    rng = np.random.default_rng(2)
    score = rng.uniform(size=(1, 6))
    points, scores = _tables(score, lambda k, i, j: abs(score[0, i] - score[0, j]) + 0.2 * rng.uniform(), layers=("l1",))
    by_layer, _ = specificity_tables(points, scores, level=0.9, n_permutations=10, seed=0)
    row = by_layer.set_index("gap").loc["probe"]
    est = stats.spearmanr(points.distance, points.probe_gap).statistic
    reps = []
    for net in sorted(set(points.model_a) | set(points.model_b)):
        keep = (points.model_a != net) & (points.model_b != net)
        reps.append(stats.spearmanr(points.distance[keep], points.probe_gap[keep]).statistic)
    reps = np.array(reps)
    se = np.sqrt((len(reps) - 1) / len(reps) * np.sum((reps - reps.mean()) ** 2))
    half = stats.t.ppf(0.95, len(reps) - 1) * se
    assert (row.spearman_low, row.spearman_high) == pytest.approx((max(est - half, -1), min(est + half, 1)))
    assert jackknife_interval(0.5, np.array([0.4, np.nan, 0.6]), level=0.9) == pytest.approx((np.nan, np.nan), nan_ok=True)


def _layer(n_networks: int, layer="l1") -> LayerPoints:
    a, b = map(np.array, zip(*combinations(range(n_networks), 2))) if n_networks > 1 else (np.array([], int),) * 2
    score = np.linspace(0.5, 0.9, n_networks) ** 2
    return LayerPoints(layer, tuple(f"m{i}" for i in range(n_networks)), a, b, np.abs(score[a] - score[b]) + 0.01 * a, score)


def test_nan_with_a_reason_below_the_minimum_number_of_pairs():
    assert MIN_PAIRS == 5
    three = layer_specificity(_layer(3), level=0.95)  # 3 pairs
    assert np.isnan(three["spearman"]) and three["reason"].startswith("3 seed pairs < 5")
    four = layer_specificity(_layer(4), level=0.95)  # 6 pairs: defined; without one network 3 pairs: no interval
    assert np.isfinite(four["spearman"]) and np.isnan(four["spearman_low"]) and "no interval" in four["reason"]
    five = layer_specificity(_layer(5), level=0.95)
    assert np.isfinite(five["spearman_low"]) and five["reason"] == "" and five["n_pairs"] == 10
    # the stratified mean skips an undefined layer, says so, and is NaN when none is defined
    mixed = stratified_specificity([_layer(5, "l1"), _layer(3, "l2")], level=0.95, n_permutations=99, seed=0)
    assert mixed["n_layers_defined"] == 1 and "undefined: l2" in mixed["reason"]
    assert mixed["spearman"] == pytest.approx(five["spearman"])
    none = stratified_specificity([_layer(3, "l1"), _layer(2, "l2")], level=0.95, n_permutations=99, seed=0)
    assert np.isnan(none["spearman"]) and np.isnan(none["p_value"]) and "seed pairs < 5" in none["reason"]


def test_a_layer_without_points_is_reported_nan_not_skipped():
    points, scores = _simpson(n=3)  # 3 networks: 3 pairs per layer
    by_layer, strat = specificity_tables(points, scores, level=0.95, n_permutations=10, seed=0, layers=["l1", "l2", "l3"])
    assert len(by_layer) == 2 * 3 and by_layer.spearman.isna().all() and (by_layer.reason != "").all()
    assert strat.spearman.isna().all()


def test_points_from_the_job_tables():
    sim = pd.DataFrame([
        {"model_a": "a", "layer_a": "l1", "model_b": "b", "layer_b": "l1", "method": "linear_cka", "value": 0.8},
        {"model_a": "a", "layer_a": "l1", "model_b": "b", "layer_b": "l2", "method": "linear_cka", "value": 0.1},
        {"model_a": "a", "layer_a": "l1", "model_b": "a", "layer_b": "l1", "method": "linear_cka", "value": 1.0},
        {"model_a": "a", "layer_a": "l1", "model_b": "b", "layer_b": "l1", "method": "procrustes_distance", "value": 0.3},
        {"model_a": "a", "layer_a": "l1", "model_b": "b", "layer_b": "l1", "method": "linear_regression", "value": 0.9},
        {"model_a": "b", "layer_a": "l1", "model_b": "a", "layer_b": "l1", "method": "linear_regression", "value": 0.7},
    ])  # fmt: skip
    idx = index_distances(sim, ["l1", "l2"])  # an asymmetric measure's two directions: one point, their mean
    assert idx.to_dict("records") == [
        {"model_a": "a", "model_b": "b", "layer": "l1", "method": "linear_cka", "distance": pytest.approx(0.2)},
        {"model_a": "a", "model_b": "b", "layer": "l1", "method": "procrustes_distance", "distance": pytest.approx(0.3)},
        {"model_a": "a", "model_b": "b", "layer": "l1", "method": "linear_regression", "distance": pytest.approx(0.2)}]
    pairs = pd.DataFrame([
        {"model_a": "a", "model_b": "b", "layer": "l1", "rank": 8, "full_rank": 8, "method": "dm_accuracy", "distance": 0.2},
        {"model_a": "b", "model_b": "a", "layer": "l1", "rank": 8, "full_rank": 8, "method": "dm_accuracy", "distance": 0.4},
        {"model_a": "b", "model_b": "a", "layer": "l1", "rank": 2, "full_rank": 8, "method": "dm_accuracy", "distance": 0.9},
        {"model_a": "a", "model_b": "a", "layer": "l1", "rank": 8, "full_rank": 8, "method": "dm_accuracy", "distance": 0.0},
    ])  # fmt: skip
    st = stitch_distances(pairs)  # both directions are one point: their mean
    assert len(st) == 1 and st.iloc[0].distance == pytest.approx(0.3) and (st.iloc[0].model_a, st.iloc[0].model_b) == ("a", "b")
    net = pd.DataFrame([{"model": m, "layer": "l1", "rank": r, "full_rank": 8, "method": fn, "value": v}
                        for m, pa, na in (("a", 0.7, 0.95), ("b", 0.75, 0.9))
                        for r, f in ((8, 1.0), (2, 0.5)) for fn, v in (("probe_accuracy", pa * f), ("network_accuracy", na * f))])  # fmt: skip
    pts = specificity_points(st, network_scores(net))
    assert pts.iloc[0].probe_gap == pytest.approx(0.05) and pts.iloc[0].network_gap == pytest.approx(0.05)
    with pytest.raises(ValueError, match="full-rank scores"):
        specificity_points(st.assign(model_b="c"), network_scores(net))


def test_the_specificity_seeds_key():
    from repmatch.sensitivity.pairs import (
        specificity_dm_pairs,
        specificity_extra_models,
        specificity_models,
        specificity_seeds,
        specificity_similarity_pairs,
    )
    from repmatch.settings import ConfigError, load_settings, schema

    assert schema()["properties"]["sensitivity"]["properties"]["specificity_seeds"]["default"] == 5
    base = yaml.safe_load((REPO / "config.yaml").read_text())

    def settings(**sens):
        return load_settings({**base, "sensitivity": {**base["sensitivity"], **sens}})

    default = settings()  # the default run: 4 networks, TLM pair jobs on seeds[0] -> seeds[1] only, DM-only for the other 5 pairs
    assert specificity_seeds(default) == [0, 1, 2, 3] and len(specificity_similarity_pairs(default)) == 6
    assert len(specificity_dm_pairs(default)) == 5 and "smallcnn_seed0__smallcnn_seed1" not in specificity_dm_pairs(default)
    s = settings(specificity_seeds=5, pairs={"within": "all", "cross": "upper"})
    assert specificity_seeds(s) == [0, 1, 2, 3, 4] and specificity_extra_models(s) == ["smallcnn_seed3", "smallcnn_seed4"]
    assert len(specificity_similarity_pairs(s)) == 10 and "smallcnn_seed0__smallcnn_seed0" not in specificity_similarity_pairs(s)
    assert specificity_seeds(settings(specificity_seeds=None)) == [0, 1, 2] and specificity_extra_models(settings(specificity_seeds=2)) == []
    assert specificity_seeds(load_settings({**base, "seeds": [3, 0], "sensitivity": {**base["sensitivity"], "specificity_seeds": 4}})) == [3, 0, 4, 5]
    assert specificity_models(settings(enabled=False)) == []
    # DM-only pair jobs: the specificity pairs no sensitivity pair job covers (here: cross upper over 3 seeds)
    dm = specificity_dm_pairs(s)
    assert len(dm) == 10 - 3 and "smallcnn_seed0__smallcnn_seed1" not in dm and "smallcnn_seed3__smallcnn_seed4" in dm
    assert specificity_dm_pairs(settings(stitch_methods=["tlm"])) == []
    assert len(specificity_dm_pairs(settings(specificity_seeds=5, pairs={"within": "none", "cross": "none"}))) == 10
    with pytest.raises(ConfigError, match="sensitivity.specificity_seeds"):
        settings(specificity_seeds=1)
    external = dataclasses.replace(s, model=dataclasses.replace(s.model, factory="pkg.mod:net", checkpoints=("a.pt", "b.pt", "c.pt")))
    assert external.model.external and specificity_seeds(external) == [0, 1, 2]  # cannot train more: the given ones
    paper = yaml.safe_load((REPO / "config" / "paper_cifar10.yaml").read_text())
    assert paper["sensitivity"]["specificity_seeds"] >= 10  # Ding et al. compare >= 10 seeds
