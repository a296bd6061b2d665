"""Task loss matching (TLM): train only the stitches on the task, both halves frozen.

Why stacked training: a grid of stitches between a model pair is many tiny optimisation
problems over the same two frozen networks. Training them one at a time repeats A's front-half
forward once per stitch and, on a GPU, launches the whole back half for a batch of 256 images
per stitch, which is launch-bound for small nets. Here one pass of A's front computes every
front layer for a batch once, and all stitches into the same B layer j are concatenated along
the batch dimension and run through B's back half in one forward/backward. Because both halves
are in eval mode (BatchNorm uses fixed statistics) every sample is processed independently, and
each stitch's loss depends only on its own parameters; Adam is elementwise, so stacked training
gives the same stitches as training them one by one (up to float round-off) -- a tested claim.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..models import StitchableNet
from .layer import Stitch
from .network import Cell, freeze, group_by_back

if TYPE_CHECKING:
    from ..settings import StitchingSettings


@dataclass(frozen=True)
class TLMConfig:
    """The parameters of one TLM run (the paper: Adam, lr 1e-3, batch 256, 30 epochs, random init).

    Built from the settings by :meth:`from_settings` (``stitching.tlm`` plus the section-level
    ``stitching.seed`` and ``stitching.max_stack``, which DM and scoring use too); no defaults here.
    """

    epochs: int
    batch_size: int
    lr: float
    seed: int
    max_stack: int | None  # at most this many stitches per stacked back-half batch (memory)

    @classmethod
    def from_settings(cls, stitching: StitchingSettings) -> TLMConfig:
        t = stitching.tlm
        return cls(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, seed=stitching.seed, max_stack=stitching.max_stack)


def _as_tensor(a: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    return (torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a).to(device)


def _check_cells(model_a: StitchableNet, model_b: StitchableNet, stitches: Mapping[Cell, Stitch]) -> None:
    if not stitches:
        raise ValueError("no stitches to train")
    for cell in stitches:
        model_a.index(cell.layer_a), model_b.index(cell.layer_b)


def train_stitches(
    model_a: StitchableNet,
    model_b: StitchableNet,
    stitches: Mapping[Cell, Stitch],
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    cfg: TLMConfig,
    device: torch.device | str = "cpu",
    stacked: bool = True,
    log: logging.Logger | None = None,
) -> dict[Cell, list[float]]:
    """Train every stitch in ``stitches`` (in place) with cross-entropy; return per-epoch mean losses.

    ``stacked=False`` is the one-at-a-time reference (its own loop and optimizer per stitch, the
    same data order), kept for the benchmark and the equivalence test.
    """
    _check_cells(model_a, model_b, stitches)
    freeze(model_a), freeze(model_b)
    model_a.to(device), model_b.to(device)
    for s in stitches.values():
        s.to(device).train()
    x_all, y_all = _as_tensor(x, device), _as_tensor(y, device).long()
    if x_all.shape[0] != y_all.shape[0]:
        raise ValueError(f"TLM data has {x_all.shape[0]} inputs but {y_all.shape[0]} labels")
    start = time.perf_counter()
    if stacked:
        history = _train_stacked(model_a, model_b, stitches, x_all, y_all, cfg, log)
    else:
        history = {cell: _train_one(model_a, model_b, cell, stitch, x_all, y_all, cfg) for cell, stitch in stitches.items()}
    if log:
        secs = time.perf_counter() - start
        rate = cfg.epochs * len(y_all) * len(stitches) / max(secs, 1e-9)
        log.info("TLM: %d stitches x %d epochs in %.1f s (%.0f stitched images/s)", len(stitches), cfg.epochs, secs, rate)
    for s in stitches.values():
        s.eval()
    return history


def _batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device) -> list[torch.Tensor]:
    """One epoch's batches of indices: drawn on the CPU generator (same order on any device), moved once."""
    order = torch.randperm(n, generator=gen).to(device)
    return [order[k : k + batch_size] for k in range(0, n, batch_size)]


def _raise_if_diverged(losses: torch.Tensor, cells: Sequence[Cell], epoch: int) -> None:
    bad = [c for c, v in zip(cells, losses.tolist()) if not math.isfinite(v)]
    if bad:
        raise FloatingPointError(f"TLM loss became non-finite at epoch {epoch + 1} for stitches {bad}: lower stitching.tlm.lr")


def _train_stacked(
    model_a: StitchableNet,
    model_b: StitchableNet,
    stitches: Mapping[Cell, Stitch],
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    cfg: TLMConfig,
    log: logging.Logger | None,
) -> dict[Cell, list[float]]:
    cells = list(stitches)
    position = {c: k for k, c in enumerate(cells)}
    groups = group_by_back(cells, model_b.layer_names, cfg.max_stack)
    fronts = sorted({c.layer_a for c in cells}, key=model_a.layer_names.index)
    params = [p for s in stitches.values() for p in s.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(y_all)
    # index tensors made once on the device: a Python-list index would copy host->device (and sync) every step
    slots = [torch.tensor([position[c] for c in group], device=x_all.device) for _, group in groups]
    history: dict[Cell, list[float]] = {c: [] for c in cells}
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros(len(cells), dtype=torch.float64, device=x_all.device)
        for idx in _batches(n, cfg.batch_size, gen, x_all.device):
            xb, yb = x_all[idx], y_all[idx]
            with torch.no_grad():
                feats = model_a.features(xb, fronts)
            opt.zero_grad(set_to_none=True)
            for (lb, group), slot in zip(groups, slots):
                z = torch.cat([stitches[c](feats[c.layer_a]) for c in group])
                logits = model_b.forward_from(z, lb)
                losses = F.cross_entropy(logits, yb.repeat(len(group)), reduction="none").view(len(group), -1).mean(1)
                losses.sum().backward()  # stitches of different groups are disjoint: gradients do not mix
                loss_sum.index_add_(0, slot, losses.detach().double() * len(yb))
            opt.step()
        epoch_loss = (loss_sum / n).cpu()
        _raise_if_diverged(epoch_loss, cells, epoch)
        for c, v in zip(cells, epoch_loss.tolist()):
            history[c].append(v)
        if log:
            log.info("TLM epoch %d/%d: mean train loss over %d stitches %.4f", epoch + 1, cfg.epochs, len(cells), float(epoch_loss.mean()))
    return history


def _train_one(
    model_a: StitchableNet, model_b: StitchableNet, cell: Cell, stitch: Stitch, x_all: torch.Tensor, y_all: torch.Tensor, cfg: TLMConfig
) -> list[float]:
    """The plain loop for one stitch (reference / baseline), same data order as the stacked loop."""
    opt = torch.optim.Adam(stitch.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(y_all)
    history = []
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros((), dtype=torch.float64, device=x_all.device)
        for idx in _batches(n, cfg.batch_size, gen, x_all.device):
            xb, yb = x_all[idx], y_all[idx]
            with torch.no_grad():
                h = model_a.forward_until(xb, cell.layer_a)
            loss = F.cross_entropy(model_b.forward_from(stitch(h), cell.layer_b), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * len(yb)
        value = float(loss_sum) / n
        _raise_if_diverged(torch.tensor([value]), [cell], epoch)
        history.append(value)
    return history
