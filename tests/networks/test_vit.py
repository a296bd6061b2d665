"""Vision transformers and token layers: the built-in ViTs, token stitches, DM on tokens, TLM across kinds."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repmatch.architectures import LAYERS
from repmatch.networks import build_model
from repmatch.settings import section_settings
from repmatch.stitching import Cell, Stitch, StitchShapeError, TLMConfig, evaluate_stitches, fit_direct, layer_shapes, train_stitches
from repmatch.stitching.direct import GridNormalEquations, pinv_grid
from repmatch.stitching.grid import build_stitches
from repmatch.kinds import token_layout
from repmatch.stitching.layer import stitch_inputs, target_rows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the built-in ViTs ---------------------------------------------------------------------------


def _vit_ti_params(classes: int) -> int:
    """ViT-Ti (patch 4, 32x32 RGB) counted by hand from its plan."""
    d, mlp, depth, tokens = 192, 768, 12, 1 + 8 * 8
    embed = 3 * 4 * 4 * d + d + d + tokens * d  # patch conv (+bias), CLS token, position embedding
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * mlp + mlp) + (mlp * d + d)  # 2 LN, qkv, proj, MLP
    head = 2 * d + d * classes + classes  # final LN, classifier
    return embed + depth * block + head


def test_vit_ti_layers_shapes_and_parameters():
    torch.manual_seed(0)
    model = build_model("vit_ti", 10, 3, 32).eval()
    assert model.layer_names == list(LAYERS["vit_ti"]) == ["embed", *(f"block{k}" for k in range(12))]
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x, model.layer_names)
        assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == {k: (65, 192) for k in model.layer_names}
        assert model(x).shape == (2, 10)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _vit_ti_params(10) == 5_362_762  # "ViT-Ti ~ 5.4M parameters"
    heads = [m.heads for m in model.modules() if hasattr(m, "heads")]
    assert heads == [3] * 12


def test_vit_head_reads_only_the_cls_token():
    """Changing every patch token of the last block's output leaves the logits alone; changing CLS does not."""
    torch.manual_seed(0)
    model = build_model("vit_tiny_test", 10, 1, 28).eval()
    assert model.layer_names == list(LAYERS["vit_tiny_test"])
    with torch.no_grad():
        h = model.forward_until(torch.randn(4, 1, 28, 28), "block3")
        assert h.shape == (4, 17, 64)
        h2 = h.clone()
        h2[:, 1:] += torch.randn_like(h2[:, 1:])
        assert torch.equal(model.forward_from(h, "block3"), model.forward_from(h2, "block3"))
        h2[:, 0] += 1.0
        assert not torch.allclose(model.forward_from(h, "block3"), model.forward_from(h2, "block3"))
    with pytest.raises(ValueError, match="not a multiple"):
        build_model("vit_ti", 10, 3, 30)


def test_token_layout():
    assert token_layout(65) == (True, 8)
    assert token_layout(17) == (True, 4)
    assert token_layout(64) == (False, 8)  # a square: a grid without CLS (as the seed paper's code decides)
    assert token_layout(2) == (True, 1)
    assert token_layout(11) == (False, None)


# --- stitches between token layers and other kinds, against naive references -------------------------


def _affine_tokens(w, b, tokens):
    """Naive reference: W v + b for every token v, one at a time."""
    n, t, _ = tokens.shape
    out = torch.empty(n, t, w.shape[0], dtype=tokens.dtype)
    for i in range(n):
        for k in range(t):
            out[i, k] = w @ tokens[i, k] + b
    return out


def _random_stitch(in_shape, out_shape, seed=0):
    return Stitch(in_shape, out_shape, generator=torch.Generator().manual_seed(seed)).double()


def test_token_to_token_is_one_affine_map_on_every_token():
    s = _random_stitch((17, 6), (17, 5))
    h = torch.randn(3, 17, 6, dtype=torch.float64)
    torch.testing.assert_close(s(h), _affine_tokens(s.weight, s.bias, h), rtol=0, atol=1e-12)
    assert s.weight.shape == (5, 6)


def test_conv_to_token_resizes_to_the_patch_grid_and_pools_into_cls():
    s = _random_stitch((3, 8, 8), (17, 5))
    h = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    # naive: 8x8 -> 4x4 by 2x2 means (bilinear halving), row-major tokens; CLS = mean over all 64 positions
    grid = torch.stack([h[:, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].mean(dim=(2, 3)) for i in range(4) for j in range(4)], dim=1)
    tokens = torch.cat([h.mean(dim=(2, 3))[:, None], grid], dim=1)  # (2, 17, 3)
    torch.testing.assert_close(s(h), _affine_tokens(s.weight, s.bias, tokens), rtol=0, atol=1e-12)
    # same grid: the map's pixels become the patch tokens one for one
    s4 = _random_stitch((3, 4, 4), (17, 5))
    h4 = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    tokens4 = torch.cat([h4.mean(dim=(2, 3))[:, None], h4.flatten(2).transpose(1, 2)], dim=1)
    torch.testing.assert_close(s4(h4), _affine_tokens(s4.weight, s4.bias, tokens4), rtol=0, atol=1e-12)


def test_token_to_conv_drops_cls_and_reshapes_the_grid():
    s = _random_stitch((17, 6), (5, 4, 4))
    h = torch.randn(2, 17, 6, dtype=torch.float64)
    y = s(h)
    assert y.shape == (2, 5, 4, 4)
    for i in range(4):
        for j in range(4):
            want = h[:, 1 + 4 * i + j] @ s.weight.T + s.bias
            torch.testing.assert_close(y[:, :, i, j], want, rtol=0, atol=1e-12)
    h2 = h.clone()
    h2[:, 0] = 1e3  # the CLS token does not reach a conv layer
    assert torch.equal(s(h2), y)
    up = _random_stitch((17, 6), (5, 8, 8))(h)  # grids differ: bilinear, as conv -> conv
    grid = h[:, 1:].transpose(1, 2).reshape(2, 6, 4, 4)
    s8 = _random_stitch((17, 6), (5, 8, 8))
    want = F.conv2d(F.interpolate(grid, size=(8, 8), mode="bilinear", align_corners=False), s8.weight[:, :, None, None], s8.bias)
    torch.testing.assert_close(up, want, rtol=0, atol=1e-12)


def test_token_to_token_across_grids_and_flat_layers():
    h = torch.randn(2, 5, 3, dtype=torch.float64)  # CLS + 2x2
    s = _random_stitch((5, 3), (17, 4))  # -> CLS + 4x4: CLS to CLS, grid upsampled
    y = s(h)
    torch.testing.assert_close(y[:, 0], h[:, 0] @ s.weight.T + s.bias, rtol=0, atol=1e-12)
    grid = F.interpolate(h[:, 1:].transpose(1, 2).reshape(2, 3, 2, 2), size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[:, 1:], _affine_tokens(s.weight, s.bias, grid.flatten(2).transpose(1, 2)), rtol=0, atol=1e-12)
    flat = _random_stitch((5, 3), (4,))  # token -> flat: mean of the patch tokens
    torch.testing.assert_close(flat(h), h[:, 1:].mean(1) @ flat.weight.T + flat.bias, rtol=0, atol=1e-12)
    v = torch.randn(2, 3, dtype=torch.float64)
    bcast = _random_stitch((3,), (5, 4))  # flat -> token: the vector on every token, CLS included
    torch.testing.assert_close(bcast(v), (v @ bcast.weight.T + bcast.bias)[:, None].expand(2, 5, 4), rtol=0, atol=1e-12)


def test_sequences_without_a_grid_only_meet_their_own_length():
    _random_stitch((11, 3), (11, 4))  # same length: fine
    with pytest.raises(StitchShapeError, match="no square patch grid"):
        Stitch((11, 3), (17, 4))
    with pytest.raises(StitchShapeError, match="no square patch grid"):
        Stitch((3, 4, 4), (11, 4))
    with pytest.raises(StitchShapeError, match=r"expects front-half activations of shape \(N, 17, 6\)"):
        Stitch((17, 6), (17, 6))(torch.zeros(2, 16, 6))


# --- DM on token layers: every token is a row ------------------------------------------------------


@pytest.mark.parametrize("in_shape", [(17, 6), (6, 8, 8), (6,)], ids=["token", "conv", "flat"])
def test_dm_recovers_a_planted_per_token_affine_map(in_shape):
    """B's tokens are an exact affine image of A's (moved to B's tokens): DM finds W, b to 1e-5 (float64)."""
    g = torch.Generator().manual_seed(1)
    out_shape = (17, 5)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64)
    b = torch.randn(5, generator=g, dtype=torch.float64)
    planted = Stitch(in_shape, out_shape).double().set_affine(w, b)
    ne = GridNormalEquations([("a", "b")], {"a": in_shape}, {"b": out_shape})
    xs = [torch.randn(40, *in_shape, generator=g, dtype=torch.float64) * 3 + 1 for _ in range(3)]
    for x in xs:  # in batches, as the pipeline does
        with torch.no_grad():
            ne.update({"a": x}, {"b": planted(x)})
    w_hat, b_hat = ne.solve("a", "b")
    torch.testing.assert_close(w_hat, w, rtol=0, atol=1e-5)
    torch.testing.assert_close(b_hat, b, rtol=0, atol=1e-5)
    # rows: one per (sample, token) in the same order on both sides
    with torch.no_grad():
        assert stitch_inputs(xs[0], out_shape).shape == (40 * 17, 6)
        assert torch.equal(target_rows(planted(xs[0])), planted(xs[0]).reshape(-1, 5))
        # the paper's small-K pinv DM on the same rows
        (wp, bp), = pinv_grid([("a", "b")], {"a": xs[0]}, {"b": planted(xs[0])}, {"b": out_shape}).values()
    torch.testing.assert_close(wp, w, rtol=0, atol=1e-5)
    torch.testing.assert_close(bp, b, rtol=0, atol=1e-5)


def test_dm_into_a_conv_layer_from_tokens_matches_the_naive_rows():
    """token -> conv DM equals least squares on the naive rows: patch token (i, j) against B's pixel (i, j)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(30, 17, 4, generator=g, dtype=torch.float64)
    y = torch.randn(30, 3, 4, 4, generator=g, dtype=torch.float64)
    ne = GridNormalEquations([("a", "b")], {"a": (17, 4)}, {"b": (3, 4, 4)})
    ne.update({"a": x}, {"b": y})
    w_hat, b_hat = ne.solve("a", "b")
    rows_x = torch.cat([x[:, 1:].reshape(-1, 4), torch.ones(30 * 16, 1, dtype=torch.float64)], dim=1)
    rows_y = y.permute(0, 2, 3, 1).reshape(-1, 3)
    coef = torch.linalg.lstsq(rows_x, rows_y).solution
    torch.testing.assert_close(w_hat, coef[:-1].T, rtol=0, atol=1e-10)
    torch.testing.assert_close(b_hat, coef[-1], rtol=0, atol=1e-10)


# --- TLM and scoring on trained networks: tiny ViT and smallcnn -------------------------------------


@pytest.fixture(scope="module")
def data(mnist_subset):
    """1,000 random training digits and 200 test digits."""
    return mnist_subset(1000, 200)


def _train(arch, data, seed, **settings):
    from repmatch.backbone.training import train_model

    torch.manual_seed(seed)
    net = build_model(arch, 10, 1, 28)
    train, test = data
    metrics = train_model(net, SimpleNamespace(train=train, test=test), section_settings("train", settings), seed, "cpu", progress=False)
    return net.eval(), metrics


@pytest.fixture(scope="module")
def nets(data):
    vit, vit_metrics = _train("vit_tiny_test", data, 0, epochs=6, batch_size=32, optimizer="adamw", lr=2e-3, weight_decay=0.05)
    cnn, _ = _train("smallcnn", data, 0, epochs=3, batch_size=32, lr=0.1)
    return vit, cnn, vit_metrics


def test_tiny_vit_trains_with_adamw(nets):
    _, _, metrics = nets
    losses = [h["train_loss"] for h in metrics["history"]]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert metrics["test_accuracy"] > 0.4  # 10 classes: chance is 0.1 (0.56 measured: 1,000 digits, 6 epochs)


def test_token_and_conv_to_token_stitches_train_and_score(nets, data):
    """TLM trains token->token, conv->token and token->conv stitches; every metric is scored and finite."""
    vit, cnn, _ = nets
    train, test = data
    cfg = section_settings("stitching", {"tlm": {"epochs": 3, "batch_size": 32, "lr": 0.01}})
    shapes_v, shapes_c = layer_shapes(vit, (1, 28, 28)), layer_shapes(cnn, (1, 28, 28))
    assert shapes_v["block1"] == (17, 64) and shapes_c["conv4"] == (64, 7, 7)
    runs = {  # (A, B, pairs, shapes_a, shapes_b)
        "token->token": (vit, vit, [("block1", "block1"), ("block0", "block2")], shapes_v, shapes_v),
        "conv->token": (cnn, vit, [("conv4", "block1"), ("conv5", "block2")], shapes_c, shapes_v),
        "token->conv": (vit, cnn, [("block1", "conv4")], shapes_v, shapes_c),
    }
    for name, (a, b, pairs, sa, sb) in runs.items():
        dm_maps, whiteners = fit_direct(a, b, pairs, sa, sb, train.x, cfg, torch.device("cpu"))
        stitches = build_stitches(pairs, sa, sb, ["dm", "tlm"], dm_maps, seed=0)
        tlm = {c: s for c, s in stitches.items() if c.method == "tlm"}
        history = train_stitches(a, b, tlm, train.x, train.y, TLMConfig.from_settings(cfg), "cpu")
        for cell, losses in history.items():
            assert len(losses) == 3 and np.isfinite(losses).all(), (name, cell)
            assert losses[-1] < losses[0], (name, cell, losses)
        scores, base = evaluate_stitches(a, b, stitches, test.x, test.y, "cpu", 100, whiteners)
        for cell, metrics in scores.items():
            assert np.isfinite(list(metrics.values())).all(), (name, cell, metrics)
            assert 0.0 <= metrics["accuracy"] <= 1.0
        for cell in tlm:
            assert scores[cell]["accuracy"] > 0.3, (name, cell, scores[cell]["accuracy"])  # chance is 0.1; 0.43-0.85 measured
        if name == "token->token":  # DM of a layer onto itself is the identity: B's own accuracy
            assert scores[Cell("dm", "block1", "block1")]["accuracy"] == pytest.approx(base["accuracy"], abs=1e-9)


# --- similarity: token layers through the conv/token handling switch ---------------------------------


def _tokens(n=40, t=17, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, t, d))


def _naive_linear_cka(x, y):
    """Linear CKA written out: centre columns, ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def test_token_modes_against_naive_references():
    from repmatch.similarity import similarity

    a, b = _tokens(seed=0), _tokens(d=5, seed=1)
    n, t = a.shape[:2]
    conv = np.random.default_rng(2).normal(size=(n, 4, 8, 8))
    naive = {  # token_mode -> (matrix of a, matrix of b) built by hand
        "mean": (a.mean(1), b.mean(1)),
        "cls": (a[:, 0], b[:, 0]),
        "flatten": (a.reshape(n, -1), b.reshape(n, -1)),
        "per_token": (np.concatenate([a[i] for i in range(n)]), np.concatenate([b[i] for i in range(n)])),
    }
    for mode, (xa, xb) in naive.items():
        got = similarity(a, b, "linear_cka", token_mode=mode)
        assert got == pytest.approx(_naive_linear_cka(xa, xb), abs=1e-12), mode
    # follow: the conv_mode's counterpart
    assert similarity(a, b, "linear_cka", conv_mode="gap") == pytest.approx(_naive_linear_cka(*naive["mean"]), abs=1e-12)
    assert similarity(a, b, "linear_cka", conv_mode="per_position") == pytest.approx(_naive_linear_cka(*naive["per_token"]), abs=1e-12)
    assert similarity(a, b, "linear_cka", conv_mode="flatten") == pytest.approx(_naive_linear_cka(*naive["flatten"]), abs=1e-12)
    # per_token against a conv map: CLS dropped, the 4x4 patch grid against the 8x8 map pooled 2x2, row by row
    grid_rows = np.concatenate([a[i, 1:] for i in range(n)])  # (n*16, 6), row-major patches
    pooled = conv.reshape(n, 4, 4, 2, 4, 2).mean(axis=(3, 5))  # (n, C, 4, 4)
    conv_rows = pooled.transpose(0, 2, 3, 1).reshape(-1, 4)
    assert similarity(a, conv, "linear_cka", token_mode="per_token") == pytest.approx(_naive_linear_cka(grid_rows, conv_rows), abs=1e-12)
    # mean / cls against a conv map: the conv side by conv_mode (gap) against a flat partner
    assert similarity(a, conv, "linear_cka", token_mode="cls") == pytest.approx(
        _naive_linear_cka(a[:, 0], conv.mean(axis=(2, 3))), abs=1e-12)
    assert similarity(conv, a, "linear_cka", conv_mode="flatten", token_mode="mean") == pytest.approx(
        _naive_linear_cka(conv.reshape(n, -1), a.mean(1)), abs=1e-12)


def test_token_mode_errors_name_the_problem():
    from repmatch.similarity import similarity
    from repmatch.similarity.errors import SimilarityInputError

    no_cls = _tokens(t=16)
    with pytest.raises(SimilarityInputError, match="no CLS token"):
        similarity(no_cls, _tokens(), "linear_cka", token_mode="cls")
    with pytest.raises(SimilarityInputError, match="no square patch grid"):
        similarity(_tokens(t=11), _tokens(), "linear_cka", token_mode="per_token")
    with pytest.raises(SimilarityInputError, match="unknown token_mode"):
        similarity(_tokens(), _tokens(), "linear_cka", token_mode="tokens")
    # a sequence without a grid still works per token against its own length
    assert np.isfinite(similarity(_tokens(t=11), _tokens(t=11, seed=3), "linear_cka", token_mode="per_token"))


# --- subspace match: every token is a coordinate ---------------------------------------------------


def test_subspace_match_on_token_layers():
    from repmatch.subspace_match.compare import compare_layers
    from repmatch.subspace_match.sampling import align_spatial, gather_neuron_vectors, n_coordinates, token_maps

    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(30, 17, 6)), 0)
    # same length: coordinate k is (input k // T, token k % T), CLS included, as the naive (n*T, D) rows
    ta, tb = token_maps(a, a[:, :, ::-1])
    assert n_coordinates(ta.shape) == 30 * 17
    coords = np.array([0, 5, 17, 100, 509])
    np.testing.assert_array_equal(gather_neuron_vectors(ta, coords), a.reshape(-1, 6)[coords])
    # against a conv map: CLS dropped, the 4x4 patch grid pooled to the coarser grid like a conv map
    conv = rng.normal(size=(30, 3, 2, 2))
    ga, gc = align_spatial(*token_maps(a, conv))
    want = a[:, 1:].reshape(30, 2, 2, 2, 2, 6).mean(axis=(2, 4)).transpose(0, 3, 1, 2)  # 4x4 -> 2x2 block means
    np.testing.assert_allclose(ga, want, rtol=0, atol=1e-6)
    assert gc is conv
    # a planted match: B's tokens hold A's channels reversed and doubled, plus two unrelated channels
    b = np.concatenate([a[:, :, ::-1] * 2.0, np.maximum(rng.normal(size=(30, 17, 2)), 0)], axis=2)
    res = compare_layers(a + 0.01 * rng.random(a.shape), b, section_settings("subspace_match", {"eps": [0.1], "n_coords": 300,
                         "repeats": 2, "chance_permutations": 0}), key="t")  # fmt: skip
    assert np.mean(res.similarity[0.1]) == pytest.approx(12 / 14)
    with pytest.raises(ValueError, match="no square patch grid"):
        token_maps(rng.normal(size=(30, 11, 6)), conv)


def test_stitch_pair_grid_on_a_vit(nets, data):
    """The whole pair function (DM, TLM, DM-init TLM, Mahalanobis scores) on a ViT's token layers."""
    import copy

    from repmatch.stitching import stitch_pair
    from repmatch.stitching.grid import COLUMNS

    vit = nets[0]
    train, test = data
    cfg = section_settings("stitching", {"tlm": {"epochs": 1, "batch_size": 64, "lr": 0.01, "n_train": 300},
                                         "mahalanobis_class_conditional": True})
    df = stitch_pair(vit, copy.deepcopy(vit), train, test.subset(np.arange(100)), cfg, ["block1", "block3"], "cpu", ("v0", "v0"))
    assert list(df.columns) == COLUMNS
    assert len(df[df["metric"] == "accuracy"]) == 3 * 4 and np.isfinite(df["value"]).all()
    diag = df[(df["method"] == "dm") & (df["layer_a"] == df["layer_b"]) & (df["metric"] == "relative_accuracy")]
    np.testing.assert_allclose(diag["value"], 1.0, atol=1e-9)  # DM onto the same layer of the same network is the identity


def test_similarity_bootstrap_on_token_layers_equals_the_pooled_arrays():
    """The bootstrap sees token layers through the same switch: mean / cls tokens equal pre-pooled (n, D) arrays."""
    from repmatch.similarity.bootstrap import bootstrap_similarity_grids

    a, b = {"x": _tokens(n=30, seed=0)}, {"y": _tokens(n=30, d=5, seed=1)}
    for mode, pool in (("mean", lambda t: t.mean(1)), ("cls", lambda t: t[:, 0])):
        got = bootstrap_similarity_grids(a, b, ["linear_cka"], n_boot=20, seed=3, token_mode=mode)
        want = bootstrap_similarity_grids({"x": pool(a["x"])}, {"y": pool(b["y"])}, ["linear_cka"], n_boot=20, seed=3)
        np.testing.assert_allclose(got.replicates["linear_cka"], want.replicates["linear_cka"], rtol=0, atol=1e-12)
        assert got.path == want.path == "weighted"


def test_vit_config_errors_before_any_job(tmp_path):
    """Token layers and the OOD detectors do not mix: the config fails at parse time, naming the key."""
    from repmatch.config_checks import checked_settings
    from repmatch.settings import ConfigError

    base = {"seeds": [0, 1], "data": {"name": "mnist5k"}, "model": {"arch": "vit_tiny_test", "layers": ["block0"]},
            "train": {"epochs": 1}}
    checked_settings(base)  # fine as it is
    with pytest.raises(ConfigError, match="stitching.detector.enabled"):
        checked_settings({**base, "stitching": {"detector": {"enabled": True}}})
    with pytest.raises(ConfigError, match="block9"):
        checked_settings({**base, "model": {"arch": "vit_tiny_test", "layers": ["block9"]}})


def test_vit_training_is_deterministic(data):
    """Two runs of the same seed give bitwise-identical ViT weights on CPU (attention written out, AdamW)."""
    from repmatch.backbone.training import set_determinism, train_model

    train, test = data
    splits = SimpleNamespace(train=train.subset(np.arange(200)), test=test.subset(np.arange(50)))
    states = []
    for _ in range(2):
        set_determinism(5)
        net = build_model("vit_tiny_test", 10, 1, 28)
        train_model(net, splits, section_settings("train", {"epochs": 1, "batch_size": 50, "optimizer": "adamw", "lr": 1e-3}), 5,
                    "cpu", progress=False)
        states.append(net.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
