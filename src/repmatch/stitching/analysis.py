"""The seed paper's analysis of stitching grids that is specific to stitching, as a pure table ->
table function ("more similar than itself" and specificity are cross-family: :mod:`repmatch.sanity`).

* accuracy vs layer distance: the score as a function of ``index_b - index_a``; a similarity
  measure should decay away from 0, which DM does and TLM much less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..tables import KEY_COLUMNS


def _kind(df: pd.DataFrame) -> pd.Series:
    return np.where(df["model_a"] == df["model_b"], "within", "cross")


def _select(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    missing = {*KEY_COLUMNS, "method", "metric", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"stitching table lacks columns {sorted(missing)}")
    sel = df[df["metric"] == metric]
    if sel.empty:
        raise ValueError(f"stitching table has no rows for metric {metric!r}; metrics present: {sorted(df['metric'].unique())}")
    return sel


def accuracy_vs_layer_distance(df: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Score statistics per (kind, method, distance = index_b - index_a) over every cell and pair."""
    sel = _select(df, metric).assign(kind=lambda d: _kind(d), distance=lambda d: d["index_b"] - d["index_a"])
    out = (
        sel.groupby(["kind", "method", "distance"])["value"]
        .agg(mean="mean", std="std", min="min", max="max", n="count")
        .reset_index()
    )
    out.insert(3, "metric", metric)
    return out.sort_values(["kind", "method", "distance"], ignore_index=True)
