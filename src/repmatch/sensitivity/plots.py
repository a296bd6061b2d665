"""Figures of the sensitivity test (torch-free): per-layer curves and the sensitivity-specificity summary.

Per network: one panel per layer, the functional scores (probe and network accuracy, solid) and every
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


def plot_sensitivity_specificity(summary: pd.DataFrame, path_stem: str | os.PathLike[str], *, by_layer: pd.DataFrame,
                                 points: pd.DataFrame, gap: str = "probe", kind: str = "within",
                                 formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Specificity per layer with its interval, sensitivity beside it, and each layer's raw points.

    Top left: per method, each layer's Spearman over its seed pairs (coloured by layer, jackknife
    interval over networks) and their mean (black bar, its jackknife interval); a method with no
    defined layer is named at the bottom with the reason. Top right: sensitivity (mean over units
    of ``sens_<kind>_<gap>``, t interval) against that mean. Bottom: one panel per layer, the raw
    points: the functional gap (x) and each method's distance (y, min-max scaled within the layer
    so every method spans [0, 1]; Spearman only sees the order). No panel mixes layers in a statistic.
    """
    if summary.empty:
        raise ValueError("cannot draw the sensitivity-specificity figure from an empty summary")
    methods = list(summary["method"])
    layers = list(dict.fromkeys(by_layer["layer"])) if len(by_layer) else []
    lcmap = plt.get_cmap("viridis")
    lcolor = {layer: lcmap(k / max(len(layers) - 1, 1) * 0.85) for k, layer in enumerate(layers)}
    mcmap = plt.get_cmap("tab20")
    mcolor = {m: mcmap(k % 20) for k, m in enumerate(methods)}
    n_bottom = max(len(layers), 1)
    fig = plt.figure(figsize=(max(13.0, 3.0 * n_bottom + 2.5), 8.6))
    grid = fig.add_gridspec(2, n_bottom * 2, height_ratios=(1.25, 1.0))
    ax = fig.add_subplot(grid[0, : max(n_bottom * 2 - 2, 1) if n_bottom > 1 else 1])
    axs = fig.add_subplot(grid[0, -2:] if n_bottom > 1 else grid[0, 1])
    sel = by_layer[by_layer["gap"] == gap] if len(by_layer) else by_layer
    undefined = []
    width = 0.7
    for x, row in enumerate(summary.itertuples(index=False)):
        r = row._asdict()
        for k, layer in enumerate(layers):
            h = sel[(sel["method"] == r["method"]) & (sel["layer"] == layer)]
            if h.empty or not np.isfinite(h["spearman"].iloc[0]):
                continue
            v = float(h["spearman"].iloc[0])
            xx = x - width / 2 + width * (k + 0.5) / len(layers)
            ax.errorbar(xx, v, yerr=_err(v, h["spearman_low"].iloc[0], h["spearman_high"].iloc[0]),
                        fmt=FAMILY_MARKERS.get(r["family"], "o"), color=lcolor[layer], ms=5, elinewidth=0.8, capsize=1.5)
        m = r[f"spec_{gap}"]
        if np.isfinite(m):
            ax.hlines(m, x - width / 2, x + width / 2, color="k", lw=2)
            e = _err(m, r[f"spec_{gap}_low"], r[f"spec_{gap}_high"])
            if e is not None:
                ax.add_patch(plt.Rectangle((x - width / 2, m - e[0][0]), width, e[0][0] + e[1][0], color="k", alpha=0.12, lw=0))
        else:
            undefined.append(f"{r['method']}: {r[f'spec_{gap}_reason']}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_ylim(-1.1, 1.1)
    ax.set_ylabel(f"specificity: Spearman with the {gap}-accuracy gap\nover the seed pairs of one layer")
    ax.set_title("per layer (colour; jackknife interval over networks) and their mean (black, shaded interval)", fontsize=9)
    handles = [plt.Line2D([], [], color=lcolor[layer], marker="o", ls="", label=layer) for layer in layers]
    ax.legend(handles=handles, fontsize=7, loc="upper right", frameon=False, ncol=len(layers) or 1)
    if undefined:
        ax.text(0.01, 0.01, "undefined:\n" + "\n".join(sorted(set(undefined))[:6]), transform=ax.transAxes, fontsize=6,
                va="bottom")
    col = f"sens_{kind}_{gap}"
    for row in summary.itertuples(index=False):
        r = row._asdict()
        x, y = r.get(col, np.nan), r[f"spec_{gap}"]
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        axs.errorbar(x, y, xerr=_err(x, r[f"{col}_low"], r[f"{col}_high"]),
                     yerr=_err(y, r[f"spec_{gap}_low"], r[f"spec_{gap}_high"]), fmt=FAMILY_MARKERS.get(r["family"], "o"),
                     color=mcolor[r["method"]], ms=6, elinewidth=0.8, capsize=2, label=r["method"])
    axs.axhline(0, color="0.7", lw=0.8)
    axs.axvline(0, color="0.7", lw=0.8)
    axs.set_xlim(-1.1, 1.1)
    axs.set_ylim(-1.1, 1.1)
    axs.set_xlabel(f"sensitivity ({kind}): Spearman with the {gap}-accuracy drop", fontsize=8)
    axs.set_ylabel("specificity: mean over layers", fontsize=8)
    axs.set_title("sensitivity vs specificity", fontsize=9)
    pts = points[np.isfinite(points["distance"])] if len(points) else points
    for k, layer in enumerate(layers):
        axp = fig.add_subplot(grid[1, 2 * k : 2 * k + 2])
        g = pts[pts["layer"] == layer]
        for m in methods:
            gm = g[g["method"] == m]
            if gm.empty:
                continue
            d = gm["distance"].to_numpy(dtype=float)
            span = np.ptp(d)
            y = (d - d.min()) / span if span > 0 else np.full_like(d, 0.5)
            axp.plot(gm[f"{gap}_gap"], y, FAMILY_MARKERS.get(method_family_of(summary, m), "o"), color=mcolor[m], ms=3,
                     alpha=0.8, ls="")
        n_pairs = g[["model_a", "model_b"]].drop_duplicates().shape[0]
        axp.set_title(f"{layer}: {n_pairs} seed pairs", fontsize=9)
        axp.set_xlabel(f"|{gap} accuracy A - B|", fontsize=8)
        if k == 0:
            axp.set_ylabel("distance, scaled per method", fontsize=8)
        axp.tick_params(labelsize=7)
    mh = [plt.Line2D([], [], color=mcolor[m], marker=FAMILY_MARKERS.get(f, "o"), ls="", ms=6, label=m)
          for m, f in zip(summary["method"], summary["family"])]
    fig.legend(handles=mh, loc="center right", fontsize=7, frameon=False)
    fig.suptitle("Do the indices track function across seeds, within a layer? (Ding et al. 2021's specificity)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 1.7 / fig.get_figwidth(), 1))
    return save_figure(fig, path_stem, formats)


def method_family_of(summary: pd.DataFrame, method: str) -> str:
    """The summary's family of ``method`` (``index`` when it is not listed)."""
    hit = summary.loc[summary["method"] == method, "family"]
    return str(hit.iloc[0]) if len(hit) else "index"


def _err(v: float, lo: float, hi: float) -> list[list[float]] | None:
    """Error-bar lengths (never negative: a correlation of exactly +-1 has a rounding-wide interval)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    return [[max(v - lo, 0.0)], [max(hi - v, 0.0)]]
