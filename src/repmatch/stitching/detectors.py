"""Learned out-of-distribution detectors on B's layer representations, as the seed paper measures OOD.

Why learned detectors: the paper's evidence that TLM stitches are "out of distribution" comes
from a classifier trained on B's layer-j representations and fine-tuned with energy-based
outlier exposure (Liu et al., "Energy-based Out-of-distribution Detection", NeurIPS 2020),
scored by the energy ``E(h) = -logsumexp(f(h))``. A Gaussian (Mahalanobis) score sees only the
first two moments; a detector trained against outliers can learn what real representations
look like beyond them. Per B layer one detector is fitted once and reused for every stitch
into that layer.

Design (what differs from the paper, and why -- see docs/design/stitching-convergence-and-ood.md):

* Detector: a small classifier on the representation: for maps two 3x3 conv blocks (stride 2
  on maps of 14 x 14 or larger, so early layers stay cheap) + global average pooling + a linear
  layer; for flat layers a 2-hidden-layer MLP. Inputs are standardised per channel with the
  real representations' training statistics.
* Training: cross-entropy on B's training split (the task), then fine-tuning with
  ``CE + oe_weight * (mean(relu(E_in - m_in)^2) + mean(relu(m_out - E_out)^2))``,
  m_in = -25, m_out = -7, weight 0.1 (Liu et al.'s code).
* Outliers: the paper uses 300K Random Images as outliers and CIFAR-5M as in-distribution data;
  neither is available offline, so outliers are built from the training split itself
  (:func:`outlier_images`): pixel-permuted images, uniform and Gaussian noise images, and
  blends of two images of different classes, passed through B's front half to layer j.
* Scores: energy (higher = more out of distribution); AUROC, AUPR (stitched = positive) and
  FPR95 (fraction of stitched samples accepted as in-distribution at the threshold that keeps
  95% of real samples in) of stitched vs real representations of the same test images
  (:mod:`.ood_metrics`).
* Sanity check (:func:`sanity_check`): held-out real test representations should be kept in
  at about the nominal 95% rate, and representations of a corruption the detector never saw
  (contrast-inverted test images) should be flagged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..networks.stitchable import StitchableNet
from ..optim import Adam, cosine_lr
from ..settings import DetectorSettings
from .network import freeze
from .ood_metrics import auroc

OUTLIER_KINDS = ("permuted", "uniform", "gaussian", "mixed")


def energy(logits: torch.Tensor) -> torch.Tensor:
    """Free energy ``-logsumexp(logits)`` per sample (temperature 1): low = in distribution."""
    return -torch.logsumexp(logits, dim=1)


def energy_oe_loss(logits_in: torch.Tensor, y_in: torch.Tensor, logits_out: torch.Tensor, *, m_in: float, m_out: float,
                   weight: float) -> torch.Tensor:
    """Liu et al.'s fine-tuning loss: cross-entropy on real data + squared hinge on the energies of
    real (pushed below ``m_in``) and outlier (pushed above ``m_out``) samples."""
    e_in, e_out = energy(logits_in), energy(logits_out)
    reg = F.relu(e_in - m_in).pow(2).mean() + F.relu(m_out - e_out).pow(2).mean()
    return F.cross_entropy(logits_in, y_in) + weight * reg


def outlier_images(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` synthetic outlier images built from the training images ``x`` (N, C, H, W), labels ``y``.

    A quarter each of: pixel-permuted images (one random permutation of the positions per image,
    the same for every channel: the intensity histogram is kept, the structure destroyed);
    uniform noise over the data's per-channel range; Gaussian noise with the data's per-channel
    mean and std; 50/50 blends of two images of different classes.
    """
    if x.ndim != 4 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"outlier images need a labelled image batch (N >= 2, C, H, W), got x {x.shape}, y {y.shape}")
    rng = np.random.default_rng(seed)
    c, h, w = x.shape[1:]
    counts = [n // 4 + (1 if k < n % 4 else 0) for k in range(4)]
    out = []
    pick = rng.integers(0, len(x), size=counts[0])
    flat = x[pick].reshape(counts[0], c, h * w)
    perms = np.argsort(rng.random((counts[0], h * w)), axis=1)
    out.append(np.take_along_axis(flat, perms[:, None, :], axis=2).reshape(counts[0], c, h, w))
    lo, hi = x.min(axis=(0, 2, 3)), x.max(axis=(0, 2, 3))
    out.append(lo[None, :, None, None] + (hi - lo)[None, :, None, None] * rng.random((counts[1], c, h, w)))
    mean, std = x.mean(axis=(0, 2, 3)), x.std(axis=(0, 2, 3))
    out.append(mean[None, :, None, None] + std[None, :, None, None] * rng.normal(size=(counts[2], c, h, w)))
    first = rng.integers(0, len(x), size=counts[3])
    second = rng.integers(0, len(x), size=counts[3])
    same = y[first] == y[second]
    for _ in range(100):  # redraw partners of the same class (vectorised; converges at once for >1 class)
        if not same.any():
            break
        second[same] = rng.integers(0, len(x), size=int(same.sum()))
        same = y[first] == y[second]
    out.append(0.5 * (x[first] + x[second]))
    return np.concatenate(out).astype(x.dtype, copy=False)


def corrupted_images(x: np.ndarray) -> np.ndarray:
    """Contrast-inverted images (per channel ``min + max - x``): a shift the detector never saw in training."""
    lo, hi = x.min(axis=(0, 2, 3), keepdims=True), x.max(axis=(0, 2, 3), keepdims=True)
    return (lo + hi - x).astype(x.dtype, copy=False)


class LayerDetector(nn.Module):
    """Standardise B's layer representation per channel, then classify it (small convnet or MLP)."""

    def __init__(self, shape: Sequence[int], num_classes: int, width: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clone())
        c = self.shape[0]
        if len(self.shape) == 3:
            first_stride = 2 if min(self.shape[1:]) >= 14 else 1
            second_stride = 2 if min(self.shape[1:]) // first_stride >= 6 else 1
            self.body = nn.Sequential(
                nn.Conv2d(c, width, 3, stride=first_stride, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 3, stride=second_stride, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
            )
        else:
            self.body = nn.Sequential(
                nn.Linear(c, width), nn.BatchNorm1d(width), nn.ReLU(),
                nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, num_classes),
            )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        view = (1, -1, 1, 1) if h.dim() == 4 else (1, -1)
        return self.body((h - self.mean.view(view)) / self.std.view(view))

    @torch.no_grad()
    def score(self, h: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Energy of each representation (eval mode; higher = more out of distribution)."""
        was = self.training
        self.eval()
        out = torch.cat([energy(self(h[k : k + batch_size])) for k in range(0, len(h), batch_size)])
        self.train(was)
        return out


@torch.no_grad()
def _channel_stats(model_b: StitchableNet, layers: Sequence[str], x: torch.Tensor, batch_size: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    sums: dict[str, list[torch.Tensor]] = {}
    for k in range(0, len(x), batch_size):
        feats = model_b.features(x[k : k + batch_size], layers)
        for name, h in feats.items():
            dims = (0, 2, 3) if h.dim() == 4 else (0,)
            per = h.double()
            m = per.shape[0] * (per.shape[2] * per.shape[3] if h.dim() == 4 else 1)
            s1, s2 = per.sum(dims), (per * per).sum(dims)
            if name in sums:
                sums[name][0] += s1
                sums[name][1] += s2
                sums[name][2] += m
            else:
                sums[name] = [s1, s2, torch.tensor(float(m), dtype=torch.float64)]
    out = {}
    for name, (s1, s2, m) in sums.items():
        mean = s1 / m
        var = (s2 / m - mean * mean).clamp_min(0.0)
        # a dead channel has std 0: divide by 1 there (its standardised value is 0 on real data, and
        # any activity in it is passed to the detector at its raw size)
        std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
        out[name] = (mean.float(), std.float())
    return out


def fit_detectors(
    model_b: StitchableNet,
    layers: Sequence[str],
    x: np.ndarray,
    y: np.ndarray,
    cfg: DetectorSettings,
    device: torch.device | str = "cpu",
    outliers: np.ndarray | None = None,
) -> dict[str, LayerDetector]:
    """One detector per layer of B in ``layers``, trained together (one B front pass per batch serves all).

    Phase 1: cross-entropy on (B's layer representation of ``x``, ``y``) for ``cfg.epochs``. Phase 2:
    ``cfg.oe_epochs`` of :func:`energy_oe_loss` with a batch of real and a batch of outlier
    representations per step (outliers: :func:`outlier_images` of ``x`` unless given).
    """
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"detector training needs labelled inputs, got {len(x)} inputs and {len(y)} labels")
    device = torch.device(device)
    freeze(model_b).to(device)
    layers = sorted(set(layers), key=model_b.index)
    num_classes = int(np.max(y)) + 1
    torch.manual_seed(cfg.seed)  # detector initialisation
    gen = torch.Generator().manual_seed(cfg.seed)
    x_t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    y_t = torch.from_numpy(np.ascontiguousarray(y)).long().to(device)
    stats = _channel_stats(model_b, layers, x_t, 500)
    with torch.no_grad():
        shapes = {k: tuple(v.shape[1:]) for k, v in model_b.features(x_t[:2], layers).items()}
    dets = {name: LayerDetector(shapes[name], num_classes, cfg.width, *stats[name]).to(device) for name in layers}
    params = [p for d in dets.values() for p in d.parameters()]
    n = len(y_t)

    def batches() -> list[torch.Tensor]:
        order = torch.randperm(n, generator=gen).to(device)
        return [order[k : k + cfg.batch_size] for k in range(0, n, cfg.batch_size)]

    for d in dets.values():
        d.train()
    opt = Adam(params, lr=cfg.lr)  # repmatch.optim: torch.optim.Adam's arithmetic without importing torch._dynamo
    total = max(cfg.epochs * math.ceil(n / cfg.batch_size), 1)
    step = 0
    for _ in range(cfg.epochs):
        for idx in batches():
            with torch.no_grad():
                feats = model_b.features(x_t[idx], layers)
            opt.zero_grad(set_to_none=True)
            sum(F.cross_entropy(dets[name](feats[name]), y_t[idx]) for name in layers).backward()
            opt.param_groups[0]["lr"] = cosine_lr(cfg.lr, step, total)  # cosine decay per step
            opt.step()
            step += 1
    if cfg.oe_epochs > 0:
        out_x = outlier_images(x, y, n, cfg.seed + 1) if outliers is None else outliers
        out_t = torch.from_numpy(np.ascontiguousarray(out_x)).to(device)
        opt = Adam(params, lr=cfg.oe_lr)
        for _ in range(cfg.oe_epochs):
            for idx in batches():
                idx_out = torch.randint(0, len(out_t), (len(idx),), generator=gen).to(device)
                with torch.no_grad():
                    f_in, f_out = model_b.features(x_t[idx], layers), model_b.features(out_t[idx_out], layers)
                opt.zero_grad(set_to_none=True)
                loss = _oe_step(dets, layers, f_in, f_out, y_t[idx], cfg)
                loss.backward()
                opt.step()
    for d in dets.values():
        d.eval()
    return dets


def _oe_step(dets: Mapping[str, LayerDetector], layers: Sequence[str], f_in: Mapping[str, torch.Tensor],
             f_out: Mapping[str, torch.Tensor], y: torch.Tensor, cfg: DetectorSettings) -> torch.Tensor:
    """Sum over layers of the OE loss; real and outlier batches go through each detector together
    (one BatchNorm batch, as in Liu et al.'s code which concatenates them)."""
    total = torch.zeros((), device=y.device)
    for name in layers:
        k = len(f_in[name])
        logits = dets[name](torch.cat([f_in[name], f_out[name]]))
        total = total + energy_oe_loss(logits[:k], y, logits[k:], m_in=cfg.m_in, m_out=cfg.m_out, weight=cfg.oe_weight)
    return total


@torch.no_grad()
def sanity_check(detector: LayerDetector, model_b: StitchableNet, layer: str, x_train: np.ndarray, x_test: np.ndarray,
                 device: torch.device | str = "cpu", batch_size: int = 500, x_corrupt: np.ndarray | None = None) -> dict[str, float]:
    """Does the detector keep held-out real representations in and flag a corruption it never saw?

    ``sanity_in_rate``: fraction of test representations below the 95th percentile of the training
    representations' energies (nominal 0.95; much lower = the detector overfits its training set);
    ``sanity_corrupt_auroc``: AUROC of corrupted test images' representations vs the real ones
    (``x_corrupt``; default :func:`corrupted_images` of ``x_test``, contrast inversion, which is a real
    shift for digits but not for every dataset).
    """
    def reps(x: np.ndarray) -> torch.Tensor:
        xt = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        return torch.cat([model_b.forward_until(xt[k : k + batch_size], layer) for k in range(0, len(xt), batch_size)])

    e_train = detector.score(reps(x_train)).cpu().numpy()
    e_test = detector.score(reps(x_test)).cpu().numpy()
    e_bad = detector.score(reps(corrupted_images(x_test) if x_corrupt is None else x_corrupt)).cpu().numpy()
    threshold = np.quantile(e_train, 0.95, method="higher")
    return {"sanity_in_rate": float(np.mean(e_test <= threshold)), "sanity_corrupt_auroc": auroc(e_bad, e_test)}
