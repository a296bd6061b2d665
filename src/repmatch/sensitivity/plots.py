"""Figures of the sensitivity test (torch-free): per-layer curves and the sensitivity-specificity summary.

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
from .correlation import FUNCTIONAL



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
    # beside the panels, not below: a legend under them covered the axes' labels
    fig.legend(h1 + h2, l1 + l2, loc="center right", fontsize=7, frameon=False)
    fig.suptitle(f"{model}: functional scores and index dissimilarity vs rank")
    fig.tight_layout(rect=(0, 0, 1 - 1.6 / fig.get_figwidth(), 1))
    return save_figure(fig, path_stem, formats)


FAMILY_MARKERS = {"index": "o", "dm": "s", "tlm": "D"}
KIND_TITLES = {"within": "within a network: A rank r vs A", "cross": "across seeds: A rank r vs B"}


def plot_sensitivity_specificity(summary: pd.DataFrame, path_stem: str | os.PathLike[str], *, functional: str = "probe",
                                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Every index, DM and TLM on sensitivity (x) and specificity (y), one panel per pair kind.

    x: mean over units of the Spearman correlation between the method's dissimilarity and the
    drop in ``functional`` accuracy (``sens_<kind>_<functional>``) with its t interval; y: the
    specificity Spearman (``spec``) with its Fisher interval. Up and right is better. One colour
    per method (legend), one marker per family (circle: index, square: DM, diamond: TLM); a
    method whose sensitivity is undefined (constant) is listed under the panel, not drawn, and one
    whose specificity is undefined is drawn hollow at the bottom edge.
    """
    if summary.empty:
        raise ValueError("cannot draw the sensitivity-specificity figure from an empty summary")
    kinds = [k for k in ("within", "cross") if summary[f"sens_{k}_{functional}"].notna().any()] or ["within"]
    methods = list(summary["method"])
    cmap = plt.get_cmap("tab20")
    colors = {m: cmap(k % 20) for k, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.2 * len(kinds) + 2.2, 5.0), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        col = f"sens_{kind}_{functional}"
        missing = []
        for row in summary.itertuples(index=False):
            r = row._asdict()
            x, y = r[col], r["spec"]
            if not np.isfinite(x):
                missing.append(r["method"])
                continue
            marker = FAMILY_MARKERS.get(r["family"], "o")
            y_plot = y if np.isfinite(y) else -1.05
            ax.errorbar(x, y_plot, xerr=_err(x, r[f"{col}_low"], r[f"{col}_high"]),
                        yerr=_err(y, r["spec_low"], r["spec_high"]) if np.isfinite(y) else None, fmt=marker,
                        color=colors[r["method"]], ms=7, elinewidth=0.8, capsize=2, alpha=0.9,
                        mfc=colors[r["method"]] if np.isfinite(y) else "white")
        ax.axhline(0, color="0.7", lw=0.8)
        ax.axvline(0, color="0.7", lw=0.8)
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.set_xlabel(f"sensitivity: Spearman with the {functional}-accuracy drop\n(mean over networks / pairs, t interval)")
        ax.set_ylabel("specificity: Spearman with the probe-accuracy gap\nof corresponding layers across seeds (Fisher interval)")
        ax.set_title(KIND_TITLES[kind], fontsize=10)
        if missing:
            ax.text(0.01, 0.01, "undefined (constant):\n" + ", ".join(missing), transform=ax.transAxes, fontsize=7, va="bottom")
    handles = [plt.Line2D([], [], color=colors[m], marker=FAMILY_MARKERS.get(f, "o"), ls="", ms=7, label=m)
               for m, f in zip(summary["method"], summary["family"])]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.suptitle("Do the indices track function? Sensitivity vs specificity (Ding et al. 2021)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    return save_figure(fig, path_stem, formats)


def _err(v: float, lo: float, hi: float) -> list[list[float]] | None:
    """Error-bar lengths (never negative: a correlation of exactly +-1 has a rounding-wide interval)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]
