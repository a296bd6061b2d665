"""Per-layer curves of the sensitivity test (torch-free; not yet wired into a rule).

One panel per layer: the functional scores (probe and network accuracy, solid) and every
index's dissimilarity rank-r vs full (dashed, right axis) against the rank (log2 axis, full rank
on the left). A sensitive index rises where the accuracies fall.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import plt, save_figure

FUNCTIONAL = ("probe_accuracy", "network_accuracy")


def plot_rank_curves(table: pd.DataFrame, path_stem: str | os.PathLike[str], *, model: str | None = None,
                     methods: Sequence[str] | None = None, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Draw one network's curves from a ``COLUMNS["sensitivity"]`` table; returns the files written."""
    if table.empty:
        raise ValueError("cannot draw sensitivity curves from an empty table")
    model = table["model"].iloc[0] if model is None else model
    t = table[table["model"] == model]
    layers = t.sort_values("index")["layer"].unique().tolist()
    index_methods = [m for m in (methods or t["method"].unique()) if m not in FUNCTIONAL]
    ncol = min(3, len(layers))
    nrow = int(np.ceil(len(layers) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
    cmap = plt.get_cmap("tab10" if len(index_methods) <= 10 else "tab20")
    for k, layer in enumerate(layers):
        ax = axes[k // ncol][k % ncol]
        g = t[t["layer"] == layer]
        for fn, style in zip(FUNCTIONAL, ("k-o", "k-s")):
            s = g[g["method"] == fn].sort_values("rank")
            ax.plot(s["rank"], s["value"], style, ms=3, label=fn)
        ax.set_xscale("log", base=2)
        ax.invert_xaxis()
        ax.set_ylim(0, 1.02)
        ax.set_title(layer)
        ax.set_xlabel("rank r")
        if k % ncol == 0:
            ax.set_ylabel("accuracy")
        ax2 = ax.twinx()
        for j, m in enumerate(index_methods):
            s = g[g["method"] == m].sort_values("rank")
            ax2.plot(s["rank"], s["dissimilarity"], "--", color=cmap(j), lw=1, label=m)
        if k % ncol == ncol - 1 or k == len(layers) - 1:
            ax2.set_ylabel("dissimilarity (rank r vs full)")
    for k in range(len(layers), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    h1, l1 = axes[0][0].get_legend_handles_labels()
    h2, l2 = fig.axes[-1].get_legend_handles_labels() if index_methods else ([], [])
    fig.legend(h1 + h2, l1 + l2, loc="lower center", ncol=min(6, len(l1) + len(l2)), fontsize=7, bbox_to_anchor=(0.5, -0.02 - 0.03 * nrow))
    fig.suptitle(f"{model}: functional scores and index dissimilarity vs rank")
    fig.tight_layout()
    return save_figure(fig, path_stem, formats)
