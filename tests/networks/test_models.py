import pytest
import torch

from repmatch.architectures import ARCHITECTURES
from repmatch.networks import build_model, load_checkpoint, save_checkpoint, select_layers

EXPECTED = {
    ("smallcnn", 1, 28): {"conv1": (16, 28, 28), "conv2": (32, 14, 14), "conv3": (32, 14, 14), "conv4": (64, 7, 7), "conv5": (64, 7, 7), "fc1": (64,)},
    ("resnet20", 3, 32): {"stem": (16, 32, 32), "layer1_0": (16, 32, 32), "layer1_1": (16, 32, 32), "layer1_2": (16, 32, 32),
                          "layer2_0": (32, 16, 16), "layer2_1": (32, 16, 16), "layer2_2": (32, 16, 16),
                          "layer3_0": (64, 8, 8), "layer3_1": (64, 8, 8), "layer3_2": (64, 8, 8)},
    ("vgg11", 3, 32): {"conv1": (64, 16, 16), "conv2": (128, 8, 8), "conv3": (256, 8, 8), "conv4": (256, 4, 4),
                       "conv5": (512, 4, 4), "conv6": (512, 2, 2), "conv7": (512, 2, 2), "conv8": (512, 1, 1)},
    ("resnet18", 3, 32): {"stem": (64, 32, 32), "layer1_0": (64, 32, 32), "layer1_1": (64, 32, 32), "layer2_0": (128, 16, 16),
                          "layer2_1": (128, 16, 16), "layer3_0": (256, 8, 8), "layer3_1": (256, 8, 8), "layer4_0": (512, 4, 4), "layer4_1": (512, 4, 4)},
}


@pytest.mark.parametrize("key", list(EXPECTED), ids=[k[0] for k in EXPECTED])
def test_layer_list_and_shapes(key):
    arch, c, s = key
    torch.manual_seed(0)
    model = build_model(arch, 10, c, s).eval()
    assert model.layer_names == list(EXPECTED[key])
    x = torch.randn(2, c, s, s)
    feats = model.features(x, model.layer_names)
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == EXPECTED[key]
    assert model(x).shape == (2, 10)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_front_and_back_halves_compose_to_the_whole(arch):
    c, s = (1, 28) if arch == "smallcnn" else (3, 32)
    torch.manual_seed(0)
    model = build_model(arch, 10, c, s).eval()
    x = torch.randn(3, c, s, s)
    with torch.no_grad():
        full = model(x)
        for name in model.layer_names:
            # bitwise: on CPU in eval mode the two halves run the very same ops as forward
            assert torch.equal(model.forward_from(model.forward_until(x, name), name), full), name


def test_unknown_names_are_clear_errors():
    model = build_model("smallcnn", 10, 1, 28)
    with pytest.raises(ValueError, match="unknown architecture 'resnet50'"):
        build_model("resnet50", 10, 1, 28)
    with pytest.raises(KeyError, match="conv9"):
        select_layers(model, ["conv1", "conv9"])
    with pytest.raises(KeyError, match="conv9"):
        model.forward_until(torch.zeros(1, 1, 28, 28), "conv9")
    assert select_layers(model, ["fc1", "conv2"]) == ["conv2", "fc1"]  # network order


def test_checkpoint_round_trip_and_corruption(tmp_path):
    torch.manual_seed(0)
    model = build_model("smallcnn", 10, 1, 28)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(model, path, {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "image_size": 28})
    loaded = load_checkpoint(path)
    assert not loaded.training
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError, match="train"):
        load_checkpoint(tmp_path / "missing.pt")


def test_torch_free_layer_table_matches_the_built_networks():
    """repmatch.architectures (read at parse time to check layer names) agrees with the real networks."""
    from repmatch.architectures import LAYERS

    for arch, names in LAYERS.items():
        assert build_model(arch, 10, 3, 32).layer_names == list(names), arch


# --- The subspace-match paper's networks (Wang et al. 2018): ReLU outputs before pooling ---

_VGG16_SHAPES = {
    **{f"conv{k}": (w, s, s) for k, (w, s) in enumerate(
        [(64, 32), (64, 32), (128, 16), (128, 16), (256, 8), (256, 8), (256, 8),
         (512, 4), (512, 4), (512, 4), (512, 2), (512, 2), (512, 2)], start=1)},
    "fc1": (512,), "fc2": (512,),
}
_PLAIN44_SHAPES = {"stem": (16, 32, 32)} | {
    f"s{s}b{b}c{c}": (w, r, r) for s, (w, r) in enumerate([(16, 32), (32, 16), (64, 8)], start=1)
    for b in range(1, 8) for c in (1, 2)
}
# Parameter counts written out by hand from the layer plan (conv weights + biases or BN affine).
_VGG16_CONV = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
_FC = 512 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
_PLAIN44_CONV = [(3, 16)] + [(a, b) for s, (a, b) in enumerate([(16, 16), (16, 32), (32, 64)])
                             for a, b in [(a, b), (b, b)] + [(b, b)] * 12]
_PARAMS = {
    "vgg16": sum(9 * a * b + b for a, b in _VGG16_CONV) + _FC,
    "vgg16_bn": sum(9 * a * b + 2 * b for a, b in _VGG16_CONV) + _FC,
    "plain44": sum(9 * a * b + 2 * b for a, b in _PLAIN44_CONV) + 64 * 10 + 10,
}


@pytest.mark.parametrize("arch,shapes", [("vgg16", _VGG16_SHAPES), ("vgg16_bn", _VGG16_SHAPES), ("plain44", _PLAIN44_SHAPES)])
def test_paper_networks_layers_shapes_and_parameters(arch, shapes):
    from repmatch.architectures import LAYERS

    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32).eval()
    assert model.layer_names == list(LAYERS[arch]) == list(shapes)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = model.features(x, model.layer_names)
        assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == shapes
        assert model(x).shape == (2, 10)
    # every stitchable layer is a ReLU output: the last op of each block is a ReLU, non-negative
    for name, block in model.blocks.items():
        assert isinstance(list(block.modules())[-1], torch.nn.ReLU), name
        assert (feats[name] >= 0).all(), name
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == _PARAMS[arch]
    assert {"vgg16": 15_000_000, "vgg16_bn": 15_000_000, "plain44": 650_000}[arch] < n_params < {
        "vgg16": 15_500_000, "vgg16_bn": 15_500_000, "plain44": 680_000}[arch]
    conv = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert conv == (43 if arch == "plain44" else 13)
    bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert bn == {"vgg16": 0, "vgg16_bn": 13, "plain44": 43}[arch]


@pytest.mark.parametrize("arch", ["vgg16", "vgg16_bn"])
def test_vgg16_pools_open_the_next_block(arch):
    """The five max-pools are the first op of conv3, conv5, conv8, conv11 and fc1, so the
    layer before each (conv2, conv4, conv7, conv10, conv13) is a ReLU output before pooling."""
    model = build_model(arch, 10, 3, 32)
    pooled = [n for n, b in model.blocks.items() if isinstance(b[0], torch.nn.MaxPool2d)]
    assert pooled == ["conv3", "conv5", "conv8", "conv11", "fc1"]
    assert all(not isinstance(m, torch.nn.MaxPool2d) for b in model.blocks.values() for m in list(b)[1:])


def test_vgg16_other_image_sizes_keep_fc_width():
    model = build_model("vgg16", 10, 1, 28).eval()
    with torch.no_grad():
        feats = model.features(torch.randn(2, 1, 28, 28), ["conv13", "fc1"])
    assert tuple(feats["conv13"].shape[1:]) == (512, 2, 2) and tuple(feats["fc1"].shape[1:]) == (512,)
