"""The similarity side of the sensitivity test: DM and TLM from a rank-r front into another network, the
specificity test, the aggregation over seeds and the summary table / figure."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats
from torch import nn

from repmatch.sensitivity.correlation import ConstantInputWarning


# --- a planted pair of networks: the task is linear in the top-3 principal directions ---------
def _planted_inputs(n, c=8, k=3, seed=0):
    """Inputs whose top-k principal directions (large variance) alone carry the label."""
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=torch.Generator().manual_seed(7), dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    sd = torch.tensor([3.0, 2.8, 2.6] + [0.5] * (c - k), dtype=torch.float64)
    s = torch.randn(n, c, generator=g, dtype=torch.float64) * sd
    y = (s[:, :k].sum(1) > 0).long()
    return (s @ q.T).float(), y, q


def _planted_pair(q, c=8, k=3):
    """A: identity feature layer "f", head = the label direction; B: f = R x (a rotation), head
    undoing R, so B computes the same function; DM from A's full layer into B recovers R."""
    from repmatch.networks import StitchableNet

    w = (q[:, :k].sum(1)).float()  # sum of the top-k coordinates
    r, _ = torch.linalg.qr(torch.randn(c, c, generator=torch.Generator().manual_seed(11), dtype=torch.float64))
    r = r.float()

    def net(rot):
        f = nn.Linear(c, c)
        head = nn.Linear(c, 2)
        with torch.no_grad():
            f.weight.copy_(rot)
            f.bias.zero_()
            head.weight.copy_(torch.stack([-w, w]) @ rot.T)
            head.bias.zero_()
        return StitchableNet([("f", f), ("g", nn.Identity())], head).eval()

    return net(torch.eye(c)), net(r), r


@torch.no_grad()
def _bases(net, x, batch_size):
    """Layer "f"'s principal directions as the network job fits them (the streamed covariance)."""
    from repmatch.sensitivity.lowrank import fit_lowrank

    x = torch.as_tensor(x)
    return {"f": fit_lowrank(net.features(x[s : s + batch_size], ["f"])["f"] for s in range(0, len(x), batch_size))}


def _run_pair(net_a, net_b, x, y, ranks, methods=("dm",), tlm_epochs=0, measures=()):
    from repmatch.sensitivity.cross_network import pair_sensitivity
    from repmatch.stitching.task import TLMConfig

    tlm = TLMConfig.make(epochs=tlm_epochs, lr=0.05, batch_size=64, schedule="cosine", seed=0)
    return pair_sensitivity(
        net_a, net_b, ["f"], train_x=x[:1500].numpy(), train_y=y[:1500].numpy(), test_x=x[1500:].numpy(),
        test_y=y[1500:].numpy(), probe_x=x[1500:1800].numpy(), ranks=lambda c: ranks, measures=list(measures),
        methods=list(methods), tlm=tlm, tlm_n_train=None, dm_ridge=0.0, batch_size=256, max_stack=None,
        device=torch.device("cpu"))


def test_lowrank_front_features_have_rank_r_and_full_rank_is_the_input():
    from repmatch.sensitivity.cross_network import LowRankFront, front_name, parse_front_name

    x, _, q = _planted_inputs(600)
    net_a, _, _ = _planted_pair(q)
    bases = _bases(net_a, x.numpy(), 128)
    front = LowRankFront(net_a, bases, {"f": [8, 3, 1]})
    assert front.layer_names == ["f@r8", "f@r3", "f@r1"] and parse_front_name(front_name("a@r", 4)) == ("a@r", 4)
    feats = front.features(x, front.layer_names)
    assert torch.allclose(feats["f@r8"], x, atol=1e-5)
    for r in (3, 1):
        centred = feats[f"f@r{r}"].double() - bases["f"].mean
        assert torch.linalg.matrix_rank(centred, atol=1e-4).item() <= r
        assert torch.allclose(feats[f"f@r{r}"], bases["f"].apply(x, r), atol=1e-6)  # the network job's map
    with pytest.raises(KeyError):
        front.features(x, ["f@r2"])
    with pytest.raises(ValueError):
        LowRankFront(net_a, bases, {"f": [9]})


def test_dm_from_full_rank_front_is_the_plain_dm_and_recovers_the_rotation():
    from repmatch.sensitivity.cross_network import fit_moments
    from repmatch.sensitivity.lowrank_dm import dm_from_equations
    from repmatch.stitching.direct import fit_affine

    x, _, q = _planted_inputs(1000)
    net_a, net_b, rot = _planted_pair(q)
    bases = _bases(net_a, x.numpy(), 256)
    equations = fit_moments(net_a, net_b, ["f"], x.numpy(), 256, torch.device("cpu"))["f"]
    maps = {("f", r): dm_from_equations(equations, bases["f"], r, 0.0) for r in (8, 3)}
    w, b = maps[("f", 8)]
    # the one-pass moments give the same basis as the streamed covariance (projectors: signs are arbitrary)
    from repmatch.sensitivity.lowrank_dm import basis_from_equations

    moment_basis = basis_from_equations(fit_moments(net_a, net_b, ["f"], x.numpy(), 100, torch.device("cpu"))["f"])
    for r in (1, 3, 8):
        assert torch.allclose(moment_basis.projector(r), bases["f"].projector(r), atol=1e-8)
    with torch.no_grad():
        w_ref, b_ref = fit_affine(net_a.forward_until(x, "f").double(), net_b.forward_until(x, "f").double())
    assert torch.allclose(w, w_ref, atol=1e-8) and torch.allclose(b, b_ref, atol=1e-8)
    assert torch.allclose(w.float(), rot, atol=1e-5)
    # rank 3: the map on the rank-3 front is R restricted to the top-3 directions (least squares
    # of R x on the uncorrelated top-3 coefficients), i.e. W = R P_3, b = R (mu - P_3 mu)
    w3, b3 = maps[("f", 3)]
    p3 = bases["f"].projector(3)
    assert torch.allclose(w3, rot.double() @ p3, atol=1e-6)
    assert torch.allclose(b3, rot.double() @ (bases["f"].mean - p3 @ bases["f"].mean), atol=1e-6)


def test_planted_pair_dm_accuracy_falls_only_below_k_and_full_rank_reproduces_the_stitch():
    from repmatch.sensitivity.cross_network import tidy_pair_rows
    from repmatch.stitching.layer import Stitch
    from repmatch.stitching.scores import evaluate_stitches
    from repmatch.stitching.direct import fit_affine
    from repmatch.stitching.network import Cell

    x, y, q = _planted_inputs(2500)
    net_a, net_b, _ = _planted_pair(q)
    rows, b_acc = _run_pair(net_a, net_b, x, y, [8, 4, 3, 2, 1], measures=["linear_cka"])
    assert b_acc == 1.0
    v = {(r["rank"], r["method"]): r["value"] for r in rows}
    for r in (8, 4, 3):
        assert v[r, "dm_accuracy"] > 0.99, v
    assert v[2, "dm_accuracy"] < 0.9 and v[1, "dm_accuracy"] < v[2, "dm_accuracy"] + 0.02
    assert v[8, "dm_repr_diff"] == pytest.approx(0.0, abs=1e-10)
    # full rank reproduces the plain full-rank DM stitch A -> B, scored by the stitching code
    with torch.no_grad():
        w, b = fit_affine(net_a.forward_until(x[:1500], "f"), net_b.forward_until(x[:1500], "f"))
    stitch = Stitch((8,), (8,)).set_affine(w, b)
    scores, _ = evaluate_stitches(net_a, net_b, {Cell("dm", "f", "f"): stitch}, x[1500:].numpy(), y[1500:].numpy())
    assert v[8, "dm_accuracy"] == scores[Cell("dm", "f", "f")]["accuracy"]
    # dissimilarity: the drop from the full-rank stitch; distance: B's accuracy minus the stitched one
    tidy = pd.DataFrame(tidy_pair_rows("a", "b", {"f": 0}, rows, b_acc)).set_index(["rank", "method"])
    assert tidy.loc[(2, "dm_accuracy"), "dissimilarity"] == pytest.approx(v[8, "dm_accuracy"] - v[2, "dm_accuracy"])
    assert tidy.loc[(2, "dm_accuracy"), "distance"] == pytest.approx(1.0 - v[2, "dm_accuracy"])
    assert tidy.loc[(8, "linear_cka"), "dissimilarity"] == 0.0
    assert tidy.loc[(1, "linear_cka"), "dissimilarity"] == pytest.approx(v[8, "linear_cka"] - v[1, "linear_cka"])


def test_tlm_from_full_rank_front_matches_tlm_from_the_network():
    from repmatch.sensitivity.cross_network import LowRankFront
    from repmatch.stitching.layer import Stitch
    from repmatch.stitching.network import Cell
    from repmatch.stitching.scores import evaluate_stitches
    from repmatch.stitching.task import TLMConfig, train_stitches

    x, y, q = _planted_inputs(2500)
    net_a, net_b, _ = _planted_pair(q)
    rows, _ = _run_pair(net_a, net_b, x, y, [8, 1], methods=("tlm",), tlm_epochs=3)
    v = {(r["rank"], r["method"]): r["value"] for r in rows}
    # the same TLM run from A itself (same seed, same initialisation order)
    gen = torch.Generator().manual_seed(0)
    plain = {Cell("tlm", "f", "f"): Stitch((8,), (8,), gen)}
    cfg = TLMConfig.make(epochs=3, lr=0.05, batch_size=64, schedule="cosine", seed=0)
    train_stitches(net_a, net_b, plain, x[:1500].numpy(), y[:1500].numpy(), cfg)
    scores, _ = evaluate_stitches(net_a, net_b, plain, x[1500:].numpy(), y[1500:].numpy())
    assert v[8, "tlm_accuracy"] == pytest.approx(scores[Cell("tlm", "f", "f")]["accuracy"], abs=0.005)
    assert v[8, "tlm_accuracy"] > 0.95 and v[1, "tlm_accuracy"] < 0.9
    bases = _bases(net_a, x[:1500].numpy(), 256)
    assert LowRankFront(net_a, bases, {"f": [8]}).index("f@r8") == 0


# --- aggregation: sensitivity over units, specificity, summary ------------------------------
def _network_table(model, drops, probe_full):
    rows = []
    for (layer, rank), d in drops.items():
        for fn in ("probe_accuracy", "network_accuracy"):
            full = probe_full[layer]
            rows.append({"model": model, "layer": layer, "index": 0, "rank": rank, "full_rank": 8, "variance_kept": 1.0,
                         "method": fn, "value": full - d, "dissimilarity": d})
    return rows


def _synthetic(models=("m0", "m1", "m2")):
    """Network tables with drops growing as the rank falls, pair tables where ``tracks`` is the
    drop (+ a small seed offset), ``flat`` is constant and ``anti`` runs the other way."""
    layers, ranks = ["l1", "l2", "l3"], [8, 4, 2, 1]
    networks, pairs = [], []
    probe = {m: {ly: 0.6 + 0.1 * i + 0.013 * k for i, ly in enumerate(layers)} for k, m in enumerate(models)}
    for k, m in enumerate(models):
        drops = {(ly, r): (0.0 if r == 8 else (8 / r) * 0.02 * (i + 1) + 0.001 * k) for i, ly in enumerate(layers) for r in ranks}
        networks += _network_table(m, drops, probe[m])
    for a in models:
        for b in models:
            gap = {ly: abs(probe[a][ly] - probe[b][ly]) for ly in layers}
            for i, ly in enumerate(layers):
                for r in ranks:
                    d = next(x["dissimilarity"] for x in networks if x["model"] == a and x["layer"] == ly and x["rank"] == r)
                    for method, dis, dist in (("tracks", d, gap[ly] + d), ("flat", 0.0, 0.3), ("anti", -d, -gap[ly] - d)):
                        pairs.append({"model_a": a, "model_b": b, "layer": ly, "index": i, "rank": r, "full_rank": 8,
                                      "variance_kept": 1.0, "method": method, "value": 0.0, "distance": dist,
                                      "dissimilarity": dis, "b_accuracy": 1.0})
    return pd.DataFrame(pairs), pd.DataFrame(networks)


def test_unit_correlations_and_sensitivity_over_seeds_with_t_interval():
    from repmatch.sensitivity.aggregate import sensitivity_over_units, unit_correlations

    pairs, networks = _synthetic()
    with pytest.warns(ConstantInputWarning):
        units = unit_correlations(pairs, networks)
    pooled = units[(units.scope == "pooled") & (units.functional == "probe_accuracy")]
    assert set(pooled.kind) == {"within", "cross"} and len(pooled) == 9 * 3
    assert np.allclose(pooled[pooled.method == "tracks"].spearman, 1.0)
    assert np.allclose(pooled[pooled.method == "anti"].spearman, -1.0)
    assert pooled[pooled.method == "flat"].spearman.isna().all()
    # a t interval over units, checked against a naive one on perturbed unit values
    units2 = units.copy()
    sel = (units2.scope == "pooled") & (units2.method == "tracks") & (units2.kind == "cross") & (units2.functional == "probe_accuracy")
    vals = np.array([0.9, 0.7, 0.8, 0.6, 1.0, 0.75])
    units2.loc[sel, "spearman"] = vals
    sens = sensitivity_over_units(units2, level=0.9).set_index(["kind", "functional", "method"])
    row = sens.loc[("cross", "probe_accuracy", "tracks")]
    half = stats.t.ppf(0.95, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals))
    assert row.spearman == pytest.approx(vals.mean()) and row.n_units == 6
    assert (row.spearman_low, row.spearman_high) == pytest.approx((vals.mean() - half, vals.mean() + half))
    flat = sens.loc[("within", "probe_accuracy", "flat")]
    assert np.isnan(flat.spearman) and flat.n_units == 0 and flat.n_undefined == 3


def _spec_points(pairs, networks):
    """The synthetic pairs' full-rank rows of different networks as specificity points (one per unordered pair)."""
    from repmatch.sensitivity.specificity import network_scores, specificity_points

    full = pairs[(pairs.model_a < pairs.model_b) & (pairs["rank"] == pairs.full_rank)]
    scores = network_scores(networks)
    return specificity_points(full[["model_a", "model_b", "layer", "method", "distance"]], scores), scores


def test_specificity_per_layer_tracks_the_probe_gap_and_constant_is_nan():
    from repmatch.sensitivity.specificity import specificity_tables

    models = [f"m{k}" for k in range(6)]
    pairs, networks = _synthetic(models)
    points, scores = _spec_points(pairs, networks)
    assert (points.groupby(["method", "layer"]).size() == 15).all()
    # naive probe gap for one point
    p = networks[(networks.method == "probe_accuracy") & (networks["rank"] == 8)].set_index(["model", "layer"])["value"]
    row = points[(points.model_a == "m0") & (points.model_b == "m2") & (points.layer == "l2") & (points.method == "tracks")]
    assert row.probe_gap.iloc[0] == pytest.approx(abs(p["m2", "l2"] - p["m0", "l2"]))
    by_layer, strat = specificity_tables(points, scores, level=0.95, n_permutations=500, seed=0)
    probe = by_layer[by_layer.gap == "probe"].set_index(["method", "layer"])
    assert np.allclose(probe.loc["tracks"].spearman, 1.0) and np.allclose(probe.loc["anti"].spearman, -1.0)
    assert probe.loc["flat"].spearman.isna().all() and probe.loc["flat"].reason.str.contains("distance is the same").all()
    st = strat[strat.gap == "probe"].set_index("method")
    assert st.loc["tracks", "spearman"] == pytest.approx(1.0) and st.loc["tracks", "p_value"] < 0.01
    assert np.isnan(st.loc["flat", "spearman"]) and "no layer" in st.loc["flat", "reason"]


def test_summary_table_one_row_per_method_beside_the_counterpart_test(tmp_path):
    from repmatch.sensitivity.aggregate import summary_table, unit_correlations
    from repmatch.sensitivity.plots import plot_sensitivity_specificity
    from repmatch.sensitivity.specificity import specificity_tables

    pairs, networks = _synthetic([f"m{k}" for k in range(6)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        units = unit_correlations(pairs, networks)
    points, scores = _spec_points(pairs, networks)
    by_layer, strat = specificity_tables(points, scores, level=0.95, n_permutations=200, seed=0)
    sanity = pd.DataFrame([{"family": "similarity", "method": "tracks", "metric": "value", "accuracy": 0.8, "ci_low": 0.5,
                            "ci_high": 0.95, "chance": 0.33}])
    summ = summary_table(units, strat, level=0.95, sanity_specificity=sanity).set_index("method")
    assert list(summ.index) == ["tracks", "flat", "anti"]
    assert summ.loc["tracks", "sens_within_probe"] == pytest.approx(1.0) and summ.loc["tracks", "sens_within_probe_n"] == 6
    assert summ.loc["tracks", "spec_probe"] == pytest.approx(1.0) and summ.loc["anti", "spec_probe"] == pytest.approx(-1.0)
    assert summ.loc["tracks", "spec_probe_layers"] == 3 and "spec" not in summ.columns  # no pooled column left
    assert np.isnan(summ.loc["flat", "sens_cross_probe"]) and np.isnan(summ.loc["flat", "spec_probe"])
    assert summ.loc["tracks", "counterpart"] == 0.8 and np.isnan(summ.loc["anti", "counterpart"])
    assert summ.loc["tracks", "family"] == "index"
    out = plot_sensitivity_specificity(summ.reset_index(), tmp_path / "fig", by_layer=by_layer, points=points, formats=("png",))
    assert [p.name for p in out] == ["fig.png"] and out[0].stat().st_size > 10_000


def test_pairs_layers_and_settings():
    from repmatch.sensitivity.pairs import sensitivity_layers, sensitivity_pairs
    from repmatch.config_checks import checked_settings
    from repmatch.settings import ConfigError, section_settings

    models = ["m0", "m1", "m2"]
    off = section_settings("sensitivity")
    assert sensitivity_pairs(models, off) == []
    s = section_settings("sensitivity", {"enabled": True})
    assert len(sensitivity_pairs(models, s)) == 3 + 6 and s.stitch_methods == ("dm", "tlm")
    upper = section_settings("sensitivity", {"enabled": True, "pairs": {"within": "first", "cross": "upper"}})
    assert sensitivity_pairs(models, upper) == ["m0__m0", "m0__m1", "m0__m2", "m1__m2"]
    first = section_settings("sensitivity", {"enabled": True, "pairs": {"within": "none", "cross": "first"}})
    assert sensitivity_pairs(models, first) == ["m0__m1"]
    base = yaml.safe_load((Path(__file__).parents[2] / "config.yaml").read_text())

    def config(**kw):
        return {**base, "sensitivity": {**base.get("sensitivity", {}), **kw.pop("sensitivity", {})}, **kw}

    st = checked_settings(config(sensitivity={"layers": ["conv1", "conv3"]}))
    assert sensitivity_layers(st) == ["conv1", "conv3"]
    # the default's small version: three evenly spaced layers of whatever network the config names
    assert sensitivity_layers(checked_settings(base)) == ["conv1", "conv3", "fc1"]
    # (another architecture: the default's stitching grid names smallcnn layers, so it goes back to model.layers)
    resnet = checked_settings(config(model={"arch": "resnet20", "layers": "all"}, stitching={**base["stitching"], "layers": None}))
    assert sensitivity_layers(resnet) == ["stem", "layer2_0", "layer3_2"]  # 10 layers: positions 0, 4 (4.5 to even), 9
    with pytest.raises(ConfigError, match="sensitivity.layers"):
        checked_settings(config(sensitivity={"layers": ["nope"]}))
    with pytest.raises(ConfigError, match="sensitivity.pairs.cross"):
        checked_settings(config(seeds=[0], sensitivity={"enabled": True, "pairs": {"cross": "all"}},
                             stitching={**base["stitching"], "pairs": {"within": "first", "cross": "none"}}))
    with pytest.raises(ConfigError, match="stitch_methods"):
        checked_settings(config(sensitivity={"stitch_methods": ["xyz"]}))


def test_within_rows_come_from_the_network_tables_when_no_within_pair_ran():
    from repmatch.sensitivity.aggregate import unit_correlations, within_from_networks

    pairs, networks = _synthetic()
    cross = pairs[pairs.model_a != pairs.model_b]
    idx = networks[networks.method == "probe_accuracy"].assign(method="tracks")  # an index equal to the drop
    nets = pd.concat([networks, idx], ignore_index=True)
    merged = within_from_networks(cross, nets)
    within = merged[merged.model_a == merged.model_b]
    assert set(within.method) == {"tracks"} and len(within) == 3 * 12
    # a within pair table, when present, wins: no duplicated rows
    assert len(within_from_networks(pairs, nets)) == len(pairs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        units = unit_correlations(merged, nets)
    w = units[(units.kind == "within") & (units.scope == "pooled") & (units.functional == "probe_accuracy")]
    assert len(w) == 3 and np.allclose(w.spearman, 1.0)
