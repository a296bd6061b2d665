"""Ding et al.'s sensitivity: does an index's dissimilarity rise as the functional score drops?

For one layer, rank r gives (dissimilarity d_r of the rank-r vs the full representation, drop in
functional score f_full - f_r). A sensitive index orders the ranks like the drop does: its rank
correlation (Spearman rho, Kendall tau-b, scipy) with the drop is high. "Pooled" correlates over
all (layer, rank) points at once, so an index must also order the *layers* by how much they lose.

An index that is constant over the points (or a functional score that never changes) carries no
ordering at all: the correlation is undefined, and it is NaN with a :class:`ConstantInputWarning`
rather than a number. Constancy is decided explicitly, up to ``atol`` (default 1e-9): an index
that is 1 up to rounding at every rank (CCA between a full and a rank-deficient representation
gives 1 - 1e-13 .. 1 + 4e-16) would otherwise be ranked by its rounding noise and get a
meaningless "correlation" (scipy only catches exactly constant input). Dissimilarities of the
bounded indices and accuracy drops (resolution 1 / n_test) are far above 1e-9.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: The functional scores whose drop an index must track: a linear probe's accuracy on the rank-r
#: representation, and the network's own accuracy with the rank-r layer fed forward.
FUNCTIONAL = ("probe_accuracy", "network_accuracy")


class ConstantInputWarning(UserWarning):
    """A sensitivity correlation was asked of an index (or score) that does not vary: it is NaN."""


CORRELATION_COLUMNS = ["method", "scope", "layer", "n_points", "spearman", "spearman_p", "kendall", "kendall_p"]


DEFAULT_ATOL = 1e-9


def rank_correlations(dissimilarity: Sequence[float], drop: Sequence[float], *, what: str = "index",
                      atol: float = DEFAULT_ATOL) -> dict[str, float]:
    """Spearman and Kendall (tau-b) correlation of ``dissimilarity`` with ``drop`` (same length).

    Points where either is NaN are dropped. Fewer than 3 points, or a constant side (max - min <=
    ``atol``), give NaN for every statistic and a :class:`ConstantInputWarning` naming ``what``.
    """
    d = np.asarray(dissimilarity, dtype=np.float64)
    f = np.asarray(drop, dtype=np.float64)
    if d.shape != f.shape or d.ndim != 1:
        raise ValueError(f"dissimilarity and drop must be 1-d of one length, got {d.shape} and {f.shape}")
    ok = np.isfinite(d) & np.isfinite(f)
    d, f = d[ok], f[ok]
    nan = {"n_points": int(d.size), "spearman": np.nan, "spearman_p": np.nan, "kendall": np.nan, "kendall_p": np.nan}
    if d.size < 3:
        warnings.warn(f"{what}: only {d.size} finite point(s); the rank correlation is NaN", ConstantInputWarning, stacklevel=2)
        return nan
    for arr, side in ((d, "the index's dissimilarity"), (f, "the functional drop")):
        if float(arr.max() - arr.min()) <= atol:
            warnings.warn(f"{what}: {side} is constant over {arr.size} points; the rank correlation is NaN",
                          ConstantInputWarning, stacklevel=2)
            return nan
    from scipy import stats  # here, not at import: ~0.7 s that the pair jobs importing this module never need

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # decided above
        sp = stats.spearmanr(d, f)
        kd = stats.kendalltau(d, f)
    return {"n_points": int(d.size), "spearman": float(sp.statistic), "spearman_p": float(sp.pvalue),
            "kendall": float(kd.statistic), "kendall_p": float(kd.pvalue)}


def sensitivity_correlations(table: pd.DataFrame, *, score_column: str = "drop", atol: float = DEFAULT_ATOL) -> pd.DataFrame:
    """Per method: the correlation within each layer (over ranks) and pooled over layers.

    ``table`` holds one row per (method, layer, rank) with columns ``method``, ``layer``,
    ``dissimilarity`` and ``score_column`` (the drop in a functional score). Returns
    :data:`CORRELATION_COLUMNS` rows: ``scope`` is ``"layer"`` (``layer`` named) or ``"pooled"``
    (``layer`` empty).
    """
    missing = {"method", "layer", "dissimilarity", score_column} - set(table.columns)
    if missing:
        raise ValueError(f"table lacks columns {sorted(missing)}")
    rows = []
    for method, g in table.groupby("method", sort=False):
        for layer, gl in g.groupby("layer", sort=False):
            r = rank_correlations(gl["dissimilarity"], gl[score_column], what=f"{method} at {layer}", atol=atol)
            rows.append({"method": method, "scope": "layer", "layer": layer, **r})
        r = rank_correlations(g["dissimilarity"], g[score_column], what=f"{method} pooled over layers", atol=atol)
        rows.append({"method": method, "scope": "pooled", "layer": "", **r})
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)
