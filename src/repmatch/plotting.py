"""Shared figure helpers: the layer x layer heatmap every comparison family draws.

Why one helper: every family (similarity indices, stitching, subspace match) reports a
model-A-layer x model-B-layer grid; drawing them the same way (layer order on both axes,
A on rows, B on columns, same colour scale per method) makes the figures comparable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from .io import atomic_path  # noqa: E402


def layer_grid(table: pd.DataFrame, value: str = "value") -> pd.DataFrame:
    """Pivot a tidy table (one model pair, one method) into a layer_a x layer_b grid.

    Several rows per cell (e.g. several seed pairs) are averaged, which gives the
    seed-averaged grid when the table holds every cross-seed pair.
    """
    if table.empty:
        raise ValueError("cannot draw a layer grid from an empty table")
    grid = table.pivot_table(index=["index_a", "layer_a"], columns=["index_b", "layer_b"], values=value, aggfunc="mean")
    grid = grid.sort_index(axis=0).sort_index(axis=1)
    grid.index = grid.index.get_level_values("layer_a")
    grid.columns = grid.columns.get_level_values("layer_b")
    return grid


def stem(path: str | os.PathLike[str]) -> str:
    """``results/figures/x/name.png`` -> ``results/figures/x/name``: figures are saved in every format from one stem."""
    root, ext = os.path.splitext(str(path))
    return root if ext.lstrip(".") in ("png", "pdf", "svg") else str(path)


#: Resolution of every PNG (the PDF is vector; its images are embedded at this resolution too).
DPI = 150


def freeze_layout(fig: plt.Figure, dpi: float = DPI) -> Bbox:
    """Lay ``fig`` out once and return its tight bounding box (inches, padded as ``bbox_inches="tight"`` pads).

    Runs the figure's layout engine (constrained, or none after a ``fig.tight_layout()``, which has
    placed the axes already) once at the PNG's resolution, then removes the engine so the axes keep
    those positions, and measures the tight box on the same Agg renderer. Saving with
    ``bbox_inches=<this box>`` then costs one draw per format, where ``bbox_inches="tight"`` ran the
    layout and a measuring draw again for every format. The PNG comes out pixel for pixel as before;
    the PDF is laid out and cropped with the PNG's text metrics instead of its own (its page a
    fraction of a point wider or narrower).
    """
    fig.set_dpi(dpi)
    renderer = fig.canvas.get_renderer()  # the Agg canvas (this module selects Agg)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)  # a placeholder engine (after fig.tight_layout()) does nothing
        fig.set_layout_engine(None)  # keep the positions; savefig then skips its layout pass
    return fig.get_tightbbox(renderer).padded(matplotlib.rcParams["savefig.pad_inches"])


def save_figure(
    fig: plt.Figure, path_stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "pdf"), *, tight_per_format: bool = False
) -> list[Path]:
    """Save ``fig`` as ``<stem>.<fmt>`` for each format (cropped to the figure's tight box), atomically, and close it.

    The layout and the tight box are computed once (:func:`freeze_layout`). ``tight_per_format=True``
    is the former way (``bbox_inches="tight"``: layout, measuring draw and draw for every format),
    kept as the baseline of ``benchmarks/bench_figures.py``.
    """
    agg = hasattr(fig.canvas, "get_renderer")  # a figure on another backend's canvas is saved the former way
    bbox = freeze_layout(fig) if agg and not tight_per_format else "tight"
    paths = []
    for fmt in formats:
        final = Path(f"{path_stem}.{fmt}")
        with atomic_path(final) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches=bbox)
        paths.append(final)
    plt.close(fig)
    return paths


def draw_layer_grid(
    ax: plt.Axes,
    grid: pd.DataFrame,
    title: str = "",
    xlabel: str = "model B layer",
    ylabel: str = "model A layer",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    annotate: bool = True,
) -> matplotlib.image.AxesImage:
    """Draw ``grid`` as a heatmap on ``ax`` (rows = A layers top to bottom, columns = B layers)."""
    values = grid.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(values.shape[1]), [str(c) for c in grid.columns], rotation=45, ha="right")
    ax.set_yticks(range(values.shape[0]), [str(r) for r in grid.index])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # y=1.0 is where matplotlib's automatic placement puts a title over bottom ticks; given, it is not
    # recomputed (measuring every tick label again) at each layout pass and draw
    ax.set_title(title, fontsize=10, y=1.0)
    if annotate and values.size <= 400:
        lo, hi = np.nanmin(values), np.nanmax(values)
        mid = (lo + hi) / 2
        # the labels sit inside their cells, so inside the axes: left out of the layout's and the tight box's
        # measuring (which would otherwise lay out every one of them at each pass), drawn all the same
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="black" if v > mid else "white", in_layout=False
                )
    return image


def plot_layer_grid(
    grid: pd.DataFrame,
    path_stem: str | os.PathLike[str],
    title: str = "",
    xlabel: str = "model B layer",
    ylabel: str = "model A layer",
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar_label: str = "",
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """One heatmap figure of a layer grid, saved as PNG and PDF (atomically)."""
    size = max(4.0, 0.55 * max(grid.shape) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = draw_layer_grid(ax, grid, title, xlabel, ylabel, cmap, vmin, vmax)
    fig.colorbar(image, ax=ax, label=colorbar_label)
    return save_figure(fig, path_stem, formats)
