"""Figures of the subspace stage: maximum-match similarity vs ε per layer, and the size
distribution of simple matches (the two summaries of Wang et al. 2018)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import plt, save_figure
from ..uncertainty.intervals import t_interval_from_summary


def corresponding_rows(table: pd.DataFrame, method: str) -> pd.DataFrame:
    """Rows comparing a layer with the same layer of a *different* network (the paper's setting);
    falls back to same-layer rows of any pair when only within-network pairs were computed."""
    rows = table[(table["method"] == method) & (table["layer_a"] == table["layer_b"])]
    across = rows[rows["model_a"] != rows["model_b"]]
    return across if not across.empty else rows


def _message_figure(text: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    return fig


def plot_max_match_vs_eps(table: pd.DataFrame, path_stem: str | os.PathLike[str], *, level: float) -> list[Path]:
    """One line per layer: maximum-match similarity against ε, the mean over network pairs with a
    band = its ``level`` t interval over the pairs (with one pair: the table's interval over the
    coordinate draws, ``ci_low, ci_high``), the number of pairs in the
    title, and the chance level (A against coordinate-permuted B) as a dashed line and light band
    (± std) in the same colour."""
    rows = corresponding_rows(table, "maximum_match")
    if rows.empty:
        return save_figure(_message_figure("no maximum-match results for corresponding layers"), path_stem)
    stats = rows.groupby(["index_a", "layer_a", "eps"]).agg(
        mean=("value", "mean"), std=("value", "std"), count=("value", "count"), chance=("chance_value", "mean"),
        chance_std=("chance_std", "mean"),
    ).reset_index()
    stats["ci_low"], stats["ci_high"] = t_interval_from_summary(stats["mean"].to_numpy(), stats["std"].to_numpy(),
                                                                stats["count"].to_numpy(), level=level, ddof=1)  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 4.3))
    n_pairs = rows.groupby(["model_a", "model_b"]).ngroups
    if n_pairs == 1 and {"ci_low", "ci_high"} <= set(rows.columns):  # one pair: the interval over its coordinate draws
        draws = rows.groupby(["index_a", "layer_a", "eps"])[["ci_low", "ci_high"]].mean().reset_index()
        stats = stats.drop(columns=["ci_low", "ci_high"]).merge(draws, on=["index_a", "layer_a", "eps"])
    for (_, layer), g in stats.groupby(["index_a", "layer_a"], sort=True):
        g = g.sort_values("eps")
        line = ax.plot(g["eps"], g["mean"], marker="o", label=str(layer))
        color = line[0].get_color()
        if g["ci_low"].notna().any():
            ax.fill_between(g["eps"], g["ci_low"], g["ci_high"], color=color, alpha=0.25, lw=0)
        if g["chance"].notna().any():
            ax.plot(g["eps"], g["chance"], ls="--", lw=1, color=color)
            ax.fill_between(g["eps"], g["chance"] - g["chance_std"], g["chance"] + g["chance_std"], color=color, alpha=0.12)
    ax.set_xlabel("ε")
    ax.set_ylabel("maximum-match similarity (|X*|+|Y*|)/(d_A+d_B)")
    ax.set_ylim(-0.02, 1.02)
    chance = " ; dashed: chance (B's coordinates permuted)" if stats["chance"].notna().any() else ""
    if stats["chance"].notna().any():
        top = float((stats["chance"] + stats["chance_std"].fillna(0.0)).max())
        ax.set_xlabel(f"ε    (chance level ≤ {top:.3f} at every ε shown)")
    band = (f"band: {level:.0%} t interval over pairs" if n_pairs > 1
            else f"one pair; band: {level:.0%} t interval over its coordinate draws")  # fmt: skip
    ax.set_title(f"Subspace match of corresponding layers, mean over {n_pairs} network pair(s)\n({band}{chance})", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(title="layer", fontsize=8, loc="upper left")
    return save_figure(fig, path_stem)


def plot_simple_match_sizes(simple: pd.DataFrame, path_stem: str | os.PathLike[str]) -> list[Path]:
    """Histogram of simple-match sizes |X|+|Y|, one panel per layer (corresponding layers)."""
    rows = corresponding_rows(simple, "simple_match") if not simple.empty else simple
    if rows.empty:
        return save_figure(_message_figure("no simple matches (empty maximum matches at the chosen ε,\nor simple matches disabled)"), path_stem)
    eps = ", ".join(f"{e:g}" for e in sorted(rows["eps"].unique()))
    layers = rows[["index_a", "layer_a"]].drop_duplicates().sort_values("index_a")["layer_a"].tolist()
    ncols = min(3, len(layers))
    nrows = int(np.ceil(len(layers) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    top = int(rows["value"].max())
    bins = np.arange(1.5, top + 1.5) if top >= 2 else np.array([0.5, 2.5])
    for ax, layer in zip(axes.flat, layers):
        sizes = rows.loc[rows["layer_a"] == layer, "value"].to_numpy()
        ax.hist(sizes, bins=bins, color="tab:blue", edgecolor="white")
        ax.set_title(f"{layer} ({len(sizes)} matches)", fontsize=9)
        ax.set_xlabel("simple-match size |X|+|Y|")
        ax.set_ylabel("count")
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(f"Simple-match sizes at ε = {eps} (all network pairs)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path_stem)
