"""Tidy long tables of subspace-match results (one row per observation).

Two observational units, hence two tables:

* matches (``results/subspace/pairs/{pair}.parquet``): one row per (layer pair, method, ε),
  with the chance level of the same sweep against coordinate-permuted B (``chance_value``,
  ``chance_std`` over draws and permutations).
  ``method = maximum_match``: ``value`` = maximum-match similarity (|X*|+|Y*|)/(d_A+d_B),
  averaged over the coordinate draws (``value_std``, ``repeats``; ``ci_low, ci_high``: t interval
  of that mean over the draws, :func:`repmatch.uncertainty.t_interval_from_summary`, which covers
  the random coordinate draws only, not the probe set or the seeds). ``method =
  whole_layer_match``: ``value`` = the smallest ε at which the whole live layers match (``eps``
  is NaN there).
* simple matches (``results/subspace/pairs/{pair}.simple.parquet``): one row per distinct
  simple match, ``value`` = its size |X|+|Y|, plus ``size_a``, ``size_b`` and the neuron
  indices as comma-separated strings.
"""

from __future__ import annotations

import numpy as np

from ..uncertainty.intervals import t_interval_from_summary
from .compare import LayerPairResult

def match_rows(key: dict, res: LayerPairResult, *, level: float) -> list[dict]:
    """Rows of the matches table for one layer pair (intervals over the draws at ``level``)."""
    common = {**key, "repeats": res.repeats, "n_coords": res.n_coords, "d_a": res.d_a, "d_b": res.d_b,
              "live_a": float(np.mean(res.live_a)), "live_b": float(np.mean(res.live_b))}  # fmt: skip
    rows = [{**common, "method": "whole_layer_match", "eps": np.nan, "value": float(np.mean(res.whole_layer_eps)),
             "value_std": float(np.std(res.whole_layer_eps)), "matched_a": np.nan, "matched_b": np.nan,
             **_chance(res.chance_whole_layer_eps)}]  # fmt: skip
    for e in res.eps:
        rows.append({**common, "method": "maximum_match", "eps": float(e), "value": float(np.mean(res.similarity[e])),
                     "value_std": float(np.std(res.similarity[e])), "matched_a": float(np.mean(res.matched_a[e])),
                     "matched_b": float(np.mean(res.matched_b[e])), **_chance(res.chance_similarity.get(e, []))})  # fmt: skip
    for row in rows:
        row.update(draw_interval(row["value"], row["value_std"], res.repeats, level=level))
    return rows


def draw_interval(mean: float, std: float, repeats: int, *, level: float) -> dict:
    """``ci_low, ci_high``: t interval of a mean over ``repeats`` coordinate draws from its ``np.std``
    (ddof = 0, as stored); NaN with one draw (no spread to estimate)."""
    if repeats < 2:
        return {"ci_low": np.nan, "ci_high": np.nan}
    lo, hi = t_interval_from_summary(np.asarray(mean), np.asarray(std), np.asarray(repeats), level=level, ddof=0)
    return {"ci_low": float(lo), "ci_high": float(hi)}


def _chance(values: list[float]) -> dict:
    """``chance_value`` / ``chance_std``: mean and spread over every (draw, permutation); NaN when off."""
    if not values:
        return {"chance_value": np.nan, "chance_std": np.nan}
    return {"chance_value": float(np.mean(values)), "chance_std": float(np.std(values))}


def simple_rows(key: dict, res: LayerPairResult) -> list[dict]:
    """Rows of the simple-match table for one layer pair."""
    return [
        {**key, "method": "simple_match", "eps": float(res.simple_eps), "repeat": int(r), "value": s.size,
         "size_a": len(s.a), "size_b": len(s.b), "neurons_a": ",".join(map(str, s.a)), "neurons_b": ",".join(map(str, s.b)),
         "found_from": s.found_from, "n_coords": res.n_coords, "d_a": res.d_a, "d_b": res.d_b,
         "mode": res.simple_mode, "complete": bool(res.simple_complete[r])}  # fmt: skip
        for r, s in res.simple
    ]
