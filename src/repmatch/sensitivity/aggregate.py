"""Sensitivity over seeds with intervals, the specificity test, and the one summary table.

* **Sensitivity per unit** (:func:`unit_correlations`): a unit is one ordered network pair
  (A, B) of the pair jobs (``within`` when A = B, else ``cross``); the measures' and DM's
  within rows come from the network jobs when no within pair job ran (:func:`within_from_networks`). For each method (every
  measure, ``dm_accuracy``, ``dm_repr_diff``, ``tlm_accuracy``, ``tlm_repr_diff``) the rank
  correlation of its ``dissimilarity`` (how much further from B's layer the rank-r front of A's
  layer is than the full-rank one) with the drop of A's functional score at that (layer, rank)
  (``probe_accuracy`` / ``network_accuracy`` from A's network table), pooled over every
  (layer, rank) and per layer.
* **Sensitivity over seeds** (:func:`sensitivity_over_units`): per (kind, functional, method)
  the mean of the units' pooled Spearman (and Kendall) with a Student-t interval over units
  (:func:`repmatch.uncertainty.intervals.t_interval`; one unit: no interval).
* **Specificity** (Ding et al.): :mod:`.specificity` — per layer over the seed pairs of that
  layer, combined only by the mean of the per-layer correlations (never over points of
  different layers); its stratified rows enter the summary here.
* **Summary** (:func:`summary_table`): one row per method with both, beside Kornblith's
  "does layer i match its counterpart best" accuracy from ``results/sanity/specificity.csv``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .correlation import FUNCTIONAL, ConstantInputWarning, sensitivity_correlations
from .specificity import summary_columns

STITCH_SCORES = ("dm_accuracy", "dm_repr_diff", "tlm_accuracy", "tlm_repr_diff")
UNIT_COLUMNS = ["model_a", "model_b", "kind", "functional", "method", "scope", "layer", "n_points", "spearman", "spearman_p",
                "kendall", "kendall_p"]  # fmt: skip
#: the sanity table's (family, method, metric) of each score, for the counterpart-best columns
SANITY_KEYS = {"dm_accuracy": ("stitching", "dm", "accuracy"), "dm_repr_diff": ("stitching", "dm", "repr_diff"),
               "tlm_accuracy": ("stitching", "tlm", "accuracy"), "tlm_repr_diff": ("stitching", "tlm", "repr_diff")}


def method_family(method: str) -> str:
    """``dm``, ``tlm`` or ``index`` (a similarity measure)."""
    return method.split("_", 1)[0] if method in STITCH_SCORES else "index"


def within_from_networks(pairs: pd.DataFrame, networks: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` plus A -> A rows taken from the network tables where no within pair job ran them.

    The network job already compares each layer's rank-r with its full representation by every
    measure and by DM (rank r -> full), which is exactly what a within pair job computes for them
    (same dissimilarity); only TLM needs the pair job. A within pair table, when present, wins.
    """
    have = set(zip(pairs["model_a"][pairs["model_a"] == pairs["model_b"]], pairs["method"][pairs["model_a"] == pairs["model_b"]]))
    extra = networks[~networks["method"].isin(list(FUNCTIONAL))]
    extra = extra[[(m, meth) not in have for m, meth in zip(extra["model"], extra["method"])]]
    if extra.empty:
        return pairs
    rows = pd.DataFrame({"model_a": extra["model"], "model_b": extra["model"], "layer": extra["layer"], "index": extra["index"],
                         "rank": extra["rank"], "full_rank": extra["full_rank"], "variance_kept": extra["variance_kept"],
                         "method": extra["method"], "value": extra["value"], "distance": np.nan,
                         "dissimilarity": extra["dissimilarity"], "b_accuracy": np.nan})  # fmt: skip
    return pd.concat([pairs, rows], ignore_index=True) if len(pairs) else rows


def unit_correlations(pairs: pd.DataFrame, networks: pd.DataFrame) -> pd.DataFrame:
    """Per unit (model_a, model_b), functional score and method: pooled and per-layer correlations.

    ``pairs``: concatenated ``COLUMNS["sensitivity_pair"]`` tables; ``networks``: concatenated
    ``COLUMNS["sensitivity"]`` tables (A's functional drops). Undefined correlations are NaN
    with a :class:`ConstantInputWarning`.
    """
    keys = ["layer", "rank"]
    out = []
    for (a, b), g in pairs.groupby(["model_a", "model_b"], sort=False):
        net = networks[networks["model"] == a]
        if net.empty:
            raise ValueError(f"no sensitivity network table for {a}, which the pair {a} -> {b} needs")
        for fn in FUNCTIONAL:
            drop = net[net["method"] == fn][keys + ["dissimilarity"]].rename(columns={"dissimilarity": "drop"})
            joined = g.merge(drop, on=keys, how="inner")
            if joined.empty:
                continue
            corr = sensitivity_correlations(joined[["method", "layer", "dissimilarity", "drop"]])
            corr.insert(0, "functional", fn)
            corr.insert(0, "kind", "within" if a == b else "cross")
            corr.insert(0, "model_b", b)
            corr.insert(0, "model_a", a)
            out.append(corr)
    return pd.concat(out, ignore_index=True)[UNIT_COLUMNS] if out else pd.DataFrame(columns=UNIT_COLUMNS)


def sensitivity_over_units(units: pd.DataFrame, *, level: float) -> pd.DataFrame:
    """Per (kind, functional, method): mean pooled Spearman / Kendall over units with a t interval."""
    from ..uncertainty.intervals import t_interval

    pooled = units[units["scope"] == "pooled"]
    rows = []
    for (kind, fn, method), g in pooled.groupby(["kind", "functional", "method"], sort=False):
        mean, std, lo, hi, n = t_interval(g["spearman"].to_numpy(dtype=float), level=level)
        kmean, _, klo, khi, _ = t_interval(g["kendall"].to_numpy(dtype=float), level=level)
        rows.append({"kind": kind, "functional": fn, "method": method, "n_units": int(n), "n_undefined": int(len(g) - n),
                     "spearman": float(mean), "spearman_std": float(std), "spearman_low": float(lo),
                     "spearman_high": float(hi), "kendall": float(kmean), "kendall_low": float(klo),
                     "kendall_high": float(khi)})  # fmt: skip
    return pd.DataFrame(rows)


SUMMARY_PREFIXES = ("sens", "spec", "counterpart")


def summary_table(units: pd.DataFrame, stratified: pd.DataFrame, *, level: float,
                  sanity_specificity: pd.DataFrame | None = None, order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per method: sensitivity (per kind and functional score, mean over units with a t
    interval), specificity (:mod:`.specificity`'s stratified rows: the mean of per-layer Spearman
    correlations with a jackknife interval and a within-layer permutation p, per functional gap)
    and, when the sanity table is given, the counterpart-best accuracy (Kornblith) with its Wilson interval.

    Sensitivity columns are ``sens_<kind>_<probe|network>`` (+ ``_low``, ``_high``, ``_n``,
    ``_kendall``); specificity ``spec_<probe|network>`` (+ ``_low``, ``_high``, ``_p``,
    ``_layers``, ``_reason``); the per-layer values are in ``specificity_by_layer.csv``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)  # NaN rows say it; the stage logs it once
        sens = sensitivity_over_units(units, level=level) if not units.empty else pd.DataFrame()
    methods = list(order) if order is not None else list(dict.fromkeys([*units.get("method", []), *stratified.get("method", [])]))
    rows = []
    for method in methods:
        row: dict[str, object] = {"method": method, "family": method_family(method)}
        for kind in ("within", "cross"):
            for fn in FUNCTIONAL:
                col = f"sens_{kind}_{fn.split('_')[0]}"
                hit = sens[(sens["kind"] == kind) & (sens["functional"] == fn) & (sens["method"] == method)] if not sens.empty else sens
                if len(hit):
                    h = hit.iloc[0]
                    row.update({col: h["spearman"], f"{col}_low": h["spearman_low"], f"{col}_high": h["spearman_high"],
                                f"{col}_n": h["n_units"], f"{col}_kendall": h["kendall"]})
                else:
                    row.update({col: np.nan, f"{col}_low": np.nan, f"{col}_high": np.nan, f"{col}_n": 0, f"{col}_kendall": np.nan})
        row.update(summary_columns(stratified, method))
        row.update(_counterpart(method, sanity_specificity))
        rows.append(row)
    return pd.DataFrame(rows)


def _counterpart(method: str, sanity_specificity: pd.DataFrame | None) -> dict[str, float]:
    """The sanity table's counterpart-best accuracy of ``method`` (NaN when absent)."""
    nan = {"counterpart": np.nan, "counterpart_low": np.nan, "counterpart_high": np.nan, "counterpart_chance": np.nan}
    if sanity_specificity is None or sanity_specificity.empty:
        return nan
    s = sanity_specificity
    if method in SANITY_KEYS:
        family, name, metric = SANITY_KEYS[method]
        hit = s[(s["family"] == family) & (s["method"] == name) & (s["metric"] == metric)]
    else:
        hit = s[(s["family"] == "similarity") & (s["method"] == method)]
    if hit.empty:
        return nan
    h = hit.iloc[0]
    return {"counterpart": float(h["accuracy"]), "counterpart_low": float(h["ci_low"]), "counterpart_high": float(h["ci_high"]),
            "counterpart_chance": float(h["chance"])}
