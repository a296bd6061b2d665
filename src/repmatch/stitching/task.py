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

Why a learning-rate schedule: measured on the default networks (docs/design/stitching-convergence-and-ood.md), a
constant rate stalls 1-2 pp short of model B's accuracy on the diagonal (where the identity is
a perfect stitch), whatever the rate; only a decaying rate (linear warm-up + cosine to ~0) gets
random-init TLM within 1 pp in a laptop budget. The schedule is per optimizer step and depends
only on the step count, so stacked and one-at-a-time training still produce the same stitches.

Why optional weight decay and augmentation: the seed paper's code trains stitches with Adam
(weight decay 1e-5) on randomly cropped (padding 4) and flipped inputs; both are options here,
off by default (horizontal flips are wrong for digits).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..networks.stitchable import StitchableNet
from ..optim import Adam
from ..settings import StitchingSettings, TLMSettings, section_settings
from .layer import Stitch
from .network import Cell, freeze, group_by_back

SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TLMConfig(TLMSettings):
    """The parameters of one TLM run (the paper: Adam, lr 1e-3, batch 256, 30 epochs, random init,
    weight decay 1e-5, crop + flip augmentation, constant rate).

    The ``stitching.tlm`` settings plus the section-level ``stitching.seed`` and
    ``stitching.max_stack`` (which DM and scoring use too), built by :meth:`from_settings`; no
    defaults here. ``schedule``: ``constant`` or ``cosine`` (linear warm-up over ``warmup_epochs``
    -- may be fractional -- then cosine decay from ``lr`` to ``final_lr_fraction * lr`` at the last
    step). ``dm_tlm_epochs``: epochs of DM-initialised stitches (None = ``epochs``). ``augment``:
    random crop (zero-image padding 4) + horizontal flip of the inputs, as the paper's CIFAR code.
    ``converged_tol``: a stitch counts as converged when its last epoch changed the mean training
    loss by less than this fraction.
    """

    seed: int
    max_stack: int | None  # at most this many stitches per stacked back-half batch (memory)

    @classmethod
    def from_settings(cls, stitching: StitchingSettings) -> TLMConfig:
        fields = {f.name: getattr(stitching.tlm, f.name) for f in dataclasses.fields(TLMSettings)}
        out = cls(**fields, seed=stitching.seed, max_stack=stitching.max_stack)
        out.validate()
        return out

    @classmethod
    def make(cls, **overrides: object) -> TLMConfig:
        """The schema's defaults with ``overrides`` (tests, benchmarks, notebooks)."""
        out = dataclasses.replace(cls.from_settings(section_settings("stitching")), **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid TLM settings {self}: need epochs >= 0, batch_size >= 1, lr > 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"stitching.tlm.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.warmup_epochs < 0 or not 0 <= self.final_lr_fraction <= 1 or self.weight_decay < 0 or self.converged_tol <= 0:
            raise ValueError(f"invalid TLM settings {self}: need warmup_epochs >= 0, 0 <= final_lr_fraction <= 1, "
                             "weight_decay >= 0, converged_tol > 0")
        if self.dm_tlm_epochs is not None and self.dm_tlm_epochs < 0:
            raise ValueError(f"stitching.tlm.dm_tlm_epochs must be >= 0 or null, got {self.dm_tlm_epochs}")

    def epochs_for(self, method: str) -> int:
        """Epochs of stitches made by ``method`` (``dm_tlm`` may train shorter than random-init ``tlm``)."""
        return self.dm_tlm_epochs if method == "dm_tlm" and self.dm_tlm_epochs is not None else self.epochs


def lr_at(step: int, total_steps: int, *, lr: float, schedule: str, warmup_steps: int = 0, final_fraction: float = 0.0) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total_steps``.

    ``constant``: ``lr`` throughout (after the warm-up). ``cosine``: linear warm-up from
    ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps`` steps, then
    ``lr * (f + (1 - f) * (1 + cos(pi * t)) / 2)`` with t going from 0 (first step after the
    warm-up) to 1 (the last step), so the last step runs at ``final_fraction * lr``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside 0..{total_steps - 1}")
    warmup_steps = min(max(int(warmup_steps), 0), total_steps - 1)
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    span = total_steps - 1 - warmup_steps
    t = (step - warmup_steps) / span if span > 0 else 1.0
    return lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * t)))


def augment_batch(x: torch.Tensor, gen: torch.Generator, *, pad: int = 4, fill: torch.Tensor | None = None, flip: bool = True) -> torch.Tensor:
    """Random crop with ``pad`` pixels of padding and (optionally) a random horizontal flip, per image.

    The paper's code uses torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip on
    un-normalised images, i.e. pads with black; on normalised inputs black is the per-channel
    ``fill`` value (callers pass the per-channel minimum of the data). Offsets and flips are drawn
    on the CPU generator ``gen`` (same augmentations on any device and in the stacked and
    one-at-a-time loops). Vectorised: one gather for the whole batch.
    """
    n, c, h, w = x.shape
    fill_v = torch.zeros(c, dtype=x.dtype, device=x.device) if fill is None else fill.to(x)
    padded = fill_v.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    offs = torch.randint(0, 2 * pad + 1, (2, n), generator=gen).to(x.device)
    flips = (torch.rand(n, generator=gen) < 0.5).to(x.device) if flip else torch.zeros(n, dtype=torch.bool, device=x.device)
    rows = offs[0][:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = torch.where(flips[:, None], cols.flip(1), cols) + offs[1][:, None]  # (n, w)
    out = padded[torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def loss_change(history: Sequence[float]) -> float:
    """Relative change of the mean training loss over the last epoch: (L_last - L_prev) / L_prev.

    Negative while the loss still falls; NaN with fewer than two epochs. A small value under a
    cosine schedule partly reflects the small final rate, so it is a necessary, not a
    sufficient, sign of convergence.
    """
    if len(history) < 2:
        return float("nan")
    prev, last = float(history[-2]), float(history[-1])
    return (last - prev) / prev if prev > 0 else 0.0


def convergence_metrics(history: Sequence[float], tol: float) -> dict[str, float]:
    """Table rows for one stitch's loss curve: ``train_loss`` (last epoch's mean), ``train_loss_e{k}``
    per epoch, and -- with at least two epochs -- ``train_loss_change`` (:func:`loss_change`) and
    ``train_converged`` (1.0 when |change| < ``tol``, else 0.0). No NaN rows: tables stay finite."""
    if not history:
        return {}
    out = {"train_loss": float(history[-1])}
    if len(history) >= 2:
        change = loss_change(history)
        out.update({"train_loss_change": change, "train_converged": float(abs(change) < tol)})
    out.update({f"train_loss_e{k}": float(v) for k, v in enumerate(history, start=1)})
    return out


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


class _Schedule:
    """The per-step learning rate of one training run (same for the stacked and the single loop)."""

    def __init__(self, cfg: TLMConfig, n: int) -> None:
        self.per_epoch = math.ceil(n / cfg.batch_size)
        self.total = max(cfg.epochs * self.per_epoch, 1)
        self.warmup = round(cfg.warmup_epochs * self.per_epoch)
        self.cfg = cfg

    def set(self, opt: Adam, step: int) -> None:
        value = lr_at(step, self.total, lr=self.cfg.lr, schedule=self.cfg.schedule, warmup_steps=self.warmup,
                      final_fraction=self.cfg.final_lr_fraction)
        for group in opt.param_groups:
            group["lr"] = value


def _generators(cfg: TLMConfig, x_all: torch.Tensor) -> tuple[torch.Generator, torch.Generator | None, torch.Tensor | None]:
    """Data-order generator, augmentation generator (separate, so augmentation does not change the order)
    and the padding value (per-channel minimum of the inputs: black on normalised images)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    if not cfg.augment:
        return gen, None, None
    if x_all.dim() != 4:
        raise ValueError(f"TLM augmentation needs image batches (N, C, H, W), got shape {tuple(x_all.shape)}")
    return gen, torch.Generator().manual_seed(cfg.seed + 7919), x_all.amin(dim=(0, 2, 3))


def _inputs(x_all: torch.Tensor, idx: torch.Tensor, cfg: TLMConfig, aug_gen: torch.Generator | None,
            fill: torch.Tensor | None) -> torch.Tensor:
    xb = x_all[idx]
    return xb if aug_gen is None else augment_batch(xb, aug_gen, fill=fill)


def _adam(params: list[torch.nn.Parameter], cfg: TLMConfig) -> Adam:
    """The stitches' optimizer (the same for the stacked and the one-at-a-time loop, so they stay equal);
    repmatch.optim's Adam: torch.optim.Adam's foreach arithmetic without importing torch._dynamo."""
    return Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


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
    # foreach: one multi-tensor kernel per Adam operation instead of a dozen small ops per stitch parameter;
    # torch picks it only on CUDA by default, and at the default's batch of 16 those ops are a visible share
    opt = _adam(params, cfg)
    gen, aug_gen, fill = _generators(cfg, x_all)
    n = len(y_all)
    step, schedule = 0, _Schedule(cfg, n)
    # index tensors made once on the device: a Python-list index would copy host->device (and sync) every step
    slots = [torch.tensor([position[c] for c in group], device=x_all.device) for _, group in groups]
    history: dict[Cell, list[float]] = {c: [] for c in cells}
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros(len(cells), dtype=torch.float64, device=x_all.device)
        for idx in _batches(n, cfg.batch_size, gen, x_all.device):
            xb, yb = _inputs(x_all, idx, cfg, aug_gen, fill), y_all[idx]
            with torch.no_grad():
                feats = model_a.features(xb, fronts)
            schedule.set(opt, step)
            step += 1
            opt.zero_grad(set_to_none=True)
            for (lb, group), slot in zip(groups, slots):
                z = torch.cat([stitches[c](feats[c.layer_a]) for c in group])
                logits = model_b.forward_from(z, lb, xb)  # xb: the input of hooked networks (tiled per stitch)
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
    opt = _adam(list(stitch.parameters()), cfg)
    gen, aug_gen, fill = _generators(cfg, x_all)
    n = len(y_all)
    step, schedule = 0, _Schedule(cfg, n)
    history = []
    for epoch in range(cfg.epochs):
        loss_sum = torch.zeros((), dtype=torch.float64, device=x_all.device)
        for idx in _batches(n, cfg.batch_size, gen, x_all.device):
            xb, yb = _inputs(x_all, idx, cfg, aug_gen, fill), y_all[idx]
            with torch.no_grad():
                h = model_a.forward_until(xb, cell.layer_a)
            loss = F.cross_entropy(model_b.forward_from(stitch(h), cell.layer_b, xb), yb)
            schedule.set(opt, step)
            step += 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * len(yb)
        value = float(loss_sum) / n
        _raise_if_diverged(torch.tensor([value]), [cell], epoch)
        history.append(value)
    return history
