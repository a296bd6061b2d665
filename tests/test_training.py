import dataclasses

import numpy as np
import torch

from repmatch.backbone.training import augment_batch, evaluate, train_new_model
from repmatch.settings import section_settings

CFG = section_settings("train", {"epochs": 1, "batch_size": 100, "lr": 0.05, "threads": 1})


def _small(splits, n=600):
    return dataclasses.replace(splits, train=splits.train.subset(np.arange(n)), test=splits.test.subset(np.arange(200)))


def test_training_is_bitwise_deterministic_and_seed_dependent(mnist_splits):
    splits = _small(mnist_splits)
    a, metrics_a = train_new_model("smallcnn", splits, CFG, seed=3, progress=False)
    b, metrics_b = train_new_model("smallcnn", splits, CFG, seed=3, progress=False)
    c, _ = train_new_model("smallcnn", splits, CFG, seed=4, progress=False)
    for (name, wa), wb, wc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(wa, wb), f"{name} differs between two runs of the same seed"
    assert not all(torch.equal(wa, wc) for wa, wc in zip(a.state_dict().values(), c.state_dict().values()))
    assert metrics_a["test_accuracy"] == metrics_b["test_accuracy"]
    assert set(metrics_a) >= {"train_accuracy", "test_accuracy", "epochs", "train_seconds", "history"}


def test_training_learns_real_digits(mnist_splits):
    splits = _small(mnist_splits, n=2000)
    model, metrics = train_new_model("smallcnn", splits, dataclasses.replace(CFG, epochs=2, lr=0.2), seed=0, progress=False)
    assert metrics["test_accuracy"] > 0.8, metrics  # chance is 0.1
    assert evaluate(model, splits.test, "cpu")["accuracy"] == metrics["test_accuracy"]


def test_augmentation_is_a_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = augment_batch(x, gen, pad=0)  # no padding: only flips remain
    for k in range(2):
        assert torch.equal(out[k], x[k]) or torch.equal(out[k], x[k].flip(-1))
    out = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape
