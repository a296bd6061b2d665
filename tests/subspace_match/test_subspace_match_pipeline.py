"""Subspace stage around the maths: coordinate sampling, one layer pair over repeats, the tidy
tables, the pair job on real activation caches (synthetic data), aggregation, figures, config."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from repmatch.backbone.activations import CacheError, write_cache
from repmatch.io import read_table
from repmatch.logs import job_logger
from repmatch.settings import ConfigError, load_settings, section_settings
from repmatch.subspace_match.compare import compare_layers, layer_pairs
from repmatch.subspace_match.pairs import subspace_pairs
from repmatch.subspace_match.sampling import align_spatial, draw_coordinates, gather_neuron_vectors, n_coordinates
from repmatch.subspace_match.stages import aggregate_stage, figures_stage, pair_stage
from repmatch.tables import COLUMNS, TIDY_COLUMNS

CONTRACT = TIDY_COLUMNS
MATCH_COLUMNS, SIMPLE_COLUMNS = COLUMNS["subspace_match"], COLUMNS["subspace_simple"]
LOG = job_logger("subspace", None)


def _settings(**values):
    return section_settings("subspace_match", values)


def relu_maps(rng: np.random.Generator, n: int = 40, c: int = 6, h: int = 5, w: int = 5) -> np.ndarray:
    return np.maximum(rng.normal(size=(n, c, h, w)), 0).astype(np.float32)


# ---------------------------------------------------------------- sampling


def test_gathered_rows_are_the_same_input_and_position_in_both_networks():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(7, 3, 4, 5)).astype(np.float32)
    full = acts.transpose(0, 2, 3, 1).reshape(-1, 3)  # (input, position) major, channels as columns
    coords = np.array([0, 5, 19, 20, 77, 139])
    np.testing.assert_array_equal(gather_neuron_vectors(acts, coords), full[coords])
    flat = rng.normal(size=(9, 4))
    np.testing.assert_array_equal(gather_neuron_vectors(flat, np.array([1, 8])), flat[[1, 8]])
    assert n_coordinates(acts.shape) == 140 and n_coordinates(flat.shape) == 9


def test_coordinate_draws_are_reproducible_distinct_and_keyed():
    a = draw_coordinates(1000, 100, 3, seed=0, key="conv1|conv1")
    b = draw_coordinates(1000, 100, 3, seed=0, key="conv1|conv1")
    c = draw_coordinates(1000, 100, 3, seed=0, key="conv2|conv2")
    assert len(a) == 3
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert len(np.unique(x)) == 100 and np.all(np.diff(x) > 0) and x.max() < 1000
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[0], c[0])
    full = draw_coordinates(50, 100, 16, seed=0)
    assert len(full) == 1 and np.array_equal(full[0], np.arange(50))  # D ≥ all: one exact draw
    with pytest.raises(ValueError):
        draw_coordinates(50, 0, 1, seed=0)


def test_align_spatial_pools_to_the_common_size():
    rng = np.random.default_rng(0)
    big, small, flat = relu_maps(rng, 4, 2, 8, 8), relu_maps(rng, 4, 3, 4, 4), rng.normal(size=(4, 5))
    a, b = align_spatial(big, small)
    assert a.shape == (4, 2, 4, 4) and b is small
    np.testing.assert_allclose(a[0, 0, 0, 0], big[0, 0, :2, :2].mean(), rtol=1e-6)
    a, b = align_spatial(big, flat)
    assert a.shape == (4, 2) and b is flat
    np.testing.assert_allclose(a, big.mean(axis=(2, 3)), rtol=1e-6)
    with pytest.raises(ValueError, match="probe inputs"):
        align_spatial(big, flat[:3])


# ---------------------------------------------------------------- one layer pair


def test_permuted_rescaled_channels_match_fully_with_singleton_simple_matches():
    rng = np.random.default_rng(1)
    a = relu_maps(rng)
    perm = rng.permutation(6)
    b = a[:, perm] * rng.uniform(0.5, 2.0, size=(1, 6, 1, 1)).astype(np.float32)
    res = compare_layers(a, b, _settings(eps=[0.15, 0.3], n_coords=300, repeats=3, simple_eps=0.15, seed=0), key="x")
    assert res.repeats == 3 and res.n_coords == 300
    assert all(v == 1.0 for v in res.similarity[0.15]) and max(res.whole_layer_eps) < 1e-5
    assert len(res.simple) == 6 and {r for r, _ in res.simple} == {0}  # simple matches on the first draw only
    assert sorted((s.a[0], s.b[0]) for _, s in res.simple) == sorted((int(perm[j]), j) for j in range(6))


def test_independent_layers_do_not_match_and_float32_is_available():
    rng = np.random.default_rng(2)
    a, b = relu_maps(rng), relu_maps(rng)
    res = compare_layers(a, b, _settings(eps=[0.15, 0.5], n_coords=500, repeats=2, dtype="float32"))
    assert res.similarity[0.15] == [0.0, 0.0]
    with pytest.raises(ValueError, match="probe inputs"):
        compare_layers(a, b[:10], _settings(eps=[0.2], n_coords=100, repeats=1))


def test_layer_pair_modes():
    assert layer_pairs(["c1", "c2"], ["c1", "c2"], "corresponding") == [("c1", "c1"), ("c2", "c2")]
    assert len(layer_pairs(["c1", "c2"], ["c1", "c2"], "all")) == 4
    with pytest.raises(ValueError, match="layer_pairs"):
        layer_pairs(["c1"], ["c1"], "diagonal")
    with pytest.raises(ValueError, match="share no layer"):
        layer_pairs(["c1"], ["c9"], "corresponding")


def test_model_pairs_and_settings():
    models = ["cnn_seed0", "cnn_seed1", "cnn_seed2"]
    assert subspace_pairs(models, False) == ["cnn_seed0__cnn_seed1", "cnn_seed0__cnn_seed2", "cnn_seed1__cnn_seed2"]
    assert len(subspace_pairs(models, within_network=True)) == 6
    assert _settings().eps == (0.15, 0.2, 0.25, 0.3, 0.5)
    with pytest.raises(ConfigError, match="repeets"):
        _settings(repeets=3)


# ---------------------------------------------------------------- the pair job, aggregation, figures


@pytest.fixture
def caches(tmp_path):
    """Two networks' caches: B's conv layer is A's with channels permuted (a planted match),
    B's flat layer is unrelated; plus a cache whose probe rows are in another order."""
    rng = np.random.default_rng(3)
    ids = np.arange(100, 140)
    conv = relu_maps(rng, 40, 6, 6, 6)
    pool = relu_maps(rng, 40, 4, 3, 3)
    fc_a, fc_b = np.maximum(rng.normal(size=(40, 5)), 0), np.maximum(rng.normal(size=(40, 5)), 0)
    a = write_cache(tmp_path / "net_seed0", {"conv": conv, "pool": pool, "fc": fc_a.astype(np.float32)}, ids)
    b = write_cache(tmp_path / "net_seed1", {"conv": conv[:, ::-1].copy(), "pool": pool, "fc": fc_b.astype(np.float32)}, ids)
    shuffled = write_cache(tmp_path / "net_seed2", {"conv": conv, "pool": pool, "fc": fc_a.astype(np.float32)}, ids[::-1])
    return a, b, shuffled


def test_pair_job_writes_contract_tables_and_aggregates(tmp_path, caches):
    a, b, _ = caches
    cfg = _settings(eps=[0.15, 0.5], n_coords=200, repeats=2, simple_eps=0.15)
    out = tmp_path / "out"
    log = job_logger("subspace", out / "p.log")
    match, simple = pair_stage(settings=cfg, device_spec="cpu", model_a="net_seed0", model_b="net_seed1", cache_a=a, cache_b=b,
                               out_table=out / "p.parquet", out_simple=out / "p.simple.parquet", log=log, level=0.95)
    stored = read_table(out / "p.parquet")
    assert list(stored.columns) == MATCH_COLUMNS and set(CONTRACT) <= set(stored.columns)
    assert set(stored["method"]) == {"maximum_match", "whole_layer_match"}
    assert len(stored) == 3 * 3  # 3 corresponding layers × (whole layer + 2 ε)
    mm = stored[stored["method"] == "maximum_match"].set_index(["layer_a", "eps"])["value"]
    assert mm[("conv", 0.15)] == 1.0 and mm[("pool", 0.15)] == 1.0
    assert stored.loc[stored["layer_a"] == "fc", "repeats"].iloc[0] == 1  # 40 probe inputs < D: one exact draw
    assert stored.loc[stored["layer_a"] == "conv", "repeats"].iloc[0] == 2
    # intervals over the coordinate draws: t interval from (mean, np.std, repeats), NaN with one draw
    from scipy import stats as st

    two = stored[stored["repeats"] == 2]
    half = st.t.ppf(0.975, 1) * two["value_std"] * np.sqrt(2 / 1) / np.sqrt(2)  # std ddof=1 = std ddof=0 * sqrt(R/(R-1))
    assert np.allclose(two["ci_low"], two["value"] - half) and np.allclose(two["ci_high"], two["value"] + half)
    assert stored.loc[stored["repeats"] == 1, ["ci_low", "ci_high"]].isna().all().all()
    assert stored[["index_a", "layer_a"]].drop_duplicates().values.tolist() == [[0, "conv"], [1, "pool"], [2, "fc"]]
    simple_stored = read_table(out / "p.simple.parquet")
    assert list(simple_stored.columns) == SIMPLE_COLUMNS
    conv_simple = simple_stored[simple_stored["layer_a"] == "conv"]
    assert sorted(zip(conv_simple["neurons_a"], conv_simple["neurons_b"])) == sorted((str(5 - j), str(j)) for j in range(6))
    assert (out / "p.log").read_text().count("similarity") == 3
    # aggregation of two pair tables (one with no simple matches) keeps every row and column
    empty = out / "empty.simple.parquet"
    simple.iloc[0:0].to_parquet(empty)
    aggregate_stage(tables=[out / "p.parquet", out / "p.parquet"], simple_tables=[out / "p.simple.parquet", empty],
                    out_table=out / "all.parquet", out_simple=out / "all_simple.parquet", log=LOG)
    assert len(read_table(out / "all.parquet")) == 2 * len(match)
    assert len(read_table(out / "all_simple.parquet")) == len(simple)
    # figures: PNG + PDF, also when there are no simple matches at all
    figs = tmp_path / "figs"
    figures_stage(table=out / "all.parquet", simple=out / "all_simple.parquet",
                  outputs={"max_match_vs_eps_png": figs / "eps.png", "simple_match_sizes_png": figs / "sizes.png"}, log=LOG,
                  level=0.95)
    figures_stage(table=out / "all.parquet", simple=empty,
                  outputs={"max_match_vs_eps_png": figs / "eps2.png", "simple_match_sizes_png": figs / "sizes2.png"}, log=LOG,
                  level=0.95)
    for stem in ("eps", "sizes", "eps2", "sizes2"):
        for ext in ("png", "pdf"):
            assert (figs / f"{stem}.{ext}").stat().st_size > 1000


def test_pair_job_all_layer_pairs_within_network(tmp_path, caches):
    a, _, _ = caches
    cfg = _settings(eps=[0.2], n_coords=100, repeats=1, simple_eps=None, layer_pairs="all")
    match, simple = pair_stage(settings=cfg, device_spec="cpu", model_a="net_seed0", model_b="net_seed0", cache_a=a, cache_b=a,
                               out_table=tmp_path / "t.parquet", out_simple=tmp_path / "s.parquet", log=LOG, level=0.95)
    pairs = match[["layer_a", "layer_b"]].drop_duplicates().values.tolist()
    assert len(pairs) == 6  # upper triangle of 3 layers: the job is symmetric within one network
    diag = match[(match["method"] == "maximum_match") & (match["layer_a"] == match["layer_b"])]
    assert (diag["value"] == 1.0).all() and simple.empty


def test_pair_job_refuses_mismatched_probe_order_and_bad_config(tmp_path, caches):
    a, _, shuffled = caches
    with pytest.raises(CacheError, match="different order"):
        pair_stage(settings=_settings(), device_spec="cpu", model_a="x_seed0", model_b="x_seed2", cache_a=a, cache_b=shuffled,
                   out_table=tmp_path / "t.parquet", out_simple=tmp_path / "s.parquet", log=LOG, level=0.95)
    with pytest.raises(ConfigError, match="n_cords"):
        _settings(n_cords=5)
    assert not (tmp_path / "t.parquet").exists()  # nothing half-written looks finished


def test_config_section_is_validated(repo_root):
    import yaml

    cfg = yaml.safe_load((repo_root / "config.yaml").read_text())
    sub = load_settings(cfg).subspace_match
    assert sub.eps == (0.15, 0.2, 0.25, 0.3, 0.5) and sub.layer_pairs == "corresponding"
    bad = copy.deepcopy(cfg)
    bad["subspace_match"]["repeets"] = 3
    with pytest.raises(ConfigError, match="repeets"):
        load_settings(bad)
    bad = copy.deepcopy(cfg)
    bad["subspace_match"]["layer_pairs"] = "diagonal"
    with pytest.raises(ConfigError, match="diagonal"):
        load_settings(bad)


def test_tables_are_tidy_long_format():
    rows = pd.DataFrame(columns=MATCH_COLUMNS)
    assert set(CONTRACT) <= set(rows.columns) and "eps" in rows.columns
