"""Stitching figures: accuracy grids per method (within-network / cross-seed) and accuracy vs layer distance.

Drawn with the shared :mod:`repmatch.plotting` helpers so every family's grids look alike
(A layers on rows, B layers on columns). Each grid is averaged over the model pairs of its kind
(e.g. over the three within-network grids of three seeds).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import draw_layer_grid, layer_grid, plt, save_figure

LABELS = {"dm": "direct matching (DM)", "tlm": "task loss matching (TLM)", "dm_tlm": "DM-initialised TLM"}
ORDER = ("dm", "tlm", "dm_tlm")


def _methods(df: pd.DataFrame) -> list[str]:
    present = set(df["method"])
    return [m for m in ORDER if m in present]


def plot_accuracy_grids(
    df: pd.DataFrame, kind: str, path_stem: str | os.PathLike[str], metric: str = "accuracy", formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """One panel per method: the ``metric`` grid averaged over the model pairs of ``kind`` (within / cross)."""
    same = df["model_a"] == df["model_b"]
    sel = df[(df["metric"] == metric) & (same if kind == "within" else ~same)]
    if sel.empty:
        raise ValueError(f"no {kind}-network stitching results for metric {metric!r} to plot")
    methods = _methods(sel)
    n_pairs = sel[["model_a", "model_b"]].drop_duplicates().shape[0]
    n_layers = sel["layer_b"].nunique()
    size = max(3.5, 0.5 * n_layers + 1.8)
    fig, axes = plt.subplots(1, len(methods), figsize=(size * len(methods) + 1.5, size), squeeze=False)
    fig.subplots_adjust(wspace=0.35)
    image = None
    for k, (ax, method) in enumerate(zip(axes[0], methods)):
        grid = layer_grid(sel[sel["method"] == method])
        image = draw_layer_grid(ax, grid, LABELS.get(method, method), ylabel="model A layer" if k == 0 else "", vmin=0.0, vmax=1.0)
    label = "within-network (A = B)" if kind == "within" else "cross-seed (A != B)"
    fig.suptitle(f"Stitched test {metric}, {label}, mean over {n_pairs} model pair(s)", fontsize=11)
    fig.colorbar(image, ax=list(axes[0]), label=f"stitched {metric}", shrink=0.85)
    return save_figure(fig, path_stem, formats)


def plot_distance_curves(
    dist: pd.DataFrame, path_stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Mean score vs ``index_b - index_a`` per method (min-max band), one panel per kind."""
    if dist.empty:
        raise ValueError("no accuracy-vs-distance rows to plot")
    kinds = [k for k in ("within", "cross") if k in set(dist["kind"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.0 * len(kinds), 3.8), squeeze=False, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        part = dist[dist["kind"] == kind]
        for method in _methods(part):
            curve = part[part["method"] == method].sort_values("distance")
            ax.plot(curve["distance"], curve["mean"], marker="o", label=LABELS.get(method, method))
            ax.fill_between(curve["distance"], curve["min"], curve["max"], alpha=0.15)
        ax.axvline(0, color="grey", lw=0.8, ls=":")
        ax.set_xticks(np.arange(int(part["distance"].min()), int(part["distance"].max()) + 1))
        ax.set_xlabel("layer distance  index(B layer) - index(A layer)")
        ax.set_title("within-network" if kind == "within" else "cross-seed", fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"stitched test {dist['metric'].iloc[0]}")
    axes[0][-1].legend(fontsize=8, loc="lower left")
    return save_figure(fig, path_stem, formats)


#: The out-of-distribution scores drawn beside the accuracy (AUROC of stitched vs real
#: representations of the same test images: 0.5 = indistinguishable, 1 = stitched more atypical,
#: 0 = stitched more typical than real ones), in order of preference.
OOD_SCORES = {
    "detector_auroc": "learned detector AUROC (energy, outlier exposure)",
    "mahalanobis_cc_auroc": "class-conditional Mahalanobis AUROC",
    "mahalanobis_auroc": "Mahalanobis AUROC",
}


def _ood_metrics(df: pd.DataFrame) -> list[str]:
    present = set(df["metric"])
    return [m for m in OOD_SCORES if m in present]


def plot_ood_grids(df: pd.DataFrame, kind: str, path_stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Rows: stitched accuracy, then every OOD score present; columns: methods. Grids averaged over the
    model pairs of ``kind`` -- the paper's argument side by side: where TLM's accuracy is high far
    from the diagonal, are its stitched representations out of distribution?"""
    same = df["model_a"] == df["model_b"]
    sel = df[same if kind == "within" else ~same]
    rows = ["accuracy", *_ood_metrics(sel)]
    methods = _methods(sel)
    if sel.empty or not methods:
        raise ValueError(f"no {kind}-network stitching results to plot")
    n_layers = sel["layer_b"].nunique()
    size = max(3.2, 0.45 * n_layers + 1.6)
    height = size * len(rows)
    fig, axes = plt.subplots(len(rows), len(methods), figsize=(size * len(methods) + 1.5, height), squeeze=False)
    fig.subplots_adjust(wspace=0.35, hspace=0.45, top=1 - 1.1 / height)
    for r, metric in enumerate(rows):
        image = None
        for c, method in enumerate(methods):
            part = sel[(sel["method"] == method) & (sel["metric"] == metric)]
            ax = axes[r][c]
            if part.empty:
                ax.axis("off")
                continue
            cmap, (vmin, vmax) = ("viridis", (0.0, 1.0)) if metric == "accuracy" else ("coolwarm", (0.0, 1.0))
            title = f"{LABELS.get(method, method)}\n{metric}" if r == 0 else metric
            image = draw_layer_grid(ax, layer_grid(part), title, ylabel="model A layer" if c == 0 else "", cmap=cmap,
                                    vmin=vmin, vmax=vmax)  # fmt: skip
        if image is not None:
            label = "stitched accuracy" if metric == "accuracy" else "AUROC (0.5 = in distribution)"
            fig.colorbar(image, ax=list(axes[r]), label=label, shrink=0.85)
    n_pairs = sel[["model_a", "model_b"]].drop_duplicates().shape[0]
    label = "within-network (A = B)" if kind == "within" else "cross-seed (A != B)"
    fig.suptitle(f"Stitched accuracy and how out of distribution the stitched representation is, {label}, "
                 f"mean over {n_pairs} model pair(s)", fontsize=11)  # fmt: skip
    return save_figure(fig, path_stem, formats)


def plot_accuracy_vs_ood(df: pd.DataFrame, path_stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """One point per cell and model pair: stitched accuracy against each OOD score, per method
    (filled: within-network, open: cross-seed; the diagonal i = j cells ringed)."""
    metrics = _ood_metrics(df)
    if not metrics:
        raise ValueError("the stitching table holds no OOD score to plot")
    acc = df[df["metric"] == "accuracy"].set_index(["model_a", "model_b", "layer_a", "layer_b", "method"])["value"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 4.2), squeeze=False, sharey=True)
    for ax, metric in zip(axes[0], metrics):
        ood = df[df["metric"] == metric].set_index(["model_a", "model_b", "layer_a", "layer_b", "method"])["value"]
        both = pd.concat({"acc": acc, "ood": ood}, axis=1).dropna().reset_index()
        for method in _methods(both):
            part = both[both["method"] == method]
            within = part["model_a"] == part["model_b"]
            line = ax.scatter(part.loc[within, "ood"], part.loc[within, "acc"], s=18, label=LABELS.get(method, method))
            color = line.get_facecolor()[0]
            ax.scatter(part.loc[~within, "ood"], part.loc[~within, "acc"], s=18, facecolors="none", edgecolors=[color])
            diag = part["layer_a"] == part["layer_b"]
            ax.scatter(part.loc[diag, "ood"], part.loc[diag, "acc"], s=70, facecolors="none", edgecolors="black", lw=0.6)
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(OOD_SCORES[metric])
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("stitched test accuracy")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Stitched accuracy against out-of-distribution score, one point per cell "
                 "(filled: within-network, open: cross-seed, ringed: i = j)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, path_stem, formats)
