"""Layer x layer heatmaps of the similarity indices (uses the shared :mod:`repmatch.plotting` helpers).

Per measure two figures: every model pair as one panel (within-network grids included), and the
grid averaged over all ordered cross-seed pairs (the seed-averaged picture of layer correspondence),
with the number of pairs and a dot on every off-diagonal cell whose t interval over the pairs
overlaps the interval of its column's diagonal cell (not distinguishable from the counterpart
across seeds; :func:`repmatch.uncertainty.across_pairs`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import draw_layer_grid, plt, save_figure
from .registry import get_measure


#: ``(model_a, model_b) -> layer_a x layer_b grid`` of one method, as stored (see :func:`stored_grids`).
Grids = dict[tuple[str, str], pd.DataFrame]


def stored_grids(table: pd.DataFrame, method: str) -> Grids:
    """Every stored ``(model_a, model_b)`` grid of ``method`` (layers in network order), in table order.

    One pass over the table per method: the figures of a measure look their panels up here instead
    of filtering and pivoting the whole table once per panel.
    """
    sub = table[table["method"] == method]
    return {(str(a), str(b)): _pivot(part) for (a, b), part in sub.groupby(["model_a", "model_b"], sort=False)}


def oriented_grid(table: pd.DataFrame, method: str, model_x: str, model_y: str, symmetric: bool,
                  grids: Grids | None = None) -> pd.DataFrame | None:  # fmt: skip
    """value(x_i, y_j) as a layer_x x layer_y frame (layers in network order), or None if absent.

    Symmetric measures are stored once per unordered pair; the other orientation is the transpose.
    ``grids`` (``stored_grids(table, method)``) spares the look-up in ``table``.
    """
    grids = stored_grids(table, method) if grids is None else grids
    if (model_x, model_y) in grids:
        return grids[(model_x, model_y)]
    if symmetric and (model_y, model_x) in grids:
        return grids[(model_y, model_x)].T
    return None


def _pivot(sub: pd.DataFrame) -> pd.DataFrame:
    """Mean value per (index_a, index_b) cell over the rows (NaN rows skipped, as pandas' mean does),
    rows and columns in index order and named by their layer; a cell with no value is NaN."""
    names_a = dict(zip(sub["index_a"], sub["layer_a"]))
    names_b = dict(zip(sub["index_b"], sub["layer_b"]))
    rows, r = np.unique(sub["index_a"].to_numpy(), return_inverse=True)
    cols, c = np.unique(sub["index_b"].to_numpy(), return_inverse=True)
    v = sub["value"].to_numpy(dtype=float)
    ok = ~np.isnan(v)
    total = np.zeros((rows.size, cols.size))
    count = np.zeros((rows.size, cols.size))
    np.add.at(total, (r[ok], c[ok]), v[ok])
    np.add.at(count, (r[ok], c[ok]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1.0), np.nan)
    return pd.DataFrame(mean, index=[names_a[i] for i in rows], columns=[names_b[j] for j in cols])


def _models(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(list(table["model_a"]) + list(table["model_b"])))


def _stored_pairs(table: pd.DataFrame, method: str, grids: Grids | None = None) -> list[tuple[str, str]]:
    """Model pairs in table order, each unordered pair once (asymmetric measures store both)."""
    seen: list[tuple[str, str]] = []
    for pair in stored_grids(table, method) if grids is None else grids:
        if (pair[1], pair[0]) not in seen:
            seen.append(pair)
    return seen


def _limits(table: pd.DataFrame, method: str) -> tuple[float | None, float | None]:
    v = table.loc[table["method"] == method, "value"].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return (float(v.min()), float(v.max())) if v.size else (None, None)


def plot_pairs(table: pd.DataFrame, method: str, stem: str | os.PathLike[str], *, grids: Grids | None = None) -> list[Path]:
    """One panel per model pair (rows: layers of model_a, columns: layers of model_b).

    ``grids``: ``stored_grids(table, method)`` when the caller has it already."""
    m = get_measure(method)
    grids = stored_grids(table, method) if grids is None else grids
    pairs = _stored_pairs(table, method, grids)
    if not pairs:
        raise ValueError(f"no rows for method {method!r} in the similarity table")
    ncol = min(3, len(pairs))
    nrow = math.ceil(len(pairs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol + 1, 3.8 * nrow), squeeze=False, layout="constrained")
    vmin, vmax = _limits(table, method)
    image = None
    for ax, (x, y) in zip(axes.ravel(), pairs):
        grid = oriented_grid(table, method, x, y, m.symmetric, grids)
        assert grid is not None
        image = draw_layer_grid(ax, grid, title=f"{x} vs {y}", xlabel=y, ylabel=x, vmin=vmin, vmax=vmax, annotate=False)
    for ax in axes.ravel()[len(pairs) :]:
        ax.axis("off")
    fig.suptitle(f"{method} ({'higher' if m.larger_is_similar else 'lower'} = more similar)")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label=method)
    return save_figure(fig, stem)


def cross_seed_grids(table: pd.DataFrame, method: str, grids: Grids | None = None) -> list[pd.DataFrame]:
    """value(x_i, y_j) of every ordered pair of different models (empty with one model).

    Only grids with the first grid's layers are kept: networks with other layers (external
    activations) are not seeds of the same network and cannot be averaged with them.
    """
    m = get_measure(method)
    grids = stored_grids(table, method) if grids is None else grids
    out: list[pd.DataFrame] = []
    models = _models(table)
    for x in models:
        for y in models:
            if x != y:
                g = oriented_grid(table, method, x, y, m.symmetric, grids)
                if g is None:
                    continue
                if not out or (list(g.index), list(g.columns)) == (list(out[0].index), list(out[0].columns)):
                    out.append(g)
    return out


def cross_seed_mean(table: pd.DataFrame, method: str) -> pd.DataFrame | None:
    """Mean of value(x_i, y_j) over all ordered pairs of different models (None with one model)."""
    grids = cross_seed_grids(table, method)
    if not grids:
        return None
    stacked = np.stack([g.to_numpy(dtype=float) for g in grids])
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(stacked, axis=0) if np.isfinite(stacked).any() else stacked[0]
    return pd.DataFrame(mean, index=grids[0].index, columns=grids[0].columns)


def overlaps_diagonal(ci_low: np.ndarray, ci_high: np.ndarray, rows: Sequence[str], columns: Sequence[str]) -> np.ndarray:
    """Cells (i, j), i != j, whose interval overlaps that of the column's counterpart (the row named like column j).

    False where the column has no counterpart, on the counterpart itself, or where an interval is NaN.
    """
    pos = {name: i for i, name in enumerate(rows)}
    out = np.zeros(ci_low.shape, dtype=bool)
    for j, name in enumerate(columns):
        c = pos.get(name)
        if c is None or not (np.isfinite(ci_low[c, j]) and np.isfinite(ci_high[c, j])):
            continue
        ok = np.isfinite(ci_low[:, j]) & np.isfinite(ci_high[:, j])
        out[:, j] = ok & (ci_low[:, j] <= ci_high[c, j]) & (ci_high[:, j] >= ci_low[c, j])
        out[c, j] = False
    return out


def plot_cross_seed(table: pd.DataFrame, method: str, stem: str | os.PathLike[str], *, level: float,
                    grids: Grids | None = None) -> list[Path]:  # fmt: skip
    """Seed-averaged cross-seed heatmap with the number of pairs; a dot marks cells whose ``level`` t interval
    over the pairs overlaps the column's diagonal cell's. A placeholder figure when only one seed is configured.
    ``grids``: ``stored_grids(table, method)`` when the caller has it already."""
    from ..uncertainty.intervals import across_pairs

    grids = cross_seed_grids(table, method, grids)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    if not grids:
        ax.axis("off")
        ax.text(0.5, 0.5, f"{method}: no cross-seed pairs\n(only one seed configured)", ha="center", va="center")
        return save_figure(fig, stem)
    agg = across_pairs(np.stack([g.to_numpy(dtype=float) for g in grids]), level=level)
    mean = pd.DataFrame(agg.mean, index=grids[0].index, columns=grids[0].columns)
    n_pairs = len(grids)
    cross = table[(table["method"] == method) & (table["model_a"] != table["model_b"])]
    n_models = len(set(cross["model_a"]) | set(cross["model_b"]))
    image = draw_layer_grid(ax, mean, title=f"{method}, mean over {n_pairs} ordered cross-seed pair(s) of {n_models} networks",
                            xlabel="layer of seed y", ylabel="layer of seed x")  # fmt: skip
    if n_pairs >= 2:
        mark = overlaps_diagonal(agg.ci_low, agg.ci_high, list(mean.index), list(mean.columns))
        r, c = np.nonzero(mark)
        ax.scatter(c, r + 0.3, s=14, marker="o", facecolor="white", edgecolor="black", linewidth=0.6, zorder=3)
        note = f"o: {level:.0%} t interval over the pairs overlaps the column's diagonal cell's ({int(mark.sum())} cells)"
    else:
        note = "one pair: no interval over pairs"
    ax.text(0.0, -0.28, note, transform=ax.transAxes, fontsize=7, va="top")
    fig.colorbar(image, ax=ax, label=method)
    fig.tight_layout()
    return save_figure(fig, stem)


FIGURE_KINDS = ("pairs", "cross_seed")
PLOTS = {"pairs": plot_pairs, "cross_seed": plot_cross_seed}
