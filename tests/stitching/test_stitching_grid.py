"""Model stitching on real (tiny) trained networks: identity, frozen halves, TLM, stacking, the grid and its stages."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from repmatch.networks import build_model, save_checkpoint
from repmatch.stitching import (
    Cell,
    Stitch,
    StitchedNet,
    TLMConfig,
    evaluate_stitches,
    fit_direct,
    freeze,
    layer_shapes,
    stitch_pair,
    train_stitches,
)
from repmatch.stitching.grid import COLUMNS
from repmatch.logs import job_logger
from repmatch.settings import section_settings
from repmatch.stitching.scores import CLASS_MAHALANOBIS_METRICS, METRICS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small(mnist_subset):
    """1,000 random training digits and 300 test digits."""
    return mnist_subset(1000, 300)


def _trained(small, seed: int, epochs: int):
    from types import SimpleNamespace

    from repmatch.backbone.training import train_model

    torch.manual_seed(seed)
    net = build_model("smallcnn", 10, 1, 28)
    train, test = small
    splits = SimpleNamespace(train=train, test=test)
    train_model(net, splits, section_settings("train", {"epochs": epochs, "batch_size": 32, "lr": 0.1}), seed, "cpu", progress=False)
    return net.eval()


@pytest.fixture(scope="module")
def nets(small):
    """seed 0 trained to ~85% (the identity test needs a working B); seed 1 briefly (only a second net)."""
    return _trained(small, 0, epochs=3), _trained(small, 1, epochs=1)


def _copy(net):
    clone = build_model("smallcnn", 10, 1, 28)
    clone.load_state_dict(net.state_dict())
    return clone.eval()


def test_identity_dm_stitch_reproduces_model_b(nets, small):
    """A = B, i = j, DM: the stitch is the identity, so accuracy equals B's (within 0.5 pp) for every layer."""
    net = _copy(nets[0])
    train, test = small
    shapes = layer_shapes(net, (1, 28, 28))
    pairs = [(name, name) for name in net.layer_names]
    maps, whiteners = fit_direct(net, net, pairs, shapes, shapes, train.x, section_settings("stitching", {"batch_size": 500}), torch.device("cpu"))
    stitches = {Cell("dm", la, lb): Stitch(shapes[la], shapes[lb]).set_affine(*maps[(la, lb)]) for la, lb in pairs}
    scores, base = evaluate_stitches(net, net, stitches, test.x, test.y, whiteners=whiteners)
    assert base["accuracy"] > 0.5, "the tiny fixture network did not learn"
    for cell, s in scores.items():
        assert abs(s["accuracy"] - base["accuracy"]) <= 0.005, cell
        assert s["repr_diff"] < 1e-8 and s["norm_ratio"] == pytest.approx(1.0, abs=1e-4), cell
        assert abs(s["mahalanobis_auroc"] - 0.5) < 0.05, cell
        assert s["mahalanobis_separability"] == pytest.approx(max(s["mahalanobis_auroc"], 1 - s["mahalanobis_auroc"]))


def test_tlm_keeps_halves_frozen_and_improves_the_task_loss(nets, small):
    a, b = _copy(nets[0]), _copy(nets[1])
    before = {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in (("a", a), ("b", b))}
    train, _ = small
    shapes = layer_shapes(a, (1, 28, 28))
    g = torch.Generator().manual_seed(0)
    stitches = {Cell("tlm", la, lb): Stitch(shapes[la], shapes[lb], g) for la, lb in [("conv3", "conv2"), ("conv2", "conv4")]}
    x, y = train.x[:512], train.y[:512]
    init, _ = evaluate_stitches(a, b, stitches, x, y)
    a.train(), b.train()  # training must force eval mode on the halves itself
    history = train_stitches(a, b, stitches, x, y, TLMConfig.make(epochs=2, batch_size=64, lr=1e-2))
    after, _ = evaluate_stitches(a, b, stitches, x, y)
    for cell in stitches:
        assert after[cell]["loss"] < init[cell]["loss"] - 0.1, cell
        assert len(history[cell]) == 2
    for key, model in (("a", a), ("b", b)):
        assert not model.training
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, before[key][name]), f"model {key} {name} changed during TLM"
        assert all(not p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("options", [
    {},
    {"schedule": "cosine", "warmup_epochs": 0.5, "weight_decay": 1e-3, "augment": True},
])
def test_stacked_training_equals_one_at_a_time(nets, small, options):
    """Stacking stitches along the batch is an implementation detail: same stitches as separate loops
    (also with the per-step schedule, weight decay and augmentation)."""
    a, b = _copy(nets[0]), _copy(nets[1])
    train, _ = small
    shapes = layer_shapes(a, (1, 28, 28))
    cells = [("conv1", "conv3"), ("conv4", "conv3"), ("fc1", "fc1"), ("conv5", "fc1")]

    def fresh():
        g = torch.Generator().manual_seed(3)
        return {Cell("tlm", la, lb): Stitch(shapes[la], shapes[lb], g) for la, lb in cells}

    cfg = TLMConfig.make(**{"epochs": 2 if options else 1, "batch_size": 64, "lr": 1e-3, "seed": 5, **options})
    stacked, single = fresh(), fresh()
    h1 = train_stitches(a, b, stacked, train.x[:256], train.y[:256], cfg, stacked=True)
    h2 = train_stitches(a, b, single, train.x[:256], train.y[:256], cfg, stacked=False)
    for cell in stacked:
        np.testing.assert_allclose(stacked[cell].weight.detach().numpy(), single[cell].weight.detach().numpy(), atol=2e-5)
        np.testing.assert_allclose(stacked[cell].bias.detach().numpy(), single[cell].bias.detach().numpy(), atol=2e-5)
        assert h1[cell] == pytest.approx(h2[cell], rel=1e-4)


def test_stitched_net_matches_grid_path(nets, small):
    a, b = _copy(nets[0]), _copy(nets[1])
    _, test = small
    shapes = layer_shapes(a, (1, 28, 28))
    stitch = Stitch(shapes["conv2"], shapes["conv4"], torch.Generator().manual_seed(0))
    net = StitchedNet(a, b, "conv2", "conv4", stitch)
    net.train()
    assert not a.training and not b.training
    with torch.no_grad():
        logits = net(torch.from_numpy(test.x[:50]))
    scores, _ = evaluate_stitches(a, b, {Cell("tlm", "conv2", "conv4"): stitch}, test.x[:50], test.y[:50])
    acc = float((logits.argmax(1).numpy() == test.y[:50]).mean())
    assert scores[Cell("tlm", "conv2", "conv4")]["accuracy"] == pytest.approx(acc)
    with pytest.raises(KeyError, match="does not exist"):
        StitchedNet(a, b, "conv9", "conv4", stitch)


def test_grid_table_and_stages(nets, small, tmp_path):
    from repmatch.sanity import more_similar_than_itself, stitching_scores
    from repmatch.stitching.stages import aggregate_stage, distance_stage, figures_stage

    a, b = _copy(nets[0]), _copy(nets[1])
    train, test = small
    train, test = train.subset(np.arange(0, 1000, 3)), test.subset(np.arange(0, 300, 2))
    cfg = section_settings("stitching", {"tlm": {"epochs": 1, "batch_size": 64, "lr": 0.01, "n_train": 200}})
    layers = ["conv3", "conv5", "fc1"]
    tables = {
        "within": stitch_pair(a, _copy(nets[0]), train, test, cfg, layers, "cpu", ("m_seed0", "m_seed0")),
        "cross": stitch_pair(a, b, train, test, cfg, layers, "cpu", ("m_seed0", "m_seed1")),
    }
    for df in tables.values():
        assert list(df.columns) == COLUMNS
        assert set(df["method"]) == {"dm", "tlm", "dm_tlm"}
        assert set(df["metric"]) == set(METRICS) | set(CLASS_MAHALANOBIS_METRICS) | {"train_loss", "train_loss_e1"}
        assert len(df[df["metric"] == "accuracy"]) == 3 * 9
        assert np.isfinite(df["value"]).all()
        assert dict(zip(df["layer_a"], df["index_a"])) == {"conv3": 2, "conv5": 4, "fc1": 5}
    within = tables["within"]
    diag = within[(within["method"] == "dm") & (within["layer_a"] == within["layer_b"]) & (within["metric"] == "relative_accuracy")]
    assert np.allclose(diag["value"], 1.0, atol=0.005)

    paths = []
    for kind, df in tables.items():
        paths.append(tmp_path / f"{kind}.parquet")
        df.to_parquet(paths[-1])
    log = job_logger("test", None)
    agg = aggregate_stage(pair_tables=paths, out=tmp_path / "stitching.parquet", log=log)
    assert len(agg) == sum(len(t) for t in tables.values())
    distance_stage(table=tmp_path / "stitching.parquet", out=tmp_path / "dist.csv", log=log)
    more = more_similar_than_itself(stitching_scores(agg, len(test)))
    # 2 model pairs x 3 methods x 2 metrics x 2 directions x 3 layers
    assert set(more["kind"]) == {"within", "cross"} and len(more) == 2 * 3 * 2 * 2 * 3
    names = ["within_accuracy_grids", "cross_accuracy_grids", "within_ood_grids", "cross_ood_grids",
             "accuracy_vs_layer_distance", "accuracy_vs_ood"]
    outputs = {f"{k}_{fmt}": tmp_path / "figs" / f"{k}.{fmt}" for k in names for fmt in ("png", "pdf")}
    written = figures_stage(table=tmp_path / "stitching.parquet", distance_csv=tmp_path / "dist.csv", outputs=outputs, log=log)
    assert {str(p) for p in written} == {str(p) for p in outputs.values()}
    assert all(p.stat().st_size > 1000 for p in outputs.values())

    bad = tmp_path / "bad.parquet"
    within.drop(columns=["metric"]).to_parquet(bad)
    with pytest.raises(ValueError, match="lacks columns"):
        aggregate_stage(pair_tables=[bad], out=tmp_path / "x.parquet", log=log)


def test_pinv_solver_and_nan_checkpoint(nets, small):
    net = _copy(nets[0])
    train, test = small
    shapes = layer_shapes(net, (1, 28, 28))
    pairs = [("conv3", "conv3"), ("conv5", "conv4")]
    cfg = section_settings("stitching", {"dm": {"solver": "pinv", "k": 20}})
    maps, _ = fit_direct(net, net, pairs, shapes, shapes, train.x, cfg, torch.device("cpu"))
    stitch = Stitch(shapes["conv3"], shapes["conv3"]).set_affine(*maps[("conv3", "conv3")])
    with torch.no_grad():
        real = net.forward_until(torch.from_numpy(test.x[:50]), "conv3")
        np.testing.assert_allclose(stitch(real).numpy(), real.numpy(), atol=1e-4)  # K samples suffice for the identity
    broken = _copy(nets[0])
    with torch.no_grad():
        broken.blocks["conv2"][0].weight[0, 0, 0, 0] = float("nan")
    freeze(broken)
    with pytest.raises(FloatingPointError, match="NaN/Inf activations"):
        fit_direct(broken, net, pairs, shapes, shapes, train.x[:100], section_settings("stitching"), torch.device("cpu"))


def test_pair_stage_reads_checkpoints_and_writes_table(nets, tmp_path, repo_root):
    import yaml

    from repmatch.backbone.stages import split_stage
    from repmatch.io import write_json
    from repmatch.stitching.stages import pair_stage

    data = section_settings("data", yaml.safe_load((repo_root / "config.yaml").read_text())["data"])
    log = job_logger("stitching", tmp_path / "log.txt")
    split_stage(data=data, out_json=tmp_path / "split.json", log=log)
    meta = {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "image_size": 28, "dataset": "mnist5k"}
    for seed, net in enumerate(nets):
        sha = save_checkpoint(net, tmp_path / f"s{seed}.pt", {**meta, "seed": seed})
        write_json({"checkpoint_sha256": sha}, tmp_path / f"m{seed}.json")
    cfg = section_settings("stitching", {"methods": ["dm", "tlm"], "tlm": {"epochs": 1, "n_train": 256}, "batch_size": 500})
    out = tmp_path / "pairs" / "smallcnn_seed0__smallcnn_seed1.parquet"
    metrics = (tmp_path / "m0.json", tmp_path / "m1.json")
    job = {"settings": cfg, "data": data, "layers": ["conv5", "fc1"], "device_spec": "cpu", "model_a": "smallcnn_seed0",
           "model_b": "smallcnn_seed1", "split_json": tmp_path / "split.json", "metrics": metrics, "log": log}
    pair_stage(**job, checkpoints=(tmp_path / "s0.pt", tmp_path / "s1.pt"), out=out)
    df = pd.read_parquet(out)
    assert set(df["model_a"]) == {"smallcnn_seed0"} and set(df["model_b"]) == {"smallcnn_seed1"}
    assert set(df["method"]) == {"dm", "tlm"} and len(df[df["metric"] == "accuracy"]) == 2 * 4
    assert "stitching smallcnn_seed0 -> smallcnn_seed1" in (tmp_path / "log.txt").read_text()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        pair_stage(**job, checkpoints=(tmp_path / "missing.pt", tmp_path / "s1.pt"), out=tmp_path / "o.parquet")


def test_tlm_epochs_per_method_and_loss_curve_rows(nets, small):
    """DM-init TLM may train shorter than random-init TLM; each stitch's loss curve lands in the table."""
    a, b = _copy(nets[0]), _copy(nets[1])
    train, test = small
    cfg = section_settings("stitching", {"methods": ["tlm", "dm_tlm"],
                                         "tlm": {"epochs": 3, "dm_tlm_epochs": 2, "n_train": 128, "schedule": "cosine"}})
    df = stitch_pair(a, b, train.subset(np.arange(300)), test.subset(np.arange(100)), cfg, ["conv5", "fc1"], "cpu")
    per_method = df[df["metric"].str.startswith("train_loss_e")].groupby("method")["metric"].nunique().to_dict()
    assert per_method == {"tlm": 3, "dm_tlm": 2}
    for method in ("tlm", "dm_tlm"):
        sub = df[df["method"] == method].pivot_table(index=["layer_a", "layer_b"], columns="metric", values="value")
        epochs = TLMConfig.from_settings(cfg).epochs_for(method)
        last = sub[f"train_loss_e{epochs}"]
        np.testing.assert_allclose(sub["train_loss"], last)
        prev = sub[f"train_loss_e{epochs - 1}"]
        np.testing.assert_allclose(sub["train_loss_change"], (last - prev) / prev)
        assert set(sub["train_converged"]) <= {0.0, 1.0}


def test_folded_batchnorm_equals_the_network(nets, small):
    from repmatch.stitching.network import fold_batchnorm

    net = _copy(nets[0])
    with torch.no_grad():  # non-trivial BN statistics, so folding has something to get wrong
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.uniform_(0.5, 2), m.bias.uniform_(-1, 1)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.from_numpy(small[1].x[:64])
    with torch.no_grad():
        for name in net.layer_names:
            np.testing.assert_allclose(folded.forward_until(x, name).numpy(), net.forward_until(x, name).numpy(), atol=1e-4, rtol=1e-4)
    torch.manual_seed(0)
    resnet = freeze(build_model("resnet20", 10, 3, 32))
    with torch.no_grad():
        for m in resnet.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
        xr = torch.randn(4, 3, 32, 32)
        fr = fold_batchnorm(resnet)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fr.modules())
        np.testing.assert_allclose(fr(xr).numpy(), resnet(xr).numpy(), atol=1e-3, rtol=1e-3)


def test_grid_with_detectors_adds_detector_metrics(nets, small):
    a, b = _copy(nets[0]), _copy(nets[1])
    train, test = small
    cfg = section_settings("stitching", {"methods": ["dm"], "detector": {"enabled": True, "epochs": 1, "oe_epochs": 1, "width": 8}})
    df = stitch_pair(a, b, train.subset(np.arange(300)), test.subset(np.arange(100)), cfg, ["conv5", "fc1"], "cpu")
    det = df[df["metric"].str.startswith("detector_")].pivot_table(index=["layer_a", "layer_b"], columns="metric", values="value")
    assert len(det) == 4 and set(det.columns) == {"detector_auroc", "detector_separability", "detector_direction",
                                                  "detector_aupr", "detector_fpr95"}
    assert ((det >= -1) & (det <= 1)).all().all()
    np.testing.assert_allclose(det["detector_separability"], np.maximum(det["detector_auroc"], 1 - det["detector_auroc"]))
