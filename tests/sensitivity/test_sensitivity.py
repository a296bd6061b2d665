"""The low-rank map, the probe, and the sensitivity correlation (properties + naive references)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from repmatch.sensitivity.correlation import (
    ConstantInputWarning,
    rank_correlations,
    sensitivity_correlations,
)
from repmatch.sensitivity.lowrank import channel_rows, fit_lowrank, halving_ranks
from repmatch.sensitivity.probe import (
    network_accuracy_lowrank,
    pool_features,
    train_probe,
)

torch.set_num_threads(1)


def _conv_batch(n=64, c=6, h=3, w=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g) * torch.linspace(3.0, 0.2, c)  # distinct variances
    z = torch.randn(n, h, w, c, generator=g) @ mix.T + torch.linspace(-1, 1, c)
    return z.permute(0, 3, 1, 2).contiguous().to(torch.float64)


@pytest.mark.parametrize("shape", ["conv", "tokens", "flat"])
def test_rank_r_output_has_rank_at_most_r(shape):
    x = _conv_batch()
    if shape == "tokens":
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])  # (N, T, C)
    elif shape == "flat":
        x = x[:, :, 0, 0]
    basis = fit_lowrank([x])
    rows_mean = channel_rows(x).mean(0)
    for r in range(7):
        out = basis.apply(x, r)
        assert out.shape == x.shape and out.dtype == x.dtype
        centred = channel_rows(out) - basis.mean
        assert torch.linalg.matrix_rank(centred, rtol=1e-9) <= r
        # the mean is kept: the rank-r map changes only the centred part
        assert torch.allclose(channel_rows(out).mean(0), rows_mean, atol=1e-9)


def test_full_rank_reproduces_input_and_matches_naive_svd():
    x = _conv_batch().to(torch.float32)
    basis = fit_lowrank([x])
    assert (basis.apply(x, basis.full_rank) - x).abs().max() < 1e-6
    # naive reference: SVD of the centred (N*H*W, C) matrix of the same batch
    rows = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]).double()
    mu = rows.mean(0)
    _, _, vt = torch.linalg.svd(rows - mu, full_matrices=False)
    for r in (1, 3):
        ref = mu + (rows - mu) @ vt[:r].T @ vt[:r]
        got = channel_rows(basis.apply(x.double(), r))
        assert torch.allclose(got, ref, atol=1e-9)


def test_directions_do_not_depend_on_batch_size():
    x = _conv_batch(n=90)
    ref = fit_lowrank([x])
    for bs in (1, 7, 32):
        b = fit_lowrank(x[i : i + bs] for i in range(0, x.shape[0], bs))
        assert b.n_rows == ref.n_rows
        assert torch.allclose(b.mean, ref.mean, atol=1e-12)
        for r in (1, 2, 4):
            assert torch.allclose(b.projector(r), ref.projector(r), atol=1e-10)


def test_fitted_on_train_applied_to_other_batch_is_per_sample():
    """A sample's rank-r representation does not depend on the other samples of its batch."""
    x = _conv_batch(n=40)
    basis = fit_lowrank([x])
    whole = basis.apply(x, 2)
    one = torch.cat([basis.apply(x[i : i + 1], 2) for i in range(5)])
    assert torch.allclose(whole[:5], one, atol=1e-12)


def test_halving_ranks_and_bad_rank():
    assert halving_ranks(64) == [64, 32, 16, 8, 4, 2, 1]
    assert halving_ranks(6) == [6, 3, 1]
    basis = fit_lowrank([_conv_batch()])
    with pytest.raises(ValueError):
        basis.apply(_conv_batch(), 7)


def _planted(n, k=3, c=8, seed=0):
    """Features whose label is linear in the top-k principal directions (and only in them)."""
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=torch.Generator().manual_seed(123), dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    sd = torch.tensor([2.2, 2.1, 2.0] + [0.6] * (c - k), dtype=torch.float64)
    s = torch.randn(n, c, generator=g, dtype=torch.float64) * sd
    y = (s[:, :k].sum(1) > 0).long()
    noise = 0.1 * torch.randn(n, 2, 2, c, generator=g, dtype=torch.float64) * sd  # per position, same spectrum
    x = ((s[:, None, None, :] + noise) @ q.T).permute(0, 3, 1, 2).contiguous()
    return x.float(), y


def test_planted_probe_falls_only_below_k_and_tracking_index_correlates():
    k, c = 3, 8
    xtr, ytr = _planted(1500, k, c, seed=0)
    xte, yte = _planted(1000, k, c, seed=1)
    basis = fit_lowrank(xtr[i : i + 256] for i in range(0, 1500, 256))
    ranks = [8, 6, 4, 3, 2, 1]
    acc = {}
    for r in ranks:
        probe = train_probe(pool_features(basis.apply(xtr, r)), ytr, n_classes=2, epochs=15, lr=0.05, batch_size=128,
                            weight_decay=0.0, seed=0)
        acc[r] = probe.accuracy(pool_features(basis.apply(xte, r)), yte)
    for r in ranks:
        if r >= k:
            assert acc[r] > 0.95, acc
        else:
            assert acc[r] < acc[k] - 0.1, acc
    assert acc[1] < acc[2]
    # the correlation over full rank, rank k and below: the drop is 0 at full rank, ~0 (noise of
    # either sign) at k, then large; a monotone index must order them up to that noise
    ranks = [8, 3, 2, 1]
    drop = [acc[c] - acc[r] for r in ranks]
    # an index that tracks the loss: 1 - linear CKA(full, rank r), computed naively here
    full = pool_features(xte).double()

    def cka(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        return float((a.T @ b).norm() ** 2 / ((a.T @ a).norm() * (b.T @ b).norm()))

    tracking = [1 - cka(full, pool_features(basis.apply(xte, r)).double()) for r in ranks]
    res = rank_correlations(tracking, drop, what="1 - CKA")
    assert res["spearman"] >= 0.8 - 1e-9 and res["kendall"] >= 2 / 3 - 1e-9, (res, drop, tracking)
    # naive reference: scipy on the same points
    assert res["spearman"] == pytest.approx(stats.spearmanr(tracking, drop).statistic)
    # an index that runs the other way gets the opposite sign
    assert rank_correlations([-t for t in tracking], drop)["spearman"] == pytest.approx(-res["spearman"])


def test_constant_index_gives_nan_and_warning():
    with pytest.warns(ConstantInputWarning, match="constant"):
        res = rank_correlations([0.3, 0.3, 0.3, 0.3], [0.0, 0.1, 0.2, 0.4], what="const")
    assert np.isnan(res["spearman"]) and np.isnan(res["kendall"]) and res["n_points"] == 4
    with pytest.warns(ConstantInputWarning):
        assert np.isnan(rank_correlations([0.1, 0.2], [0.0, 0.1])["spearman"])  # too few points
    # constant up to rounding (CCA of full vs rank-deficient: 1 - 1e-13 .. 1 + 4e-16) is constant, not ranked noise
    noise = [-4.4e-16, 1.2e-13, 2.2e-16, 5e-14]
    with pytest.warns(ConstantInputWarning):
        assert np.isnan(rank_correlations(noise, [0.0, 0.1, 0.2, 0.4])["kendall"])
    assert rank_correlations(noise, [0.0, 0.1, 0.2, 0.4], atol=0.0)["n_points"] == 4  # atol=0: exact constancy only


def test_sensitivity_correlations_per_layer_and_pooled():
    rows = []
    for li, layer in enumerate(["l1", "l2"]):
        for r, d in zip([8, 4, 2, 1], [0.0, 0.1, 0.3, 0.6]):
            rows.append({"method": "good", "layer": layer, "dissimilarity": d + li, "drop": d + li})
            rows.append({"method": "flat", "layer": layer, "dissimilarity": 1.0, "drop": d + li})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sensitivity_correlations(pd.DataFrame(rows))
    assert sum(issubclass(w.category, ConstantInputWarning) for w in caught) == 3  # flat: 2 layers + pooled
    good = out[out.method == "good"]
    assert np.allclose(good.spearman, 1.0) and np.allclose(good.kendall, 1.0)
    assert set(good.scope) == {"layer", "pooled"}
    assert out[out.method == "flat"].spearman.isna().all()


def test_network_accuracy_with_lowrank_layer():
    from repmatch.networks import StitchableNet

    torch.manual_seed(0)
    net = StitchableNet([("a", torch.nn.Linear(5, 4)), ("b", torch.nn.ReLU())], torch.nn.Linear(4, 3))
    x = torch.randn(50, 5)
    y = net(x).argmax(1)
    basis = fit_lowrank([net.forward_until(x, "a").detach()])
    def batches():
        return [(x[:25], y[:25]), (x[25:], y[25:])]

    assert network_accuracy_lowrank(net, "a", basis, 4, batches) == 1.0
    # naive reference at rank 1
    h = basis.apply(net.forward_until(x, "a"), 1)
    ref = float((net.forward_from(h, "a").argmax(1) == y).float().mean())
    assert network_accuracy_lowrank(net, "a", basis, 1, batches) == pytest.approx(ref)


def _tiny_conv_net():
    from repmatch.networks import StitchableNet

    torch.manual_seed(0)
    blocks = [("c1", torch.nn.Sequential(torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.ReLU())),
              ("c2", torch.nn.Sequential(torch.nn.Conv2d(6, 4, 3, padding=1), torch.nn.ReLU()))]
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    return StitchableNet(blocks, head).eval()


def test_layer_sensitivity_on_a_small_network():
    from repmatch.sensitivity.lowrank import halving_ranks
    from repmatch.sensitivity.within_network import layer_sensitivity, summary_table, tidy_rows
    from repmatch.tables import COLUMNS

    net = _tiny_conv_net()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)  # labels = the network's own predictions: full-rank accuracy 1
    rows = []
    for k, layer in enumerate(["c1", "c2"]):
        _, r = layer_sensitivity(
            net, layer, train_x=x[:120], train_y=y[:120], test_x=x[120:], test_y=y[120:], probe_x=x[120:170],
            ranks=halving_ranks, measures=["linear_cka", "procrustes_distance"], n_classes=3, probe_epochs=3,
            probe_lr=0.05, probe_batch_size=32, probe_weight_decay=0.0, seed=0, dm_ridge=0.0, batch_size=50,
            device=torch.device("cpu"))
        rows += tidy_rows("tiny", layer, k, r)
    table = pd.DataFrame(rows)[COLUMNS["sensitivity"]]
    assert set(table["rank"][table.layer == "c1"]) == {6, 3, 1}
    v = table.set_index(["layer", "rank", "method"])["value"]
    for layer, full in (("c1", 6), ("c2", 4)):
        assert v[layer, full, "network_accuracy"] == 1.0
        assert v[layer, full, "linear_cka"] == pytest.approx(1.0, abs=1e-9)
        assert v[layer, full, "dm_repr_diff"] == pytest.approx(0.0, abs=1e-10)
        for r in set(table["rank"][table.layer == layer]):
            # DM from the rank-r front recovers nothing: the principal components are uncorrelated
            assert v[layer, r, "dm_accuracy"] == pytest.approx(v[layer, r, "network_accuracy"], abs=0.02)
    d = table.set_index(["layer", "rank", "method"])["dissimilarity"]
    assert d["c1", 1, "linear_cka"] == pytest.approx(1 - v["c1", 1, "linear_cka"])
    assert (table[table.method == "variance_kept"].empty) and table.variance_kept.between(0, 1 + 1e-12).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        summ = summary_table(table)
    assert set(summ.functional) == {"probe_accuracy", "network_accuracy"}
    assert {"linear_cka", "procrustes_distance", "dm_accuracy", "dm_repr_diff"} <= set(summ.method)
    pooled = summ[(summ.scope == "pooled") & (summ.functional == "network_accuracy")]
    assert (pooled.n_points == 6).all()  # c1: ranks 6, 3, 1; c2: 4, 2, 1


def test_settings_ranks_and_jobs():
    from repmatch.sensitivity.pairs import sensitivity_models
    from repmatch.settings import section_settings

    s = section_settings("sensitivity")
    assert s.enabled is False and s.ranks is None
    assert s.ranks_for(32) == halving_ranks(32)
    assert section_settings("sensitivity", {"ranks": [1, 4, 64]}).ranks_for(16) == [16, 4, 1]  # full rank always first
    assert sensitivity_models(["m0", "m1"], s) == []
    assert sensitivity_models(["m0", "m1"], section_settings("sensitivity", {"enabled": True})) == ["m0", "m1"]


def test_rank_curves_figure(tmp_path):
    from repmatch.sensitivity.plots import plot_rank_curves

    rows = [{"model": "m", "layer": l, "index": i, "rank": r, "full_rank": 4, "variance_kept": r / 4, "method": m,
             "value": v, "dissimilarity": 1 - v}
            for i, l in enumerate(["a", "b"]) for r in (4, 2, 1)
            for m, v in (("probe_accuracy", r / 4), ("network_accuracy", r / 4), ("linear_cka", r / 4))]
    out = plot_rank_curves(pd.DataFrame(rows), tmp_path / "curves", formats=("png",))
    assert out[0].exists() and out[0].stat().st_size > 1000
