"""The layer-grid engine, conv handling, tidy tables, sanity tables and the pipeline stage functions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from repmatch.backbone.activations import CacheError, write_cache
from repmatch.io import read_table
from repmatch.similarity import (
    MEASURES,
    TABLE_COLUMNS,
    DegenerateInputError,
    DegenerateWarning,
    SimilarityInputError,
    similarity,
    similarity_grids,
    similarity_table,
)
from repmatch.similarity import linalg
from repmatch.similarity.preprocess import View, pair_views, to_matrix
from repmatch import paths
from repmatch.logs import job_logger
from repmatch.sanity import more_similar_than_itself, similarity_scores, specificity
from repmatch.settings import section_settings

PARAMS = {"rbf_sigma": 0.8, "svcca_variance": 0.99, "minibatch_size": 25}
ALL = sorted(MEASURES)


def _model(seed: int, n: int = 100, base_seed: int = 0) -> dict[str, np.ndarray]:
    """A toy 'network': conv maps (n, C, H, W) and a flat layer, built from one shared signal so
    that different seeds are rotations + noise of the same layer sequence."""
    base = np.random.default_rng(base_seed)
    rng = np.random.default_rng(seed + 100)
    z = base.standard_normal((n, 3, 8, 8))
    layers = {}
    h = z
    for name, c in [("conv1", 4), ("conv2", 6), ("conv3", 6)]:
        w = base.standard_normal((c, h.shape[1]))
        h = np.maximum(np.einsum("oc,nchw->nohw", w, h), 0)
        if name == "conv2":
            h = h.reshape(n, c, 4, 2, 4, 2).mean(axis=(3, 5))
        mix = np.linalg.qr(rng.standard_normal((c, c)))[0]
        layers[name] = (np.einsum("oc,nchw->nohw", mix, h) + 0.05 * rng.standard_normal(h.shape)).astype(np.float32)
    flat = h.mean(axis=(2, 3)) @ base.standard_normal((6, 5))
    layers["fc"] = (np.tanh(flat) @ np.linalg.qr(rng.standard_normal((5, 5)))[0]).astype(np.float32)
    return layers


# --- grid == pairwise ----------------------------------------------------------------------------


@pytest.mark.parametrize("conv_mode", ["gap", "flatten", "per_position", "paper"])
def test_grid_cells_equal_single_pair_values(conv_mode):
    a, b = _model(0, n=40), _model(1, n=40)
    # All measures share the per-layer cache in one call; RBF kernels over per-position rows are slow, so skip it there.
    measures = ALL if conv_mode in ("gap", "flatten") else [m for m in ALL if m != "rbf_cka"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWarning)  # flatten: CCA cells with too many features are NaN
        fwd, bwd = similarity_grids(a, b, measures, conv_mode, params=PARAMS, reverse=True)
        for m in ["linear_cka", "debiased_cka", "procrustes", "pwcca", "linear_regression"]:
            for i, la in enumerate(a):
                for j, lb in enumerate(b):
                    va, vb = pair_views(a[la].shape, b[lb].shape, conv_mode)
                    x = to_matrix(a[la], va, torch.device("cpu"), torch.float64).numpy()
                    y = to_matrix(b[lb], vb, torch.device("cpu"), torch.float64).numpy()
                    if va.normalise:
                        x, y = x / np.linalg.norm(x - x.mean(0)), y / np.linalg.norm(y - y.mean(0))
                    try:
                        expected = similarity(x, y, m, **PARAMS)
                    except DegenerateInputError:
                        expected = np.nan
                    np.testing.assert_allclose(fwd[m][i, j], expected, atol=1e-9, err_msg=f"{m} {la} {lb}")
                    if not MEASURES[m].symmetric:
                        try:
                            back = similarity(y, x, m, **PARAMS)
                        except DegenerateInputError:
                            back = np.nan
                        np.testing.assert_allclose(bwd[m][j, i], back, atol=1e-9)


def test_chunked_products_match_one_big_matmul(monkeypatch):
    a, b = _model(0, n=50), _model(2, n=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWarning)
        ref, _ = similarity_grids(a, b, ALL, "flatten", params=PARAMS)
    monkeypatch.setattr(linalg, "MAX_COLS", 7)  # several chunks per model: exercises the chunk bookkeeping
    assert len(linalg.chunks([torch.zeros(3, 4)] * 5)) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateWarning)
        got, _ = similarity_grids(a, b, ALL, "flatten", params=PARAMS)
    for m in ALL:
        np.testing.assert_allclose(got[m], ref[m], atol=1e-10, equal_nan=True, err_msg=m)


def test_wide_layers_match_the_gram_formula():
    """d >> n layers go through the QR reduction; linear/RBF CKA must still equal the Gram formulas."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((30, 500)), rng.standard_normal((30, 20)) @ rng.standard_normal((20, 400))
    k, l = x @ x.T, y @ y.T
    h = np.eye(30) - 1 / 30
    ref = np.trace(k @ h @ l @ h) / np.sqrt(np.trace(k @ h @ k @ h) * np.trace(l @ h @ l @ h))
    assert similarity(x, y, "linear_cka") == pytest.approx(ref, abs=1e-9)
    assert similarity(x, x @ np.linalg.qr(rng.standard_normal((500, 500)))[0], "procrustes") == pytest.approx(1.0, abs=1e-9)


def test_self_grid_is_symmetric_with_unit_diagonal():
    a = _model(0)
    fwd, _ = similarity_grids(a, a, ["linear_cka", "rbf_cka", "mean_cca", "procrustes"], "gap")
    for m, g in fwd.items():
        np.testing.assert_allclose(np.diag(g), 1.0, atol=1e-9, err_msg=m)
        np.testing.assert_allclose(g, g.T, atol=1e-10, err_msg=m)


def test_planted_match_is_recovered():
    """Layer j of B is a rotated, noisy copy of layer j of A: every CKA/CCA/Procrustes grid peaks on the diagonal."""
    rng = np.random.default_rng(5)
    a = {f"l{k}": rng.standard_normal((150, 10)) for k in range(5)}
    b = {f"l{k}": v @ np.linalg.qr(rng.standard_normal((10, 10)))[0] + 0.1 * rng.standard_normal((150, 10)) for k, v in enumerate(a.values())}
    # The descriptive baselines compare one summary number per layer (the norm of the mean row, the
    # mean cosine to it): on zero-mean noise they are not meant to tell layers apart.
    indices = [m for m in ALL if m not in ("magnitude_difference", "concentricity_difference")]
    fwd, _ = similarity_grids(a, b, indices, "gap", params=PARAMS)
    for m, g in fwd.items():
        best = np.argmax(g, axis=1) if MEASURES[m].larger_is_similar else np.argmin(g, axis=1)
        assert list(best) == list(range(5)), m


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_grid_matches_cpu():
    a, b = _model(0), _model(1)
    measures = list(ALL)
    cpu, _ = similarity_grids(a, b, measures, "gap", "cpu", params=PARAMS)
    gpu, _ = similarity_grids(a, b, measures, "gap", "cuda", params=PARAMS)
    for m in measures:
        np.testing.assert_allclose(gpu[m], cpu[m], atol=1e-9, err_msg=m)


# --- conv handling ---------------------------------------------------------------------------------


def test_pair_views():
    c1, c2, fc = (10, 4, 8, 8), (10, 6, 4, 4), (10, 5)
    assert pair_views(c1, c2, "gap") == (View("gap"), View("gap"))
    assert pair_views(c1, fc, "flatten") == (View("flat"), View("flat"))
    assert pair_views(c1, c2, "per_position") == (View("pos", (4, 4)), View("pos", (4, 4)))
    assert pair_views(c1, fc, "per_position") == (View("pos", (1, 1)), View("pos", (1, 1)))
    assert pair_views(c1, c1, "paper") == (View("pos", (8, 8), True), View("pos", (8, 8), True))
    assert pair_views(c1, (10, 6, 8, 8), "paper") == (View("gap", None, True), View("gap", None, True))


def test_to_matrix_layouts():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    dev, dt = torch.device("cpu"), torch.float64
    assert to_matrix(x, View("flat"), dev, dt).shape == (2, 48)
    np.testing.assert_allclose(to_matrix(x, View("gap"), dev, dt).numpy(), x.mean(axis=(2, 3)))
    pos = to_matrix(x, View("pos", (4, 4)), dev, dt).numpy()
    assert pos.shape == (32, 3)
    np.testing.assert_allclose(pos[5], x[0, :, 1, 1])  # row = (sample 0, position (1, 1)), features = channels
    pooled = to_matrix(x, View("pos", (2, 2)), dev, dt).numpy()
    np.testing.assert_allclose(pooled[0], x[0, :, :2, :2].mean(axis=(1, 2)))
    mm = np.lib.format.open_memmap("/dev/shm/repmatch_test_mm.npy", mode="w+", dtype=np.float32, shape=x.shape) \
        if Path("/dev/shm").exists() else None
    if mm is not None:
        mm[:] = x
        ro = np.load("/dev/shm/repmatch_test_mm.npy", mmap_mode="r")
        np.testing.assert_allclose(to_matrix(ro, View("gap"), dev, dt).numpy(), x.mean(axis=(2, 3)))
        Path("/dev/shm/repmatch_test_mm.npy").unlink()


def test_rbf_refuses_huge_kernels(monkeypatch):
    from repmatch.similarity import cka

    monkeypatch.setattr(cka, "MAX_KERNEL_ROWS", 1000)
    a = _model(0)
    with pytest.raises(SimilarityInputError, match="rbf_cka.*rows"):
        similarity_grids(a, a, ["rbf_cka"], "per_position")


# --- degenerate layers in a grid ---------------------------------------------------------------


def test_zero_variance_layer_gives_nan_and_warning_or_error():
    a = _model(0)
    a["dead"] = np.zeros((100, 7), dtype=np.float32)
    with pytest.warns(DegenerateWarning, match="'dead'.*zero variance"):
        fwd, _ = similarity_grids(a, _model(1), ["linear_cka", "mean_cca"], "gap")
    assert np.isnan(fwd["linear_cka"][4]).all() and np.isfinite(fwd["linear_cka"][:4]).all()
    with pytest.raises(DegenerateInputError, match="'dead'"):
        similarity_grids(a, _model(1), ["linear_cka"], "gap", on_degenerate="error")


def test_cca_with_too_many_features_is_nan_in_grid_not_a_number():
    a = _model(0, n=40)
    with pytest.warns(DegenerateWarning, match="forced to 1"):
        fwd, _ = similarity_grids(a, a, ["mean_cca", "linear_cka"], "flatten")
    assert np.isnan(fwd["mean_cca"][0, 0])  # conv1 flattened: 256 features for 40 samples
    assert np.isfinite(fwd["linear_cka"]).all()


def test_bad_options_are_named():
    a = _model(0, n=20)
    with pytest.raises(SimilarityInputError, match="on_degenerate"):
        similarity_grids(a, a, ["linear_cka"], on_degenerate="ignore")
    with pytest.raises(SimilarityInputError, match="precision"):
        similarity_grids(a, a, ["linear_cka"], dtype="float16")
    with pytest.raises(SimilarityInputError, match="sample counts differ"):
        similarity_grids(a, _model(1, n=21), ["linear_cka"])


def test_float32_precision_is_close_to_float64():
    a, b = _model(0), _model(1)
    f64, _ = similarity_grids(a, b, ["linear_cka", "procrustes"], "gap")
    f32, _ = similarity_grids(a, b, ["linear_cka", "procrustes"], "gap", dtype="float32")
    for m in f64:
        np.testing.assert_allclose(f32[m], f64[m], atol=1e-4)


# --- tidy table -------------------------------------------------------------------------------


def test_similarity_table_layout():
    a, b = _model(0), _model(1)
    measures = ["linear_cka", "linear_regression"]
    cross = similarity_table(a, b, "net_seed0", "net_seed1", measures, "gap")
    assert list(cross.columns) == TABLE_COLUMNS
    assert len(cross) == 16 + 2 * 16  # symmetric once, asymmetric in both orientations
    reg = cross[cross["method"] == "linear_regression"]
    assert set(zip(reg["model_a"], reg["model_b"])) == {("net_seed0", "net_seed1"), ("net_seed1", "net_seed0")}
    row = cross[(cross["method"] == "linear_cka") & (cross["layer_a"] == "conv2") & (cross["layer_b"] == "fc")].iloc[0]
    assert (row["index_a"], row["index_b"]) == (1, 3)
    assert row["value"] == pytest.approx(similarity(a["conv2"], b["fc"], "linear_cka"), abs=1e-12)
    own = similarity_table(a, a, "net_seed0", "net_seed0", measures, "gap")
    assert len(own) == 2 * 16 and set(own["model_b"]) == {"net_seed0"}
    assert cross["index_a"].dtype == np.int64 and cross["value"].dtype == np.float64


# --- sanity tables --------------------------------------------------------------------------------


def _seed_tables(measures, n_seeds=3):
    models = {f"toy_seed{s}": _model(s) for s in range(n_seeds)}
    names = list(models)
    frames = []
    for i, x in enumerate(names):
        for y in names[i:]:
            frames.append(similarity_table(models[x], models[y], x, y, measures, "gap", params=PARAMS))
    return pd.concat(frames, ignore_index=True)


def test_specificity_on_planted_seeds():
    table = _seed_tables(["linear_cka", "linear_regression", "procrustes"])
    spec = specificity(similarity_scores(table)).set_index("method")
    assert spec.loc["linear_cka", "n_model_pairs"] == 6  # ordered cross-seed pairs of 3 seeds
    assert spec.loc["linear_cka", "n_total"] == 6 * 4
    assert spec.loc["linear_cka", "accuracy"] == 1.0
    assert spec.loc["linear_cka", "chance"] == pytest.approx(0.25)


def test_specificity_counts_a_wrong_best_layer():
    rows = []
    for la in range(3):
        for lb in range(3):
            v = 1.0 if la == lb else 0.1
            if (la, lb) == (0, 2):
                v = 2.0  # layer 0 of A best matches layer 2 of B
            rows.append(("m_seed0", f"l{la}", la, "m_seed1", f"l{lb}", lb, "linear_cka", v, "gap"))
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    spec = specificity(similarity_scores(table)).iloc[0]
    # rows (A -> B): l0 wrong; columns (B -> A, the transpose of a symmetric measure): l2 wrong.
    assert (spec["n_correct"], spec["n_total"]) == (4, 6)
    dist = table.assign(method="procrustes_distance")
    assert specificity(similarity_scores(dist)).iloc[0]["n_correct"] == 0  # lower = better: the diagonal is the worst
    msti = more_similar_than_itself(similarity_scores(table.assign(model_b="m_seed0"))).set_index(["direction", "layer"])
    assert msti["n_better"].sum() == 2
    assert msti.loc[("column", "l2"), "better_layers"] == "l0"  # l0 scores 2.0 into l2, l2 itself 1.0
    assert msti.loc[("row", "l0"), "better_layers"] == "l2"


def test_bounded_indices_are_never_more_similar_than_themselves():
    table = _seed_tables(["linear_cka", "rbf_cka", "procrustes", "mean_cca"], n_seeds=1)
    msti = more_similar_than_itself(similarity_scores(table))
    assert (msti["n_better"] == 0).all() and (msti["n_candidates"] == 3).all() and len(msti) == 4 * 2 * 4


# --- pipeline stage functions ------------------------------------------------------------------


def test_stage_functions_end_to_end(tmp_path):
    from repmatch.sanity import sanity_stage
    from repmatch.similarity.stages import aggregate_stage, figures_stage, pair_stage

    ids = np.arange(100)
    caches = {}
    for s in range(2):
        caches[s] = write_cache(tmp_path / f"toy_seed{s}", _model(s), ids, {"model": f"toy_seed{s}"})
    cfg = section_settings("similarity", {"measures": ["linear_cka", "pwcca"], "minibatch_size": 25})
    unc = section_settings("uncertainty", {"bootstrap": 30, "n_permutations": 200})
    log = job_logger("similarity", tmp_path / "log.txt")
    outs = []
    for a, b in [(0, 0), (0, 1), (1, 1)]:
        out = tmp_path / "pairs" / f"toy_seed{a}__toy_seed{b}.parquet"
        pair_stage(settings=cfg, uncertainty=unc, device_spec="cpu", model_a=f"toy_seed{a}", model_b=f"toy_seed{b}",
                   cache_a=caches[a], cache_b=caches[b], out=out, log=log)
        outs.append(out)
    agg = aggregate_stage(pair_tables=outs, out=tmp_path / "similarity.parquet", log=log)
    assert len(agg) == 2 * 16 + 16 + 2 * 16 + 2 * 16  # 2 self pairs x 2 measures, cross: cka once, pwcca twice
    # every cell has an interval around its value from 30 resamples; p-values except on the counterparts
    assert (agg["n_boot"] > 0).all() and (agg["n_boot"] <= 30).all()
    ok = agg["ci_low"].notna()
    assert ok.mean() > 0.9
    assert (agg.loc[ok, "ci_low"] <= agg.loc[ok, "ci_high"]).all()
    diag = agg["layer_a"] == agg["layer_b"]
    assert agg.loc[diag, ["p_column", "p_row"]].isna().all().all()
    assert agg.loc[~diag, ["p_column", "p_row"]].notna().mean().min() > 0.9
    p = agg[["p_column", "p_row"]].to_numpy().ravel()
    assert ((p[np.isfinite(p)] > 0) & (p[np.isfinite(p)] <= 1)).all()
    # pwcca is asymmetric: both orientations of the cross pair carry their own p-values
    pw = agg[(agg["method"] == "pwcca") & (agg["model_a"] != agg["model_b"])]
    assert set(zip(pw["model_a"], pw["model_b"])) == {("toy_seed0", "toy_seed1"), ("toy_seed1", "toy_seed0")}
    outputs = {name: tmp_path / f"{name}.csv" for name in paths.SANITY_TABLES}
    sanity_stage(data=section_settings("data", {"name": "mnist5k"}), uncertainty=unc,
                 tables={"similarity": tmp_path / "similarity.parquet"}, outputs=outputs, log=log)  # fmt: skip
    spec = pd.read_csv(outputs["specificity"])
    assert spec["accuracy"].iloc[0] == 1.0
    assert spec["ci_low"].iloc[0] < 1.0 == spec["ci_high"].iloc[0] and spec["p_value"].iloc[0] < 0.05
    msti = pd.read_csv(outputs["more_similar_than_itself"])
    assert (msti["test"] == "paired_bootstrap").all() and (msti["n_better_significant"] <= msti["n_better"]).all()
    wc = pd.read_csv(outputs["within_vs_cross"]).set_index("method")
    assert wc.loc["linear_cka", "n_cross"] == 4 and wc.loc["linear_cka", "n_within"] == 2 * 3
    # bootstrap off: the same table shape, NaN intervals, n_boot 0
    off = pair_stage(settings=cfg, uncertainty=section_settings("uncertainty", {"bootstrap": 0}), device_spec="cpu",
                     model_a="toy_seed0", model_b="toy_seed1", cache_a=caches[0], cache_b=caches[1],
                     out=tmp_path / "off.parquet", log=log)  # fmt: skip
    assert list(off.columns) == list(agg.columns) and off["ci_low"].isna().all() and (off["n_boot"] == 0).all()
    expected = {f"{m}_{k}_{e}": tmp_path / "fig" / f"{m}_{k}.{e}" for m in cfg.measures for k in ("pairs", "cross_seed")
                for e in ("png", "pdf")}  # fmt: skip
    figures_stage(settings=cfg, uncertainty=unc, table=tmp_path / "similarity.parquet", outputs=expected, log=log)
    assert all(p.stat().st_size > 1000 for p in expected.values())
    assert not list((tmp_path / "fig").glob(".*tmp"))  # nothing half-written left behind
    assert read_table(outs[1])["value"].notna().all()


def test_pair_stage_refuses_mismatched_sample_order(tmp_path):
    from repmatch.similarity.stages import pair_stage

    a = write_cache(tmp_path / "toy_seed0", _model(0), np.arange(100))
    b = write_cache(tmp_path / "toy_seed1", _model(1), np.arange(100)[::-1])
    with pytest.raises(CacheError, match="different order"):
        pair_stage(settings=section_settings("similarity"), uncertainty=section_settings("uncertainty"), device_spec="cpu",
                   model_a="toy_seed0", model_b="toy_seed1", cache_a=a, cache_b=b, out=tmp_path / "out.parquet",
                   log=job_logger("similarity", None))  # fmt: skip
    assert not (tmp_path / "out.parquet").exists()


def test_shipped_config_names_registered_measures(repo_root):
    shipped = yaml.safe_load((repo_root / "config.yaml").read_text())["similarity"]
    assert set(shipped["measures"]) <= set(MEASURES)
    assert set(section_settings("similarity").measures) <= set(MEASURES)
