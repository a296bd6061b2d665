"""The seed paper's analyses of stitching grids, as pure table -> table functions.

* "more similar than itself": for B layer j, how many A layers i != j give a *higher* stitched
  score into j than layer j itself (i = j, the same-named layer of A). Within a network, the
  i = j stitch is the identity up to the fit, so a count > 0 means the method calls another
  layer more similar to j than j is to itself -- a red flag for the method, which the paper
  shows TLM raises and DM does not.
* accuracy vs layer distance: the score as a function of ``index_b - index_a``; a similarity
  measure should decay away from 0, which DM does and TLM much less.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["model_a", "model_b", "method"]


def _kind(df: pd.DataFrame) -> pd.Series:
    return np.where(df["model_a"] == df["model_b"], "within", "cross")


def _select(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    missing = {"model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b", "method", "metric", "value"} - set(df.columns)
    if missing:
        raise ValueError(f"stitching table lacks columns {sorted(missing)}")
    sel = df[df["metric"] == metric]
    if sel.empty:
        raise ValueError(f"stitching table has no rows for metric {metric!r}; metrics present: {sorted(df['metric'].unique())}")
    return sel


def more_similar_than_itself(df: pd.DataFrame, metric: str = "accuracy", tol: float = 0.0) -> pd.DataFrame:
    """One row per (model pair, method, B layer j): the i = j score and the layers i != j beating it by > ``tol``.

    Cells whose B layer has no same-named A layer in the grid are skipped (no "itself").
    """
    sel = _select(df, metric)
    rows = []
    for (ma, mb, method, lb), grp in sel.groupby(KEYS + ["layer_b"], sort=False):
        own = grp[grp["layer_a"] == lb]
        if own.empty:
            continue
        self_value = float(own["value"].iloc[0])
        others = grp[grp["layer_a"] != lb].sort_values("index_a")
        better = others[others["value"] > self_value + tol]
        rows.append({
            "model_a": ma, "model_b": mb, "kind": "within" if ma == mb else "cross", "method": method,
            "layer_b": lb, "index_b": int(grp["index_b"].iloc[0]), "metric": metric, "self_value": self_value,
            "n_more_similar": len(better), "n_candidates": len(others),
            "best_other_value": float(others["value"].max()) if len(others) else float("nan"),
            "more_similar_layers": ";".join(better["layer_a"]),
        })
    out = pd.DataFrame(rows)
    return out.sort_values(["kind", "method", "model_a", "model_b", "index_b"], ignore_index=True) if len(out) else out


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


def summary_counts(more: pd.DataFrame) -> pd.DataFrame:
    """Total "more similar than itself" counts per (kind, method), averaged over model pairs."""
    if more.empty:
        return pd.DataFrame(columns=["kind", "method", "pairs", "total", "mean_per_pair"])
    g = more.groupby(["kind", "method", "model_a", "model_b"])["n_more_similar"].sum().reset_index()
    return (
        g.groupby(["kind", "method"])["n_more_similar"].agg(pairs="count", total="sum", mean_per_pair="mean").reset_index()
    )
