"""The CUDA code paths agree with the CPU ones (run with ``pytest -m gpu`` on a machine with a GPU).

Why these: every GPU-capable job (training, activations, the pair jobs) runs the same functions
with ``device=cuda``; a CUDA-only failure (a kernel without a deterministic implementation, a
tensor left on the wrong device, TF32 changing a closed form) would otherwise surface only on a
cluster. Tolerances: float64 closed forms agree to rounding; float32 convolutions on cuDNN may
reorder sums (and use TF32 where PyTorch allows it), so network outputs agree to ~1e-3 and
accuracies to a couple of test images.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from repmatch.backbone.activations import extract_activations
from repmatch.backbone.training import evaluate, train_model, train_new_model
from repmatch.networks import build_model
from repmatch.settings import section_settings
from repmatch.stitching import stitch_pair
from repmatch.subspace_match.maximum import maximum_match_sweep

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(scope="module")
def small(mnist_subset):
    """1,000 random training digits and 300 test digits."""
    return mnist_subset(1000, 300)


def _train(small, seed: int, device: str, epochs: int = 2):
    torch.manual_seed(seed)
    net = build_model("smallcnn", 10, 1, 28)
    train, test = small
    metrics = train_model(net, SimpleNamespace(train=train, test=test),
                          section_settings("train", {"epochs": epochs, "batch_size": 32, "lr": 0.1}), seed, device, progress=False)
    return net.eval(), metrics


@pytest.fixture(scope="module")
def cuda_nets(small):
    return _train(small, 0, "cuda")[0], _train(small, 1, "cuda", epochs=1)[0]


@pytest.fixture
def deterministic_mode():
    """The train job's deterministic mode, switched off again so other tests run as their jobs do."""
    yield
    torch.use_deterministic_algorithms(False)


def test_cuda_training_is_deterministic_and_learns(small, deterministic_mode):
    """As the train job runs it (train_new_model: seeds, deterministic kernels): two CUDA runs give
    bitwise-equal weights, and no op of the training step lacks a deterministic CUDA kernel."""
    train, test = small
    splits = SimpleNamespace(train=train, test=test, num_classes=10, in_channels=1, image_size=28)
    settings = section_settings("train", {"epochs": 2, "batch_size": 32, "lr": 0.1})
    net1, _ = train_new_model("smallcnn", splits, settings, 3, "cuda", progress=False)
    net2, _ = train_new_model("smallcnn", splits, settings, 3, "cuda", progress=False)
    for (k, v1), v2 in zip(net1.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(v1.cpu(), v2.cpu()), k
    assert evaluate(net1, test, "cuda")["accuracy"] > 0.5  # chance is 0.1


def test_cuda_activations_match_cpu(cuda_nets, small):
    net = cuda_nets[0]
    x = small[1].x[:200]
    gpu = extract_activations(net, x, net.layer_names, device="cuda")
    cpu = extract_activations(net.to("cpu"), x, net.layer_names, device="cpu")
    for name in net.layer_names:
        scale = np.abs(cpu[name]).max()
        np.testing.assert_allclose(gpu[name], cpu[name], atol=2e-3 * scale, err_msg=name)


def test_cuda_stitching_grid_matches_cpu(cuda_nets, small):
    """DM is a float64 closed form: the stitched accuracies agree within two test images; TLM trains and scores on CUDA."""
    train, test = small
    a, b = cuda_nets
    layers = ["conv2", "conv5", "fc1"]
    cfg = section_settings("stitching", {"methods": ["dm", "tlm"], "tlm": {"epochs": 1, "n_train": 500, "batch_size": 64},
                                         "detector": {"enabled": False}})
    gpu = stitch_pair(a, b, train, test, cfg, layers, "cuda")
    cpu = stitch_pair(a.to("cpu"), b.to("cpu"), train, test, cfg, layers, "cpu")
    key = ["layer_a", "layer_b", "method", "metric"]
    both = gpu.merge(cpu, on=key, suffixes=("_gpu", "_cpu"))
    assert len(both) == len(gpu) == len(cpu)
    acc = both[both.metric == "accuracy"]
    dm = acc[acc.method == "dm"]
    assert np.all(np.abs(dm.value_gpu - dm.value_cpu) <= 2 / len(test) + 1e-12), dm[key + ["value_gpu", "value_cpu"]]
    tlm = acc[acc.method == "tlm"]
    assert np.all(np.abs(tlm.value_gpu - tlm.value_cpu) <= 0.05), tlm[key + ["value_gpu", "value_cpu"]]
    assert np.isfinite(gpu.value[gpu.metric == "accuracy"]).all()


def test_cuda_subspace_match_equals_cpu():
    """The maximum-match sweep picks the same neurons on CUDA as on CPU (float64 throughout)."""
    rng = np.random.default_rng(0)
    shared = rng.standard_normal((600, 6))
    a = np.hstack([shared @ rng.standard_normal((6, 10)), rng.standard_normal((600, 8))])
    b = np.hstack([shared @ rng.standard_normal((6, 12)), rng.standard_normal((600, 5))])
    eps = [0.1, 0.3, 0.5]
    cpu = maximum_match_sweep(a, b, eps, device="cpu")
    gpu = maximum_match_sweep(a, b, eps, device="cuda")
    assert gpu.whole_layer_eps == pytest.approx(cpu.whole_layer_eps, abs=1e-9)
    for e in eps:
        np.testing.assert_array_equal(np.sort(gpu.matches[e].a), np.sort(cpu.matches[e].a), err_msg=str(e))
        np.testing.assert_array_equal(np.sort(gpu.matches[e].b), np.sort(cpu.matches[e].b), err_msg=str(e))
    assert cpu.matches[0.5].similarity > 0.5  # the planted shared subspace is found


def test_cuda_stitching_through_hooks_matches_the_sequential_path(cuda_nets, small):
    """Networks given by module path (forward hooks, B re-run on the input) stitch on CUDA as the built-in path does."""
    from repmatch.networks import HookedNet

    train, test = small
    a, b = (n.to("cuda") for n in cuda_nets)

    def hooked(net):
        return HookedNet(net, {name: f"blocks.{name}" for name in net.layer_names})

    cfg = section_settings("stitching", {"methods": ["dm"], "detector": {"enabled": False}, "fold_batchnorm": False})
    layers = ["conv2", "conv5", "fc1"]
    seq = stitch_pair(a, b, train, test, cfg, layers, "cuda")
    via_hooks = stitch_pair(hooked(a), hooked(b), train, test, cfg, layers, "cuda")
    key = ["layer_a", "layer_b", "method", "metric"]
    both = seq.merge(via_hooks, on=key, suffixes=("_seq", "_hooks"))
    acc = both[both.metric == "accuracy"]
    assert len(acc) == len(layers) ** 2
    assert np.all(np.abs(acc.value_seq - acc.value_hooks) <= 1 / len(test) + 1e-12), acc[key + ["value_seq", "value_hooks"]]


def test_cuda_vit_training_is_deterministic(small, deterministic_mode):
    """The ViT's written-out attention keeps CUDA training bitwise reproducible (fused attention kernels are not)."""
    train, test = small
    splits = SimpleNamespace(train=train, test=test, num_classes=10, in_channels=1, image_size=28)
    settings = section_settings("train", {"epochs": 1, "batch_size": 64, "lr": 0.001, "optimizer": "adamw", "weight_decay": 0.05})
    net1, _ = train_new_model("vit_tiny_test", splits, settings, 0, "cuda", progress=False)
    net2, _ = train_new_model("vit_tiny_test", splits, settings, 0, "cuda", progress=False)
    for (k, v1), v2 in zip(net1.state_dict().items(), net2.state_dict().values()):
        assert torch.equal(v1.cpu(), v2.cpu()), k
