"""Sanity tests of every family, computed by one piece of code from any family's tidy table.

Each family's aggregated table is first turned into *scores*: the key columns plus ``family,
method, metric, value``, whether larger means more similar, and the absolute tolerance within
which two values are a tie (:func:`similarity_scores`, :func:`stitching_scores`,
:func:`subspace_scores`). The tests then see only scores:

* **more similar than itself** (the seed paper's red flag): for each model pair and B layer j
  (``direction = column``), the A layers i != j whose score into j beats the score of j's own
  counterpart (the same-named layer of A); for each A layer i (``direction = row``), the B
  layers j != i that i scores better with than with its counterpart. Differences within the
  tolerance are *ties*, counted apart (one test sample for stitched accuracy; 1e-9 relative
  for indices).
* **specificity** (Kornblith et al. 2019, Sec. 6.1): over every ordered pair of different
  networks, how often a layer's best-scoring partner is its architectural counterpart; chance
  is 1 / the number of candidate layers.

Both are written as one table for all families, so they can be read side by side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .settings import DataSettings
from .tables import KEY_COLUMNS

PathLike = str | os.PathLike[str]

RELATIVE_TIE = 1e-9
SCORE_COLUMNS = [*KEY_COLUMNS, "family", "method", "metric", "value", "larger_is_better", "tie_tolerance"]
#: Stitching metrics the sanity tests read, and whether larger is more similar.
STITCHING_METRICS = {"accuracy": True, "repr_diff": False}


def _scores(df: pd.DataFrame, family: str, metric: pd.Series | str, larger: pd.Series | bool, tol: pd.Series | float) -> pd.DataFrame:
    out = df[KEY_COLUMNS + ["method", "value"]].copy()
    out["family"], out["metric"], out["larger_is_better"], out["tie_tolerance"] = family, metric, larger, tol
    return out[SCORE_COLUMNS]


def similarity_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Scores of the similarity indices; symmetric measures stored once per pair get both orientations."""
    from .similarity.registry import get_measure

    if table.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    measures = {name: get_measure(name) for name in table["method"].unique()}
    symmetric = table["method"].map(lambda m: measures[m].symmetric)
    mirror = table[symmetric & (table["model_a"] != table["model_b"])].rename(
        columns={f"{c}_a": f"{c}_b" for c in ("model", "layer", "index")} | {f"{c}_b": f"{c}_a" for c in ("model", "layer", "index")}
    )
    both = pd.concat([table, mirror], ignore_index=True)
    larger = both["method"].map(lambda m: measures[m].larger_is_similar)
    return _scores(both, "similarity", np.where(larger, "similarity", "distance"), larger, 0.0)


def stitching_scores(table: pd.DataFrame, n_test: int) -> pd.DataFrame:
    """Scores of stitched accuracy (ties: within one of the ``n_test`` test samples) and ``repr_diff``."""
    sel = table[table["metric"].isin(list(STITCHING_METRICS))]
    if sel.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    tol = np.where(sel["metric"] == "accuracy", 1.0 / n_test, 0.0)
    return _scores(sel, "stitching", sel["metric"], sel["metric"].map(STITCHING_METRICS), tol)


def subspace_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Scores of the maximum-match similarity, one metric per ε (``eps=0.5``)."""
    sel = table[table["method"] == "maximum_match"]
    if sel.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    return _scores(sel, "subspace_match", sel["eps"].map(lambda e: f"eps={e:g}"), True, 0.0)


def _tie(value: float, own: float, tol: float) -> bool:
    return abs(value - own) <= tol + RELATIVE_TIE * max(1.0, abs(own))


def more_similar_than_itself(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per (family, method, metric, model pair, direction, layer with a counterpart)."""
    rows = []
    for (family, method, metric, ma, mb), g in scores.groupby(["family", "method", "metric", "model_a", "model_b"], sort=False):
        sign = 1.0 if bool(g["larger_is_better"].iloc[0]) else -1.0
        tol = float(g["tie_tolerance"].iloc[0])
        cells = {(la, lb): float(v) for la, lb, v in zip(g["layer_a"], g["layer_b"], g["value"])}
        index = {**dict(zip(g["layer_a"], g["index_a"])), **dict(zip(g["layer_b"], g["index_b"]))}
        for direction, axis in (("column", 1), ("row", 0)):
            layers = sorted({cell[axis] for cell in cells}, key=lambda name: index[name])
            for layer in layers:
                own = cells.get((layer, layer), np.nan)
                if not np.isfinite(own):
                    continue
                others = [(cell[1 - axis], v) for cell, v in cells.items()
                          if cell[axis] == layer and cell[1 - axis] != layer and np.isfinite(v)]  # fmt: skip
                others.sort(key=lambda o: index[o[0]])
                ties = [name for name, v in others if _tie(v, own, tol)]
                better = [name for name, v in others if sign * (v - own) > 0 and name not in ties]
                best = max((sign * v for _, v in others), default=np.nan) * sign
                rows.append({
                    "family": family, "method": method, "metric": metric, "kind": "within" if ma == mb else "cross",
                    "model_a": ma, "model_b": mb, "direction": direction, "layer": layer, "index": int(index[layer]),
                    "self_value": own, "n_candidates": len(others), "n_better": len(better), "n_ties": len(ties),
                    "best_other_value": best, "better_layers": ";".join(better), "tie_layers": ";".join(ties),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=MSTI_COLUMNS)


MSTI_COLUMNS = ["family", "method", "metric", "kind", "model_a", "model_b", "direction", "layer", "index", "self_value",
                "n_candidates", "n_better", "n_ties", "best_other_value", "better_layers", "tie_layers"]  # fmt: skip


def more_similar_summary(msti: pd.DataFrame) -> pd.DataFrame:
    """Totals per (family, method, metric, kind, direction): cells beating their counterpart, ties, layers affected."""
    keys = ["family", "method", "metric", "kind", "direction"]
    rows = [
        {**dict(zip(keys, key)), "model_pairs": g[["model_a", "model_b"]].drop_duplicates().shape[0], "layers": len(g),
         "layers_beaten": int((g["n_better"] > 0).sum()), "n_better": int(g["n_better"].sum()),
         "n_ties": int(g["n_ties"].sum()), "n_candidates": int(g["n_candidates"].sum())}
        for key, g in msti.groupby(keys, sort=False)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "model_pairs", "layers", "layers_beaten", "n_better", "n_ties", "n_candidates"])


def specificity(scores: pd.DataFrame) -> pd.DataFrame:
    """Kornblith's specificity per (family, method, metric) over ordered pairs of different networks."""
    rows = []
    cross = scores[scores["model_a"] != scores["model_b"]]
    for (family, method, metric), g in scores.groupby(["family", "method", "metric"], sort=False):
        sign = 1.0 if bool(g["larger_is_better"].iloc[0]) else -1.0
        correct = total = undefined = 0
        chance: list[float] = []
        c = cross[(cross["family"] == family) & (cross["method"] == method) & (cross["metric"] == metric)]
        pairs = c[["model_a", "model_b"]].drop_duplicates().shape[0]
        for (_, _, layer_a), row in c.groupby(["model_a", "model_b", "layer_a"], sort=False):
            if layer_a not in set(row["layer_b"]) or len(row) < 2:
                continue
            values = sign * row["value"].to_numpy(dtype=float)
            if not np.isfinite(values).any():
                undefined += 1
                continue
            total += 1
            correct += int(row["layer_b"].iloc[int(np.nanargmax(values))] == layer_a)
            chance.append(1.0 / len(row))
        rows.append({
            "family": family, "method": method, "metric": metric, "larger_is_better": sign > 0, "n_correct": correct,
            "n_total": total, "accuracy": correct / total if total else np.nan,
            "chance": float(np.mean(chance)) if chance else np.nan, "n_undefined": undefined, "n_model_pairs": pairs,
        })  # fmt: skip
    return pd.DataFrame(rows)


def sanity_tables(scores: Sequence[pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(more similar than itself, its summary, specificity) of the given families' scores."""
    frames = [s for s in scores if not s.empty]
    all_scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    msti = more_similar_than_itself(all_scores)
    return msti, more_similar_summary(msti), specificity(all_scores)


def sanity_stage(data: DataSettings, tables: Mapping[str, PathLike], outputs: Mapping[str, PathLike], log: logging.Logger) -> None:
    """Read each family's aggregated table (keys: ``similarity``, ``stitching``, ``subspace_match``) and write
    the three sanity tables (keys: :data:`repmatch.paths.SANITY_TABLES`)."""
    from .datasets import dataset_sizes
    from .io import read_table, write_table

    n_test = dataset_sizes(data.name, data.n_test)[1]  # stitched accuracy is measured on the whole test split
    adapters = {"similarity": similarity_scores, "stitching": lambda df: stitching_scores(df, n_test),
                "subspace_match": subspace_scores}  # fmt: skip
    msti, summary, spec = sanity_tables([adapters[family](read_table(path)) for family, path in tables.items()])
    for name, df in (("more_similar_than_itself", msti), ("more_similar_summary", summary), ("specificity", spec)):
        write_table(df, outputs[name])
    for row in spec.itertuples():
        log.info("specificity %s %s %s: %d/%d = %.3f (chance %.3f)", row.family, row.method, row.metric, row.n_correct,
                 row.n_total, row.accuracy, row.chance)  # fmt: skip
