"""Functional scores of a (low-rank) layer: a linear probe, and the network's own accuracy.

* :func:`pool_features` — global average pooling of a layer's output to (N, C), as the authors'
  probes (``exec_probe.py``) do: the probe sees the channel content, not its spatial layout.
* :func:`train_probe` (then ``.accuracy(x, y)``) — multinomial logistic regression trained with
  Adam for a fixed number of full-data epochs in shuffled mini-batches from a seeded generator,
  so the same inputs give the same probe. Features are standardised with the *training* mean/std
  (a fixed affine map: it does not change what a linear probe can represent, only how fast
  Adam gets there).
* :func:`network_accuracy_lowrank` — the network's own test accuracy when layer ``name``'s
  output is replaced by its rank-r representation and fed forward
  (``StitchableNet.forward_until`` / ``forward_from``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..optim import Adam
from .lowrank import LowRankBasis


def pool_features(x: torch.Tensor) -> torch.Tensor:
    """(N, C) globally pooled features: mean over positions of (N, C, H, W) or (N, T, C) outputs."""
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        return x.mean(dim=(2, 3))
    if x.ndim == 3:
        return x.mean(dim=1)
    raise ValueError(f"a layer output must be (N, C), (N, T, C) or (N, C, H, W); got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class LinearProbe:
    """A trained probe: logits = ((x - mean) / std) @ weight.T + bias."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.to(self.mean) - self.mean) / self.std
        return z @ self.weight.T + self.bias

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 accuracy on pooled features ``x`` (N, C) with labels ``y`` (N,)."""
        with torch.no_grad():
            pred = self.logits(x).argmax(dim=1)
        return float((pred.cpu() == y.cpu()).double().mean())


def train_probe(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
) -> LinearProbe:
    """Fit a multinomial logistic regression on (N, C) features by Adam, ``epochs`` passes.

    Why fixed epochs and a seed rather than "train to convergence": the probe accuracy then is a
    deterministic function of the representation, so its change over ranks is the representation's
    and not the optimiser's noise. Constant features (std 0) are left at zero after centring.
    """
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need x (N, C) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if epochs < 0 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 0, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    x = x.detach().to(torch.float32)
    y = y.detach().to(device=x.device, dtype=torch.long)
    mean = x.mean(dim=0)
    std = x.std(dim=0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    z = (x - mean) / std
    gen = torch.Generator(device="cpu").manual_seed(seed)
    lin = nn.Linear(x.shape[1], n_classes).to(x.device)
    with torch.no_grad():
        lin.weight.copy_(0.01 * torch.randn(lin.weight.shape, generator=gen))
        lin.bias.zero_()
    opt = Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)  # torch.optim.Adam's arithmetic, no torch._dynamo import
    n = x.shape[0]
    with torch.enable_grad():  # callers may run under no_grad (feature extraction)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(x.device)
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                loss = nn.functional.cross_entropy(lin(z[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return LinearProbe(mean=mean, std=std, weight=lin.weight.detach().clone(), bias=lin.bias.detach().clone())


@torch.no_grad()
def pooled_lowrank_features(
    batches: Callable[[], object], front: Callable[[torch.Tensor], torch.Tensor], basis: LowRankBasis, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (N, C) and labels (N,) of the rank-``rank`` layer over ``batches()``
    (an iterable of (inputs, labels)), where ``front(inputs)`` gives the layer's output."""
    feats, labels = [], []
    for xb, yb in batches():  # type: ignore[attr-defined]
        feats.append(pool_features(basis.apply(front(xb), rank)).float().cpu())
        labels.append(yb.cpu())
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def network_accuracy_lowrank(
    net: nn.Module, name: str, basis: LowRankBasis, rank: int, batches: Callable[[], object]
) -> float:
    """The network's own accuracy when layer ``name``'s output is its rank-``rank`` representation.

    ``net`` is a :class:`repmatch.networks.stitchable.StitchableNet` (``forward_until`` / ``forward_from``);
    ``batches()`` yields (inputs, labels) on the network's device. The network is put in eval mode.
    """
    net.eval()
    correct = total = 0
    for xb, yb in batches():  # type: ignore[attr-defined]
        h = basis.apply(net.forward_until(xb, name), rank)  # type: ignore[operator]
        pred = net.forward_from(h, name, xb).argmax(dim=1)  # type: ignore[operator]
        correct += int((pred == yb).sum())
        total += int(yb.numel())
    if total == 0:
        raise ValueError("no test samples")
    return correct / total
