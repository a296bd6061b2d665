import pytest
import torch

from repmatch.models import ARCHITECTURES, build_model, load_checkpoint, save_checkpoint, select_layers

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
            torch.testing.assert_close(model.forward_from(model.forward_until(x, name), name), full)


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
    from repmatch.models import build_model

    for arch, names in LAYERS.items():
        assert build_model(arch, 10, 3, 32).layer_names == list(names), arch
