"""TLM training options: the learning-rate schedule, augmentation, weight decay, convergence rows,
and a tiny network where the optimum (the identity stitch) is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from repmatch.networks import StitchableNet
from repmatch.stitching import (
    Cell,
    Stitch,
    evaluate_stitches,
    layer_shapes,
    train_stitches,
)
from repmatch.stitching.task import (
    TLMConfig,
    augment_batch,
    convergence_metrics,
    loss_change,
    lr_at,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_lr_schedule_warmup_and_cosine():
    total, warm, lr = 100, 10, 0.01
    lrs = [lr_at(t, total, lr=lr, schedule="cosine", warmup_steps=warm, final_fraction=0.0) for t in range(total)]
    np.testing.assert_allclose(lrs[:warm], lr * np.arange(1, warm + 1) / warm)  # linear warm-up ends at lr
    assert lrs[warm] == pytest.approx(lr)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1 :]))  # monotone decay after the warm-up
    mid = warm + (total - 1 - warm) / 2  # cosine: half the rate half way through the decay
    if float(mid).is_integer():
        assert lrs[int(mid)] == pytest.approx(lr / 2)
    naive = [lr * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - 1 - warm))) for t in range(warm, total)]
    np.testing.assert_allclose(lrs[warm:], naive, rtol=1e-12)
    assert lr_at(99, 100, lr=lr, schedule="cosine", final_fraction=0.1) == pytest.approx(0.1 * lr)
    assert {lr_at(t, 50, lr=lr, schedule="constant") for t in range(50)} == {lr}
    with pytest.raises(ValueError):
        lr_at(100, 100, lr=lr, schedule="cosine")
    with pytest.raises(ValueError, match="schedule"):
        TLMConfig.make(schedule="step")


def test_augment_batch_matches_naive_crop_and_flip():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(7, 2, 6, 5)).astype(np.float32))
    fill = torch.tensor([-1.0, -2.0])
    got = augment_batch(x, torch.Generator().manual_seed(3), pad=2, fill=fill)
    g = torch.Generator().manual_seed(3)  # the same draws, in the same order
    offs = torch.randint(0, 5, (2, 7), generator=g).numpy()
    flips = (torch.rand(7, generator=g) < 0.5).numpy()
    xn = x.numpy()
    for n in range(7):
        padded = np.stack([np.pad(xn[n, c], 2, constant_values=float(fill[c])) for c in range(2)])
        crop = padded[:, offs[0, n] : offs[0, n] + 6, offs[1, n] : offs[1, n] + 5]
        expect = crop[:, :, ::-1] if flips[n] else crop
        np.testing.assert_array_equal(got[n].numpy(), expect)
    assert flips.any() and (~flips).any()
    no_flip = augment_batch(x, torch.Generator().manual_seed(3), pad=0, flip=False)
    assert torch.equal(no_flip, x)  # no padding and no flip: the identity


def test_convergence_rows():
    rows = convergence_metrics([2.0, 1.0, 0.995], tol=0.01)
    assert rows["train_loss"] == 0.995 and rows["train_loss_change"] == pytest.approx(-0.005)
    assert rows["train_converged"] == 1.0
    assert [rows[f"train_loss_e{k}"] for k in (1, 2, 3)] == [2.0, 1.0, 0.995]
    assert convergence_metrics([2.0, 1.0], tol=0.01)["train_converged"] == 0.0
    assert math.isnan(loss_change([1.0]))
    assert convergence_metrics([1.0], 0.01) == {"train_loss": 1.0, "train_loss_e1": 1.0}  # no NaN rows
    cfg = TLMConfig.make(epochs=10, dm_tlm_epochs=3)
    assert (cfg.epochs_for("tlm"), cfg.epochs_for("dm_tlm")) == (10, 3)
    assert TLMConfig.make(epochs=10).epochs_for("dm_tlm") == 10


def _tiny_net(d: int = 8, k: int = 4) -> StitchableNet:
    blocks = [("l1", nn.Sequential(nn.Linear(2, d), nn.ReLU())), ("l2", nn.Sequential(nn.Linear(d, d), nn.ReLU()))]
    return StitchableNet(blocks, nn.Linear(d, k))


def _blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Four Gaussian blobs in the plane: separable, so a trained tiny MLP is near-perfect."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, size=n)
    centres = np.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]])
    return (centres[y] + 0.7 * rng.normal(size=(n, 2))).astype(np.float32), y.astype(np.int64)


def test_scheduled_tlm_reaches_the_identity_stitch_on_a_tiny_network():
    """A = B, stitch at the same layer: the identity is an optimal stitch, so a converged TLM must match B.

    The stitch starts random (PyTorch's default init, far from the identity); cosine-decayed
    Adam must bring it to B's own test accuracy and (nearly) B's own training loss.
    """
    torch.manual_seed(0)
    net = _tiny_net()
    x, y = _blobs(2000, 0)
    xt, yt = _blobs(2000, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xs), ys).backward()
        opt.step()
    net.eval()
    shapes = layer_shapes(net, (2,))
    g = torch.Generator().manual_seed(0)
    stitches = {Cell("tlm", layer, layer): Stitch(shapes[layer], shapes[layer], g) for layer in ("l1", "l2")}
    cfg = TLMConfig.make(epochs=15, batch_size=32, lr=1e-2, schedule="cosine", warmup_epochs=0.5)
    history = train_stitches(net, net, stitches, x, y, cfg)
    scores, base = evaluate_stitches(net, net, stitches, xt, yt)
    with torch.no_grad():
        b_loss = float(nn.functional.cross_entropy(net(xs), ys))
    assert base["accuracy"] > 0.9
    for cell, s in scores.items():
        assert s["accuracy"] >= base["accuracy"] - 0.005, (cell, s["accuracy"], base["accuracy"])
        assert history[cell][-1] <= b_loss + 0.01, (cell, history[cell][-1], b_loss)
        assert history[cell][0] > history[cell][-1]
