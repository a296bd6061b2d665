"""A whole model pair's stitching grid in one process: DM fit, TLM training, scoring, tidy table.

Why one process per ordered model pair: every cell of the grid reuses the same two frozen
networks and the same data. One pass over the training split accumulates the DM normal
equations of every (i, j) cell and B's per-layer activation statistics; one stacked training
loop trains every TLM and DM-init TLM stitch; one stacked pass over the test split scores all
of them. A process per cell would redo all of that (and reload the models) for each cell.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..data import ArrayDataset
from ..networks.hooked import HookedNet
from ..networks.stitchable import StitchableNet, select_layers
from ..settings import StitchingSettings, UncertaintySettings, section_settings
from ..tables import COLUMNS as TABLE_COLUMNS
from ..uncertainty.intervals import wilson_interval
from ..uncertainty.significance import mcnemar_one_sided_pvalue
from .detectors import fit_detectors
from .direct import GridNormalEquations, NormalEquations, pinv_grid
from .layer import Shape, Stitch, to_rows
from .network import Cell, fold_batchnorm, freeze, layer_shapes
from .scores import ClassMoments, class_whitener, evaluate_stitches, gaussian_whitener
from .task import TLMConfig, convergence_metrics, train_stitches

METHODS = ("dm", "tlm", "dm_tlm")
COLUMNS = TABLE_COLUMNS["stitching"]


def _check_finite(feats: Mapping[str, torch.Tensor], which: str) -> None:
    for name, value in feats.items():
        if not torch.isfinite(value).all():
            raise FloatingPointError(f"model {which}'s layer {name!r} produced NaN/Inf activations; the checkpoint is broken")


@torch.no_grad()
def fit_direct(
    model_a: StitchableNet,
    model_b: StitchableNet,
    pairs: Sequence[tuple[str, str]],
    shapes_a: Mapping[str, Shape],
    shapes_b: Mapping[str, Shape],
    x: np.ndarray,
    cfg: StitchingSettings,
    device: torch.device,
    need_dm: bool = True,
) -> tuple[dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """One pass over the training inputs ``x``: DM maps of every pair and B's layer statistics.

    Returns ({(layer_a, layer_b): (W, b)}, {layer_b: Mahalanobis whitener (W, c)}).
    """
    fronts = sorted({la for la, _ in pairs}, key=model_a.layer_names.index)
    backs = sorted({lb for _, lb in pairs}, key=model_b.layer_names.index)
    grid = GridNormalEquations(pairs, shapes_a, shapes_b) if need_dm and cfg.dm.solver == "lstsq" else None
    moments = {lb: NormalEquations() for lb in backs}
    for start in range(0, len(x), cfg.batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + cfg.batch_size])).to(device)
        feats_b = model_b.features(xb, backs)
        _check_finite(feats_b, "B")
        for lb in backs:
            moments[lb].update(to_rows(feats_b[lb]), {})
        if grid is not None:
            feats_a = model_a.features(xb, fronts)
            _check_finite(feats_a, "A")
            grid.update(feats_a, feats_b)
    whiteners = {lb: gaussian_whitener(*moments[lb].moments(), cfg.mahalanobis_shrinkage) for lb in backs}
    maps: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    if grid is not None:
        maps = {(la, lb): grid.solve(la, lb, cfg.dm.ridge) for la, lb in pairs}
    elif need_dm:  # the paper's small-K pseudo-inverse: the first K samples of a seeded permutation
        pick = np.sort(np.random.default_rng(cfg.seed).permutation(len(x))[: cfg.dm.k])
        xb = torch.from_numpy(np.ascontiguousarray(x[pick])).to(device)
        feats_a, feats_b = model_a.features(xb, fronts), model_b.features(xb, backs)
        _check_finite(feats_a, "A"), _check_finite(feats_b, "B")
        maps = pinv_grid(pairs, feats_a, feats_b, shapes_b)
    for key, (w, b) in maps.items():
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise FloatingPointError(f"DM solution for stitch {key[0]} -> {key[1]} is not finite")
    return maps, whiteners


@torch.no_grad()
def fit_class_whiteners(
    model_b: StitchableNet, backs: Sequence[str], x: np.ndarray, y: np.ndarray, shrinkage: float, batch_size: int,
    device: torch.device | str,
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Class-conditional Mahalanobis statistics of B's layers on its training split (one pass of B).

    Returns {layer_b: :func:`~repmatch.stitching.scores.class_whitener` output}. A separate pass
    (B's forward only, seconds on the default data) keeps :func:`fit_direct`'s contract unchanged.
    """
    num_classes = int(np.max(y)) + 1
    moments = {lb: NormalEquations() for lb in backs}
    per_class = {lb: ClassMoments(num_classes) for lb in backs}
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(device)
        yb = torch.from_numpy(np.ascontiguousarray(y[start : start + batch_size])).long()
        feats = model_b.features(xb, backs)
        for lb in backs:
            rows = to_rows(feats[lb])
            moments[lb].update(rows, {})
            per_class[lb].update(rows, yb.repeat_interleave(rows.shape[0] // len(yb)))
    return {lb: class_whitener(*moments[lb].moments(), *per_class[lb].means(), shrinkage) for lb in backs}


def build_stitches(
    pairs: Sequence[tuple[str, str]],
    shapes_a: Mapping[str, Shape],
    shapes_b: Mapping[str, Shape],
    methods: Sequence[str],
    dm_maps: Mapping[tuple[str, str], tuple[torch.Tensor, torch.Tensor]],
    seed: int,
) -> dict[Cell, Stitch]:
    """One stitch per (method, pair): DM and DM-init from ``dm_maps``, TLM randomly from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[Cell, Stitch] = {}
    for method in methods:
        for la, lb in pairs:
            stitch = Stitch(shapes_a[la], shapes_b[lb], generator=gen)
            if method in ("dm", "dm_tlm"):
                stitch.set_affine(*dm_maps[(la, lb)])
            out[Cell(method, la, lb)] = stitch
    return out


def stitch_pair(
    model_a: StitchableNet,
    model_b: StitchableNet,
    train: ArrayDataset,
    test: ArrayDataset,
    cfg: StitchingSettings,
    layers: Sequence[str],
    device: torch.device | str = "cpu",
    names: tuple[str, str] = ("A", "B"),
    log: logging.Logger | None = None,
    uncertainty: UncertaintySettings | None = None,
) -> pd.DataFrame:
    """Run the whole grid (every configured layer of A x every configured layer of B) for one ordered pair.

    Returns the tidy table: one row per (layer_a, layer_b, method, metric). Accuracy rows carry a
    Wilson interval (``ci_low``, ``ci_high``, at ``uncertainty.level``) and one-sided McNemar
    p-values (``p_column``, ``p_row``) of "this cell is more accurate than its column's / row's
    counterpart cell" (the same-named layer), on the same test images; NaN elsewhere.
    """
    device = torch.device(device)
    log = log or logging.getLogger("repmatch.stitching")
    freeze(model_a).to(device), freeze(model_b).to(device)
    if cfg.fold_batchnorm:  # copies: the caller's networks are not modified
        model_a, model_b = fold_batchnorm(model_a), fold_batchnorm(model_b)
    input_shape = tuple(train.x.shape[1:])
    shapes_a, shapes_b = layer_shapes(model_a, input_shape, device), layer_shapes(model_b, input_shape, device)
    layers_a, layers_b = select_layers(model_a, layers), select_layers(model_b, layers)
    pairs = [(la, lb) for la in layers_a for lb in layers_b]
    need_dm = any(m in ("dm", "dm_tlm") for m in cfg.methods)

    t0 = time.perf_counter()
    dm_maps, whiteners = fit_direct(model_a, model_b, pairs, shapes_a, shapes_b, train.x, cfg, device, need_dm)
    log.info("DM (%s) for %d stitches and B's layer statistics: %.1f s", cfg.dm.solver, len(pairs), time.perf_counter() - t0)

    stitches = build_stitches(pairs, shapes_a, shapes_b, cfg.methods, dm_maps, cfg.seed)
    trained = {c: s for c, s in stitches.items() if c.method != "dm"}
    history: dict[Cell, list[float]] = {}
    tlm_set = train
    if cfg.tlm.n_train and cfg.tlm.n_train < len(train):
        tlm_set = train.subset(np.sort(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.tlm.n_train]))
    tlm = TLMConfig.from_settings(cfg)
    # one stacked run per epoch count (random-init TLM and DM-init TLM may train for different lengths,
    # each with its own full schedule); equal counts share one run and its front passes
    by_epochs: dict[int, dict[Cell, Stitch]] = {}
    for c, s in trained.items():
        by_epochs.setdefault(tlm.epochs_for(c.method), {})[c] = s
    for epochs, group in sorted(by_epochs.items()):
        if epochs > 0:
            history.update(train_stitches(model_a, model_b, group, tlm_set.x, tlm_set.y, replace(tlm, epochs=epochs),
                                          device, stacked=True, log=log))

    class_whiteners = None
    if cfg.mahalanobis_class_conditional:
        class_whiteners = fit_class_whiteners(model_b, sorted(whiteners, key=model_b.layer_names.index), train.x, train.y,
                                              cfg.mahalanobis_shrinkage, cfg.batch_size, device)
    detectors = None
    if cfg.detector.enabled:  # one detector per B layer, fitted once and reused by every stitch into that layer
        t0 = time.perf_counter()
        detectors = fit_detectors(model_b, sorted(whiteners, key=model_b.layer_names.index), train.x, train.y, cfg.detector, device)
        log.info("OOD detectors for %d B layers: %.1f s", len(detectors), time.perf_counter() - t0)
    t0 = time.perf_counter()
    per_image: dict[Cell, np.ndarray] = {}
    scores, base = evaluate_stitches(
        model_a, model_b, stitches, test.x, test.y, device, cfg.batch_size, whiteners, cfg.max_stack, class_whiteners,
        detectors, per_image,
    )
    log.info("scored %d stitches on %d test samples: %.1f s (model B alone: accuracy %.4f)",
             len(stitches), len(test), time.perf_counter() - t0, base["accuracy"])
    for cell, hist in history.items():
        scores[cell].update(convergence_metrics(hist, cfg.tlm.converged_tol))
    accuracy_tests = accuracy_uncertainty(per_image, uncertainty or section_settings("uncertainty"))
    rows = []
    nan4 = (np.nan,) * 4
    for cell, metrics in scores.items():
        ia, ib = model_a.index(cell.layer_a), model_b.index(cell.layer_b)
        for metric, value in metrics.items():
            extra = accuracy_tests[cell] if metric == "accuracy" else nan4
            rows.append((names[0], cell.layer_a, ia, names[1], cell.layer_b, ib, cell.method, metric, float(value), *extra))
    return pd.DataFrame(rows, columns=COLUMNS)


def accuracy_uncertainty(per_image: Mapping[Cell, np.ndarray], uncertainty: UncertaintySettings) -> dict[Cell, tuple[float, ...]]:
    """Per cell: (Wilson ci_low, ci_high, McNemar p_column, p_row) of its stitched accuracy.

    ``p_column``: one-sided McNemar p-value that cell (i, j) is more accurate than (j, j) -- B layer
    j's own counterpart -- on the same test images; ``p_row``: than (i, i). NaN on the counterpart
    itself or where the grid has no counterpart cell. Uncorrected: the sanity tests correct them.
    """
    def p_beats(cell: Cell, other: Cell) -> float:
        if other == cell or other not in per_image:
            return np.nan
        mine, theirs = per_image[cell], per_image[other]
        return mcnemar_one_sided_pvalue(int(np.sum(mine & ~theirs)), int(np.sum(theirs & ~mine)), uncertainty.mcnemar)

    out = {}
    for cell, hits in per_image.items():
        lo, hi = wilson_interval(int(hits.sum()), len(hits), uncertainty.level)
        out[cell] = (float(lo), float(hi), p_beats(cell, Cell(cell.method, cell.layer_b, cell.layer_b)),
                     p_beats(cell, Cell(cell.method, cell.layer_a, cell.layer_a)))  # fmt: skip
    return out


def stitch_modules(
    model_a: nn.Module, layers_a: Sequence[str] | Mapping[str, str], model_b: nn.Module, layers_b: Sequence[str] | Mapping[str, str],
    train: tuple[Any, Any], test: tuple[Any, Any], *, methods: Sequence[str] = ("dm", "tlm"), device: torch.device | str = "cpu",
    input_channels: int | None = None, **stitching: Any,
) -> Any:  # fmt: skip
    """One call, no Snakemake: stitch every listed layer of ``model_a`` into every listed layer of ``model_b``.

    ``train`` / ``test``: ``(x, y)`` arrays (images (n, C, H, W) float32, labels (n,) int); the
    networks are frozen (eval mode, no gradients); ``stitching``: overrides of the ``stitching``
    config section (e.g. ``tlm={"epochs": 5}``, ``seed=1``). Returns the tidy table of
    :func:`repmatch.stitching.stitch_pair` (one row per layer pair, method and metric).
    """

    def dataset(xy: tuple[Any, Any]) -> ArrayDataset:
        x, y = (np.ascontiguousarray(np.asarray(v)) for v in xy)
        return ArrayDataset(x.astype(np.float32, copy=False), y.astype(np.int64, copy=False), np.arange(len(y)))

    cfg = section_settings("stitching", {"methods": list(methods), **stitching})
    net_a, net_b = HookedNet(model_a, layers_a, input_channels), HookedNet(model_b, layers_b, input_channels)
    return stitch_pair(net_a, net_b, dataset(train), dataset(test), cfg, "all", device, ("A", "B"))  # type: ignore[arg-type]
