"""Layers by module name through forward hooks (repmatch.networks.hooked.HookedNet).

The reference is today's sequential StitchableNet: wrapping a built-in network in a HookedNet at
its block modules must give the same activations bit for bit, and stitching through hooks must
give the same stitched accuracy (DM exactly, TLM to float tolerance).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from repmatch.architectures import ARCHITECTURES
from repmatch.networks import HookedNet, HookError, build_model
from repmatch.settings import section_settings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hooked(net):
    """The built-in network seen through hooks: layer k = the module ``blocks.<k>``."""
    return HookedNet(net, {name: f"blocks.{name}" for name in net.layer_names})


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_hooked_activations_equal_block_outputs_bitwise(arch):
    torch.manual_seed(0)
    net = build_model(arch, 10, 3, 32).eval()
    hooked = _hooked(net)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = net.features(x, net.layer_names)
        got = hooked.features(x, net.layer_names)
        assert list(got) == net.layer_names
        for name in net.layer_names:
            assert torch.equal(got[name], want[name]), name
        # a subset, one layer, the back half from every layer, the whole network
        sub = net.layer_names[1::2]
        assert all(torch.equal(hooked.features(x, sub)[n], want[n]) for n in sub)
        for name in net.layer_names:
            assert torch.equal(hooked.forward_until(x, name), want[name])
            assert torch.equal(hooked.forward_from(want[name], name, x), net.forward_from(want[name], name)), name
        assert torch.equal(hooked(x), net(x))


def test_forward_from_really_replaces_the_layer():
    """The output after replacement depends on h, not on x's own activation there (naive reference: run the tail by hand)."""
    torch.manual_seed(1)
    net = build_model("smallcnn", 10, 1, 28).eval()
    hooked = _hooked(net)
    x = torch.randn(5, 1, 28, 28)
    h = torch.randn(5, 32, 14, 14)
    with torch.no_grad():
        tail = h
        for name in ("conv3", "conv4", "conv5", "fc1"):
            tail = net.blocks[name](tail)
        assert torch.equal(hooked.forward_from(h, "conv2", x), net.head(tail))
        # stacked: 3 replacement batches for one input batch; x is tiled
        hs = torch.randn(15, 32, 14, 14)
        stacked = hooked.forward_from(hs, "conv2", x)
        for k in range(3):
            assert torch.allclose(stacked[5 * k : 5 * (k + 1)], hooked.forward_from(hs[5 * k : 5 * (k + 1)], "conv2", x), atol=1e-6)
    with pytest.raises(ValueError, match="needs the input batch x"):
        hooked.forward_from(h, "conv2")
    with pytest.raises(HookError, match="outputs shape"):
        hooked.forward_from(torch.randn(5, 7, 14, 14), "conv2", x)


class Residual(nn.Module):
    """A user network with a skip connection around a hooked layer and an in-place ReLU after it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        s = self.stem(x)
        return self.head(self.act(self.inner(s)) + s)


def test_skip_connection_uses_the_real_input_and_captures_survive_inplace_ops():
    torch.manual_seed(2)
    net = Residual().eval()
    hooked = HookedNet(net, ["stem", "inner", "head"])
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        s = net.stem(x)
        inner = net.inner(s)
        assert (inner < 0).any()
        feats = hooked.features(x, ["stem", "inner", "head"])
        assert torch.equal(feats["stem"], s) and torch.equal(feats["inner"], inner)  # not changed by act(inplace)
        assert torch.equal(feats["head"], net(x))
        h = torch.randn_like(inner)
        want = net.head(torch.relu(h) + s)  # the skip branch carries x's own stem output
        before = h.clone()
        assert torch.equal(hooked.forward_from(h, "inner", x), want)
        assert torch.equal(h, before)  # the in-place ReLU after the replaced layer did not touch the caller's tensor


def test_unknown_module_name_lists_the_nearest():
    net = build_model("resnet20", 10, 3, 32)
    with pytest.raises(HookError, match=r"'blocks\.layr2_1' is not a module.*nearest: \['blocks\.layer2_1'"):
        HookedNet(net, ["blocks.layr2_1"])
    hooked = _hooked(net)
    with pytest.raises(KeyError, match="nearest"):
        hooked.index("layer2_1x")


def test_reused_module_is_an_error_naming_it():
    tv = pytest.importorskip("torchvision")
    net = tv.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    hooked = HookedNet(net, ["layer1", "layer2.0.relu"])
    with pytest.raises(HookError, match=r"layer2\.0\.relu \(2 times\)"):
        hooked.features(x, ["layer1"])
    ok = HookedNet(net, ["layer1", "layer2.0", "layer4"])
    with torch.no_grad():
        f = ok.features(x, ok.layer_names)
    assert [tuple(v.shape[1:]) for v in f.values()] == [(64, 8, 8), (128, 4, 4), (512, 1, 1)]


def test_layer_order_and_modules_that_never_run_are_errors():
    net = Residual().eval()
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(HookError, match="order"):
        HookedNet(net, ["inner", "stem"]).features(x, ["stem"])
    unused = Residual()
    unused.spare = nn.Linear(2, 2)
    with pytest.raises(HookError, match=r"\['spare'\] never run"):
        HookedNet(unused, ["stem", "spare"]).features(x, ["stem"])


def test_input_channels_adapter():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = tv.models.resnet18(num_classes=10).eval()
    hooked = HookedNet(net, ["layer1", "layer3"], input_channels=3)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(hooked(x), net(x.repeat(1, 3, 1, 1)))
        assert hooked.features(x, ["layer3"])["layer3"].shape == (2, 256, 2, 2)


# --- stitching through hooks reproduces today's stitched accuracy --------------------------------


@pytest.fixture(scope="module")
def small(mnist_subset):
    """600 random training digits and 200 test digits."""
    return mnist_subset(600, 200)


@pytest.fixture(scope="module")
def nets(small):
    from repmatch.backbone.training import train_model

    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build_model("smallcnn", 10, 1, 28)
        train_model(net, SimpleNamespace(train=small[0], test=small[1]),
                    section_settings("train", {"epochs": 1, "batch_size": 32, "lr": 0.1}), seed, "cpu", progress=False)
        out.append(net.eval())
    return out


@pytest.mark.parametrize("fold", [True, False])
def test_stitching_through_hooks_matches_the_sequential_net(small, nets, fold):
    from repmatch.stitching import stitch_pair

    train, test = small
    cfg = section_settings("stitching", {"tlm": {"epochs": 1, "batch_size": 64}, "max_stack": 3, "fold_batchnorm": fold})
    layers = ["conv2", "conv4", "fc1"]
    plain = stitch_pair(copy.deepcopy(nets[0]), copy.deepcopy(nets[1]), train, test, cfg, layers)
    hooked = stitch_pair(_hooked(copy.deepcopy(nets[0])), _hooked(copy.deepcopy(nets[1])), train, test, cfg, layers)
    key = ["layer_a", "index_a", "layer_b", "index_b", "method", "metric"]
    assert plain[key].equals(hooked[key])
    acc = plain["metric"] == "accuracy"
    dm = acc & (plain["method"] == "dm")
    assert len(plain[dm]) == 9
    np.testing.assert_array_equal(hooked.loc[dm, "value"].to_numpy(), plain.loc[dm, "value"].to_numpy())
    tlm = acc & (plain["method"] != "dm")
    np.testing.assert_allclose(hooked.loc[tlm, "value"].to_numpy(), plain.loc[tlm, "value"].to_numpy(), atol=1 / len(test) + 1e-12)
    finite = np.isfinite(plain["value"].to_numpy())
    np.testing.assert_allclose(hooked["value"].to_numpy()[finite], plain["value"].to_numpy()[finite], rtol=1e-4, atol=1e-5)


def test_stitched_net_with_a_torchvision_resnet(small):
    """A conv->conv stitch from a built-in network into a torchvision ResNet-18 trains and scores through hooks."""
    tv = pytest.importorskip("torchvision")
    from repmatch.stitching import Stitch, StitchedNet, layer_shapes

    torch.manual_seed(0)
    a = build_model("smallcnn", 10, 1, 28).eval()
    b = HookedNet(tv.models.resnet18(num_classes=10), ["layer1", "layer2"], input_channels=3).eval()
    sa, sb = layer_shapes(a, (1, 28, 28)), layer_shapes(b, (1, 28, 28))
    assert sb["layer2"] == (128, 4, 4)
    stitch = Stitch(sa["conv4"], sb["layer2"])
    net = StitchedNet(a, b, "conv4", "layer2", stitch)
    x = torch.from_numpy(small[0].x[:8])
    out = net(x)
    assert out.shape == (8, 10)
    out.sum().backward()
    assert stitch.weight_grad_norm() > 0 if hasattr(stitch, "weight_grad_norm") else any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in stitch.parameters())
    assert all(p.grad is None for p in b.parameters())


def test_stitch_modules_one_call(small):
    """Two different user modules, stitched at named layers without Snakemake: one row per cell, method and metric."""
    from repmatch.stitching import stitch_modules

    torch.manual_seed(0)
    a, b = Residual(), build_model("smallcnn", 10, 1, 28)
    a.head[-1] = nn.Linear(4, 10)
    train, test = small
    table = stitch_modules(a, ["stem", "inner"], b, {"c2": "blocks.conv2", "c4": "blocks.conv4"}, (train.x[:200], train.y[:200]),
                           (test.x[:100], test.y[:100]), methods=["dm", "tlm"], tlm={"epochs": 1}, detector={"enabled": False})
    acc = table[table.metric == "accuracy"]
    assert len(acc) == 2 * 2 * 2
    assert set(acc.layer_a) == {"stem", "inner"} and set(acc.layer_b) == {"c2", "c4"}
    assert set(acc.index_b) == {0, 1} and acc.value.between(0, 1).all()


def test_sensitivity_through_hooks_matches_the_sequential_net():
    """The low-rank sensitivity of a layer (front, rank cut, back half) is the same through hooks."""
    from repmatch.sensitivity.lowrank import halving_ranks
    from repmatch.sensitivity.within_network import layer_sensitivity

    torch.manual_seed(3)
    net = build_model("smallcnn", 10, 1, 28).eval()
    x = torch.randn(120, 1, 28, 28)
    with torch.no_grad():
        y = net(x).argmax(1)
    kw = dict(train_x=x[:80], train_y=y[:80], test_x=x[80:], test_y=y[80:], probe_x=x[80:], ranks=halving_ranks,
              measures=["linear_cka"], n_classes=10, probe_epochs=1, probe_lr=0.05, probe_batch_size=32,
              probe_weight_decay=0.0, seed=0, dm_ridge=0.0, batch_size=40, device=torch.device("cpu"))
    _, plain = layer_sensitivity(net, "conv4", **kw)
    _, hooked = layer_sensitivity(_hooked(net), "conv4", **kw)
    assert len(plain) == len(hooked) > 0
    for p, h in zip(plain, hooked):
        assert (p["rank"], p["method"]) == (h["rank"], h["method"])
        if p["method"] in ("network_accuracy", "dm_accuracy"):
            assert p["value"] == h["value"], p
        else:
            assert p["value"] == pytest.approx(h["value"], rel=1e-6, abs=1e-9), p
