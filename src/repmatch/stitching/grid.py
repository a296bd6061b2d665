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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data import ArrayDataset
from ..models import StitchableNet, select_layers
from .detectors import DetectorConfig, fit_detectors
from .direct import GridNormalEquations, NormalEquations, pinv_grid
from .layer import Shape, Stitch, to_rows
from .network import Cell, fold_batchnorm, freeze, layer_shapes
from .pairs import stitching_pairs  # noqa: F401  (re-exported)
from .scores import ClassMoments, class_whitener, evaluate_stitches, gaussian_whitener
from .task import TLMConfig, convergence_metrics, train_stitches

METHODS = ("dm", "tlm", "dm_tlm")
COLUMNS = ["model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method", "metric", "value"]


@dataclass(frozen=True)
class StitchingConfig:
    """The ``stitching:`` config section as a typed object (defaults = config/schema.yaml's)."""

    layers: str | tuple[str, ...] = "all"
    methods: tuple[str, ...] = METHODS
    dm_solver: str = "lstsq"  # lstsq (normal equations on the whole training split) | pinv (paper's small-K)
    dm_ridge: float = 0.0
    dm_k: int = 100
    tlm: TLMConfig = field(default_factory=TLMConfig)
    tlm_n_train: int | None = None  # TLM on a seeded subset of the training split (None = all of it)
    batch_size: int = 250  # DM pass and evaluation
    mahalanobis_shrinkage: float = 0.01  # variance floor (x mean variance) of the Mahalanobis scores
    mahalanobis_class_conditional: bool = True  # also the class-conditional score (Lee et al. 2018)
    fold_batchnorm: bool = True  # fold the frozen halves' BatchNorm into their convs (exact up to round-off, ~1.3x faster TLM)
    detectors: bool = False  # learned energy-OE detectors per B layer (repmatch.stitching.detectors)
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any], model_layers: str | Sequence[str] = "all") -> StitchingConfig:
        """Parse the config section; ``layers: null`` means ``model_layers`` (the config's ``model.layers``)."""
        dm, tlm = dict(cfg.get("dm", {}) or {}), dict(cfg.get("tlm", {}) or {})
        methods = tuple(cfg.get("methods", METHODS))
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"stitching.methods {list(methods)} must be a non-empty subset of {list(METHODS)}")
        layers = cfg.get("layers")
        layers = model_layers if layers is None else layers
        out = cls(
            layers=layers if isinstance(layers, str) else tuple(layers),
            methods=methods,
            dm_solver=str(dm.get("solver", "lstsq")),
            dm_ridge=float(dm.get("ridge", 0.0)),
            dm_k=int(dm.get("k", 100)),
            tlm=TLMConfig.from_mapping(tlm),
            tlm_n_train=tlm.get("n_train"),
            batch_size=int(cfg.get("batch_size", 250)),
            mahalanobis_shrinkage=float(cfg.get("mahalanobis_shrinkage", 0.01)),
            mahalanobis_class_conditional=bool(cfg.get("mahalanobis_class_conditional", True)),
            fold_batchnorm=bool(cfg.get("fold_batchnorm", True)),
            detectors=bool((cfg.get("detector", {}) or {}).get("enabled", False)),
            detector=DetectorConfig(**{k: v for k, v in (cfg.get("detector", {}) or {}).items() if k != "enabled" and v is not None}),
        )
        if out.dm_solver not in ("lstsq", "pinv"):
            raise ValueError(f"stitching.dm.solver must be 'lstsq' or 'pinv', got {out.dm_solver!r}")
        if out.dm_ridge < 0 or out.dm_k < 1 or out.batch_size < 1 or out.mahalanobis_shrinkage < 0:
            raise ValueError(f"invalid stitching settings: {out}")
        return out


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
    cfg: StitchingConfig,
    device: torch.device,
    need_dm: bool = True,
) -> tuple[dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """One pass over the training inputs ``x``: DM maps of every pair and B's layer statistics.

    Returns ({(layer_a, layer_b): (W, b)}, {layer_b: Mahalanobis whitener (W, c)}).
    """
    fronts = sorted({la for la, _ in pairs}, key=model_a.layer_names.index)
    backs = sorted({lb for _, lb in pairs}, key=model_b.layer_names.index)
    grid = GridNormalEquations(pairs, shapes_a, shapes_b) if need_dm and cfg.dm_solver == "lstsq" else None
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
        maps = {(la, lb): grid.solve(la, lb, cfg.dm_ridge) for la, lb in pairs}
    elif need_dm:  # the paper's small-K pseudo-inverse: the first K samples of a seeded permutation
        pick = np.sort(np.random.default_rng(cfg.tlm.seed).permutation(len(x))[: cfg.dm_k])
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
    cfg: StitchingConfig,
    device: torch.device | str = "cpu",
    names: tuple[str, str] = ("A", "B"),
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Run the whole grid (every configured layer of A x every configured layer of B) for one ordered pair.

    Returns the tidy table: one row per (layer_a, layer_b, method, metric).
    """
    device = torch.device(device)
    log = log or logging.getLogger("repmatch.stitching")
    freeze(model_a).to(device), freeze(model_b).to(device)
    if cfg.fold_batchnorm:  # copies: the caller's networks are not modified
        model_a, model_b = fold_batchnorm(model_a), fold_batchnorm(model_b)
    input_shape = tuple(train.x.shape[1:])
    shapes_a, shapes_b = layer_shapes(model_a, input_shape, device), layer_shapes(model_b, input_shape, device)
    layers_a = select_layers(model_a, "all" if cfg.layers == "all" else list(cfg.layers))
    layers_b = select_layers(model_b, "all" if cfg.layers == "all" else list(cfg.layers))
    pairs = [(la, lb) for la in layers_a for lb in layers_b]
    need_dm = any(m in ("dm", "dm_tlm") for m in cfg.methods)

    t0 = time.perf_counter()
    dm_maps, whiteners = fit_direct(model_a, model_b, pairs, shapes_a, shapes_b, train.x, cfg, device, need_dm)
    log.info("DM (%s) for %d stitches and B's layer statistics: %.1f s", cfg.dm_solver, len(pairs), time.perf_counter() - t0)

    stitches = build_stitches(pairs, shapes_a, shapes_b, cfg.methods, dm_maps, cfg.tlm.seed)
    trained = {c: s for c, s in stitches.items() if c.method != "dm"}
    history: dict[Cell, list[float]] = {}
    tlm_set = train
    if cfg.tlm_n_train and cfg.tlm_n_train < len(train):
        tlm_set = train.subset(np.sort(np.random.default_rng(cfg.tlm.seed).permutation(len(train))[: cfg.tlm_n_train]))
    # one stacked run per epoch count (random-init TLM and DM-init TLM may train for different lengths,
    # each with its own full schedule); equal counts share one run and its front passes
    by_epochs: dict[int, dict[Cell, Stitch]] = {}
    for c, s in trained.items():
        by_epochs.setdefault(cfg.tlm.epochs_for(c.method), {})[c] = s
    for epochs, group in sorted(by_epochs.items()):
        if epochs > 0:
            history.update(train_stitches(model_a, model_b, group, tlm_set.x, tlm_set.y, replace(cfg.tlm, epochs=epochs),
                                          device, stacked=True, log=log))

    class_whiteners = None
    if cfg.mahalanobis_class_conditional:
        class_whiteners = fit_class_whiteners(model_b, sorted(whiteners, key=model_b.layer_names.index), train.x, train.y,
                                              cfg.mahalanobis_shrinkage, cfg.batch_size, device)
    detectors = None
    if cfg.detectors:  # one detector per B layer, fitted once and reused by every stitch into that layer
        t0 = time.perf_counter()
        detectors = fit_detectors(model_b, sorted(whiteners, key=model_b.layer_names.index), train.x, train.y, cfg.detector, device)
        log.info("OOD detectors for %d B layers: %.1f s", len(detectors), time.perf_counter() - t0)
    t0 = time.perf_counter()
    scores, base = evaluate_stitches(
        model_a, model_b, stitches, test.x, test.y, device, cfg.batch_size, whiteners, cfg.tlm.max_stack, class_whiteners,
        detectors,
    )
    log.info("scored %d stitches on %d test samples: %.1f s (model B alone: accuracy %.4f)",
             len(stitches), len(test), time.perf_counter() - t0, base["accuracy"])
    for cell, hist in history.items():
        scores[cell].update(convergence_metrics(hist, cfg.tlm.converged_tol))
    rows = []
    for cell, metrics in scores.items():
        ia, ib = model_a.index(cell.layer_a), model_b.index(cell.layer_b)
        for metric, value in metrics.items():
            rows.append((names[0], cell.layer_a, ia, names[1], cell.layer_b, ib, cell.method, metric, float(value)))
    return pd.DataFrame(rows, columns=COLUMNS)
