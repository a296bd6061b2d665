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
  Raw counts are point-estimate comparisons; ``n_better_significant`` counts only the better
  cells whose one-sided p-value of "beats the counterpart" (``p_column`` / ``p_row`` of the
  family's table) survives the correction (Holm over the candidates of the group that carry a
  p-value) at ``alpha``. Where the p-values come from: similarity, a paired bootstrap over probe
  resamples (``repmatch.similarity.bootstrap``); stitched accuracy, a one-sided McNemar test on
  the per-image correctness of both cells on the same test images
  (``repmatch.stitching.grid.accuracy_uncertainty``). It is NaN where a better cell has no
  p-value: similarity without bootstrap (``uncertainty.bootstrap = 0`` or a measure left out of
  ``bootstrap_measures``), stitching's ``repr_diff`` and subspace match (no test).
* **specificity** (Kornblith et al. 2019, Sec. 6.1): over every ordered pair of different
  networks, how often a layer's best-scoring partner is its architectural counterpart; chance
  is 1 / the number of candidate layers. With a Wilson interval and the one-sided exact
  binomial test of "accuracy <= chance" (cases treated as independent: optimistic).
* **within vs cross seed** (:func:`within_vs_cross`): is a layer more similar to its counterpart
  in another seed than to its neighbouring layers in its own network? One-sided permutation
  test of the difference of means.

All are written as one table for all families, so they can be read side by side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import paths
from .datasets import DATASETS, dataset_sizes
from .io import read_table, write_table
from .settings import DataSettings, UncertaintySettings, section_settings
from .similarity.registry import get_measure
from .split_check import check_split_file
from .tables import KEY_COLUMNS
from .uncertainty.significance import binomial_test_vs_chance, holm, permutation_test

PathLike = str | os.PathLike[str]

RELATIVE_TIE = 1e-9
#: Optional columns of a score (NaN when the family's table lacks them): the cell's interval and
#: the p-values of "beats its column's / row's counterpart" (``repmatch.tables.BOOTSTRAP_COLUMNS``).
UNCERTAINTY_SCORE_COLUMNS = ["ci_low", "ci_high", "p_column", "p_row"]
SCORE_COLUMNS = [*KEY_COLUMNS, "family", "method", "metric", "value", "larger_is_better", "tie_tolerance",
                 *UNCERTAINTY_SCORE_COLUMNS]  # fmt: skip
#: Stitching metrics the sanity tests read, and whether larger is more similar.
STITCHING_METRICS = {"accuracy": True, "repr_diff": False}


def _scores(df: pd.DataFrame, family: str, metric: pd.Series | str, larger: pd.Series | bool, tol: pd.Series | float) -> pd.DataFrame:
    out = df[KEY_COLUMNS + ["method", "value"]].copy()
    out["family"], out["metric"], out["larger_is_better"], out["tie_tolerance"] = family, metric, larger, tol
    for col in UNCERTAINTY_SCORE_COLUMNS:
        out[col] = df[col].astype(float) if col in df.columns else np.nan
    return out[SCORE_COLUMNS]


def similarity_scores(table: pd.DataFrame) -> pd.DataFrame:
    """Scores of the similarity indices; symmetric measures stored once per pair get both orientations."""
    if table.empty:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    measures = {name: get_measure(name) for name in table["method"].unique()}
    symmetric = table["method"].map(lambda m: measures[m].symmetric)
    # the mirror of cell (A:i, B:j) is (B:j, A:i): its column counterpart is the original's row counterpart
    mirror = table[symmetric & (table["model_a"] != table["model_b"])].rename(
        columns={f"{c}_a": f"{c}_b" for c in ("model", "layer", "index")} | {f"{c}_b": f"{c}_a" for c in ("model", "layer", "index")}
        | {"p_column": "p_row", "p_row": "p_column"}
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


def _uncertainty_defaults() -> UncertaintySettings:
    """The ``uncertainty`` section's defaults (from the schema): arguments left ``None`` take these."""
    return section_settings("uncertainty")


def _tie(value: float, own: float, tol: float) -> bool:
    return abs(value - own) <= tol + RELATIVE_TIE * max(1.0, abs(own))


# The test behind a family's p_column / p_row (stitching: repmatch.stitching.grid.accuracy_uncertainty)
TEST_OF_FAMILY = {"stitching": "mcnemar", "similarity": "paired_bootstrap"}


def more_similar_than_itself(scores: pd.DataFrame, *, alpha: float | None = None, correction: str | None = None) -> pd.DataFrame:
    """One row per (family, method, metric, model pair, direction, layer with a counterpart).

    ``n_better``: candidates beating the counterpart by more than the tie tolerance (raw, point
    estimates); ``n_better_significant``: those whose one-sided p-value (``p_column`` for the
    column direction, ``p_row`` for the row direction), corrected over the group's candidates
    that carry a p-value (``correction``: Holm or none), is <= ``alpha``. NaN when a raw better
    cell has no p-value. Ties are never significant. ``test``: the test behind the group's p-values
    when some candidate carries one (:data:`TEST_OF_FAMILY`: McNemar for stitched accuracy on the
    same test images, the paired bootstrap for similarity indices), ``none`` otherwise.
    """
    defaults = _uncertainty_defaults()
    alpha = defaults.alpha if alpha is None else alpha
    correction = defaults.correction if correction is None else correction

    if correction not in ("holm", "none"):
        raise ValueError(f"correction must be 'holm' or 'none', got {correction!r}")
    rows = []
    for (family, method, metric, ma, mb), g in scores.groupby(["family", "method", "metric", "model_a", "model_b"], sort=False):
        sign = 1.0 if bool(g["larger_is_better"].iloc[0]) else -1.0
        tol = float(g["tie_tolerance"].iloc[0])
        cells = {(la, lb): float(v) for la, lb, v in zip(g["layer_a"], g["layer_b"], g["value"])}
        pvals = {"column": dict(zip(zip(g["layer_a"], g["layer_b"]), g["p_column"].astype(float))),
                 "row": dict(zip(zip(g["layer_a"], g["layer_b"]), g["p_row"].astype(float)))}  # fmt: skip
        index = {**dict(zip(g["layer_a"], g["index_a"])), **dict(zip(g["layer_b"], g["index_b"]))}
        for direction, axis in (("column", 1), ("row", 0)):
            layers = sorted({cell[axis] for cell in cells}, key=lambda name: index[name])
            for layer in layers:
                own = cells.get((layer, layer), np.nan)
                if not np.isfinite(own):
                    continue
                others = [(cell[1 - axis], v, pvals[direction][cell]) for cell, v in cells.items()
                          if cell[axis] == layer and cell[1 - axis] != layer and np.isfinite(v)]  # fmt: skip
                others.sort(key=lambda o: index[o[0]])
                ties = [name for name, v, _ in others if _tie(v, own, tol)]
                better = [name for name, v, _ in others if sign * (v - own) > 0 and name not in ties]
                best = max((sign * v for _, v, _ in others), default=np.nan) * sign
                p = np.array([pv for _, _, pv in others], dtype=float)
                adjusted = holm(p) if correction == "holm" else p
                adj = {name: a for (name, _, _), a in zip(others, adjusted)}
                tested = bool(np.isfinite(p).any())
                if better and not all(np.isfinite(adj[name]) for name in better):
                    significant: list[str] = []
                    n_significant = np.nan
                else:
                    significant = [name for name in better if adj[name] <= alpha]
                    n_significant = float(len(significant))
                better_adj = np.array([adj[name] for name in better], dtype=float)
                p_min = float(np.nanmin(better_adj)) if np.isfinite(better_adj).any() else np.nan
                rows.append({
                    "family": family, "method": method, "metric": metric, "kind": "within" if ma == mb else "cross",
                    "model_a": ma, "model_b": mb, "direction": direction, "layer": layer, "index": int(index[layer]),
                    "self_value": own, "n_candidates": len(others), "n_better": len(better), "n_ties": len(ties),
                    "best_other_value": best, "better_layers": ";".join(better), "tie_layers": ";".join(ties),
                    "n_better_significant": n_significant, "significant_layers": ";".join(significant),
                    "p_min_adjusted": p_min, "test": TEST_OF_FAMILY.get(family, "paired_bootstrap") if tested else "none", "alpha": alpha,
                    "correction": correction,
                })  # fmt: skip
    return pd.DataFrame(rows, columns=MSTI_COLUMNS)


MSTI_COLUMNS = ["family", "method", "metric", "kind", "model_a", "model_b", "direction", "layer", "index", "self_value",
                "n_candidates", "n_better", "n_ties", "best_other_value", "better_layers", "tie_layers",
                "n_better_significant", "significant_layers", "p_min_adjusted", "test", "alpha", "correction"]  # fmt: skip


def more_similar_summary(msti: pd.DataFrame) -> pd.DataFrame:
    """Totals per (family, method, metric, kind, direction): cells beating their counterpart (raw and
    significant; NaN when some raw offender was not tested), ties, layers affected."""
    keys = ["family", "method", "metric", "kind", "direction"]

    def total(col: pd.Series) -> float:
        return float(col.sum()) if col.notna().all() else np.nan

    rows = [
        {**dict(zip(keys, key)), "model_pairs": g[["model_a", "model_b"]].drop_duplicates().shape[0], "layers": len(g),
         "layers_beaten": int((g["n_better"] > 0).sum()), "n_better": int(g["n_better"].sum()),
         "layers_beaten_significant": total(g["n_better_significant"] > 0) if g["n_better_significant"].notna().all() else np.nan,
         "n_better_significant": total(g["n_better_significant"]),
         "n_ties": int(g["n_ties"].sum()), "n_candidates": int(g["n_candidates"].sum()),
         "alpha": g["alpha"].iloc[0], "correction": g["correction"].iloc[0]}
        for key, g in msti.groupby(keys, sort=False)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=[*keys, "model_pairs", "layers", "layers_beaten", "n_better", "layers_beaten_significant",
                                       "n_better_significant", "n_ties", "n_candidates", "alpha", "correction"])  # fmt: skip


def specificity(scores: pd.DataFrame, *, level: float | None = None) -> pd.DataFrame:
    """Kornblith's specificity per (family, method, metric) over ordered pairs of different networks.

    ``ci_low, ci_high``: Wilson interval of the accuracy at ``level``; ``p_value``: one-sided exact
    binomial test of H0 "accuracy <= chance" with the mean chance level of the cases (the cases
    share networks and layers, so both treat them as independent trials: optimistic)."""
    level = _uncertainty_defaults().level if level is None else level
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
        level_chance = float(np.mean(chance)) if chance else np.nan
        lo = hi = p = np.nan
        if total and 0.0 < level_chance < 1.0:
            test = binomial_test_vs_chance(correct, total, level_chance, level=level, interval="wilson")
            lo, hi, p = test.ci_low, test.ci_high, test.p_value
        rows.append({
            "family": family, "method": method, "metric": metric, "larger_is_better": sign > 0, "n_correct": correct,
            "n_total": total, "accuracy": correct / total if total else np.nan,
            "chance": level_chance, "n_undefined": undefined, "n_model_pairs": pairs,
            "ci_low": lo, "ci_high": hi, "interval": "wilson", "level": level, "test": "binomial_vs_chance", "p_value": p,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=SPECIFICITY_COLUMNS)


SPECIFICITY_COLUMNS = ["family", "method", "metric", "larger_is_better", "n_correct", "n_total", "accuracy", "chance",
                       "n_undefined", "n_model_pairs", "ci_low", "ci_high", "interval", "level", "test", "p_value"]  # fmt: skip


def _unique_values(rows: pd.DataFrame) -> np.ndarray:
    """Values of distinct observations: a symmetric measure stored in both orientations (or mirrored
    by :func:`similarity_scores`) counts once (equal to 10 significant digits: the two orientations
    of a symmetric grid agree only to rounding); asymmetric orientations differ in value and both count."""
    seen: dict[tuple, float] = {}
    for ma, la, mb, lb, v in zip(rows["model_a"], rows["layer_a"], rows["model_b"], rows["layer_b"], rows["value"]):
        if np.isfinite(v):
            seen.setdefault((*sorted([(ma, la), (mb, lb)]), f"{v:.10g}"), float(v))
    return np.array(list(seen.values()), dtype=float)


def within_vs_cross(scores: pd.DataFrame, *, n_permutations: int | None = None, seed: int | None = None) -> pd.DataFrame:
    """Within- vs cross-seed permutation test per (family, method, metric).

    Which values: the diagonal of a within-network grid is trivial (CKA of a layer with itself is
    1), so the two groups are
    * ``cross``: a layer against the same-named layer of a *different* network (a cross-seed
      diagonal cell), and
    * ``within``: a layer against its *neighbouring* layers (network positions one apart) of the
      *same* network.
    H1 (one-sided, in the similarity direction): a layer is more similar to its counterpart in
    another seed than to its neighbours in its own network, i.e. the index sees layer identity
    through the seed change. ``difference = mean_cross - mean_within`` (in the metric's units).
    The permutation test treats the values as exchangeable under H0; they share networks, so
    read the p-value as descriptive. NaN when a group is empty (e.g. no within-network subspace
    pairs, one seed).
    """
    defaults = _uncertainty_defaults()
    n_permutations = defaults.n_permutations if n_permutations is None else n_permutations
    seed = defaults.seed if seed is None else seed

    rows = []
    for (family, method, metric), g in scores.groupby(["family", "method", "metric"], sort=False):
        sign = 1.0 if bool(g["larger_is_better"].iloc[0]) else -1.0
        cross = _unique_values(g[(g["model_a"] != g["model_b"]) & (g["layer_a"] == g["layer_b"])])
        within = _unique_values(g[(g["model_a"] == g["model_b"]) & ((g["index_a"] - g["index_b"]).abs() == 1)])
        diff = p = np.nan
        if cross.size and within.size:
            d, p = permutation_test(sign * cross, sign * within, n_perm=n_permutations, seed=seed, alternative="greater")
            diff = sign * d
        rows.append({
            "family": family, "method": method, "metric": metric, "larger_is_better": sign > 0,
            "n_cross": int(cross.size), "n_within": int(within.size),
            "mean_cross": float(cross.mean()) if cross.size else np.nan,
            "mean_within": float(within.mean()) if within.size else np.nan, "difference": diff,
            "test": "permutation", "alternative": "cross more similar", "n_permutations": n_permutations, "p_value": p,
        })  # fmt: skip
    return pd.DataFrame(rows, columns=WITHIN_CROSS_COLUMNS)


WITHIN_CROSS_COLUMNS = ["family", "method", "metric", "larger_is_better", "n_cross", "n_within", "mean_cross", "mean_within",
                        "difference", "test", "alternative", "n_permutations", "p_value"]  # fmt: skip


def sanity_tables(scores: Sequence[pd.DataFrame], uncertainty: UncertaintySettings) -> dict[str, pd.DataFrame]:
    """The sanity tables (keys: :data:`repmatch.paths.SANITY_TABLES`) of the given families' scores."""
    frames = [s for s in scores if not s.empty]
    all_scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    msti = more_similar_than_itself(all_scores, alpha=uncertainty.alpha, correction=uncertainty.correction)
    return {
        "more_similar_than_itself": msti, "more_similar_summary": more_similar_summary(msti),
        "specificity": specificity(all_scores, level=uncertainty.level),
        "within_vs_cross": within_vs_cross(all_scores, n_permutations=uncertainty.n_permutations, seed=uncertainty.seed),
    }  # fmt: skip


def sanity_stage(*, data: DataSettings, uncertainty: UncertaintySettings, tables: Mapping[str, PathLike],
                 outputs: Mapping[str, PathLike], log: logging.Logger) -> None:  # fmt: skip
    """Read each family's aggregated table (keys: ``similarity``, ``stitching``, ``subspace_match``) and write
    the sanity tables (keys: :data:`repmatch.paths.SANITY_TABLES`)."""

    # Stitched accuracy is measured on the whole test split; a user's dataset's size is in the recorded split.
    n_test = dataset_sizes(data.name, data.n_test)[1] if data.name in DATASETS else check_split_file(paths.split())["n_test"]
    adapters = {"similarity": similarity_scores, "stitching": lambda df: stitching_scores(df, n_test),
                "subspace_match": subspace_scores}  # fmt: skip
    out = sanity_tables([adapters[family](read_table(path)) for family, path in tables.items()], uncertainty)
    for name, df in out.items():
        write_table(df, outputs[name])
    for row in out["specificity"].itertuples():
        log.info("specificity %s %s %s: %d/%d = %.3f [%.3f, %.3f] (chance %.3f, p = %.2g)", row.family, row.method,
                 row.metric, row.n_correct, row.n_total, row.accuracy, row.ci_low, row.ci_high, row.chance, row.p_value)  # fmt: skip
    for row in out["more_similar_summary"].itertuples():
        if row.n_better:
            log.info("more similar than itself %s %s %s %s %s: %d raw, %s significant (%s, alpha %g)", row.family,
                     row.method, row.metric, row.kind, row.direction, row.n_better, row.n_better_significant,
                     row.correction, row.alpha)  # fmt: skip
