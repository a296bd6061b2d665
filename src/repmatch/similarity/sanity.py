"""Sanity checks of the similarity indices, computed from the aggregated tidy table.

* Specificity (Kornblith et al. 2019, Sec. 6.1): for each layer of network x, is the
  architecturally corresponding layer of another seed y the most similar one? Accuracy per
  measure over every ordered cross-seed pair (x, y), x != y. Chance is 1 / number of layers.
* "More similar than itself": within one network, how often some layer j != i scores higher
  against layer i than i itself (value(j, i) beats value(i, i) by more than a 1e-9 relative
  tolerance, so rounding ties are not counted). A bounded index such as CKA never does; a count
  above zero flags a measure whose self-similarity is not its maximum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .registry import Measure, get_measure

TIE_TOLERANCE = 1e-9


def oriented_grid(table: pd.DataFrame, method: str, model_x: str, model_y: str, symmetric: bool) -> pd.DataFrame | None:
    """value(x_i, y_j) as a layer_x x layer_y frame (layers in network order), or None if absent.

    Symmetric measures are stored once per unordered pair; the other orientation is the transpose.
    """
    sub = table[(table["method"] == method) & (table["model_a"] == model_x) & (table["model_b"] == model_y)]
    if not sub.empty:
        return _pivot(sub)
    if symmetric:
        sub = table[(table["method"] == method) & (table["model_a"] == model_y) & (table["model_b"] == model_x)]
        if not sub.empty:
            return _pivot(sub).T
    return None


def _pivot(sub: pd.DataFrame) -> pd.DataFrame:
    names_a = dict(zip(sub["index_a"], sub["layer_a"]))
    names_b = dict(zip(sub["index_b"], sub["layer_b"]))
    grid = sub.pivot_table(index="index_a", columns="index_b", values="value", aggfunc="mean", dropna=False)
    grid = grid.sort_index(axis=0).sort_index(axis=1)
    grid.index = [names_a[i] for i in grid.index]
    grid.columns = [names_b[j] for j in grid.columns]
    return grid


def _models(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(list(table["model_a"]) + list(table["model_b"])))


def specificity(table: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Kornblith's specificity accuracy per method over all ordered cross-seed pairs."""
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    models = _models(table)
    rows = []
    for method in methods:
        m = get_measure(method)
        correct = total = undefined = pairs = 0
        chance: list[float] = []
        for x in models:
            for y in models:
                if x == y:
                    continue
                grid = oriented_grid(table, method, x, y, m.symmetric)
                if grid is None:
                    continue
                pairs += 1
                ok, n, und = _count_best(grid, m)
                correct, total, undefined = correct + ok, total + n, undefined + und
                chance += [1.0 / grid.shape[1]] * n
        rows.append({
            "method": method, "larger_is_similar": m.larger_is_similar, "n_correct": correct, "n_total": total,
            "accuracy": correct / total if total else np.nan, "chance": float(np.mean(chance)) if chance else np.nan,
            "n_undefined": undefined, "n_model_pairs": pairs, "conv_mode": _conv_mode(table),
        })
    return pd.DataFrame(rows)


def _count_best(grid: pd.DataFrame, m: Measure) -> tuple[int, int, int]:
    values = grid.to_numpy(dtype=float)
    if not m.larger_is_similar:
        values = -values
    cols = list(grid.columns)
    ok = n = undefined = 0
    for r, layer in enumerate(grid.index):
        if layer not in cols:
            continue
        row = values[r]
        if not np.isfinite(row).any():
            undefined += 1
            continue
        n += 1
        ok += int(cols[int(np.nanargmax(row))] == layer)
    return ok, n, undefined


def more_similar_than_itself(table: pd.DataFrame, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (method, model): how many layers i have some j != i with value(j, i) beating value(i, i)."""
    methods = list(methods) if methods is not None else list(dict.fromkeys(table["method"]))
    rows = []
    for method in methods:
        m = get_measure(method)
        for model in _models(table):
            grid = oriented_grid(table, method, model, model, m.symmetric)
            if grid is None:
                continue
            values = grid.to_numpy(dtype=float)
            sign = 1.0 if m.larger_is_similar else -1.0
            offenders = []
            for i, layer in enumerate(grid.columns):
                own = values[i, i]
                if not np.isfinite(own):
                    continue
                for j, other in enumerate(grid.index):
                    v = values[j, i]
                    if j != i and np.isfinite(v) and sign * (v - own) > TIE_TOLERANCE * max(1.0, abs(own)):
                        offenders.append(f"{other}>{layer}")
            n_layers = len(grid.columns)
            count = len({o.split(">")[1] for o in offenders})
            rows.append({
                "method": method, "model": model, "n_layers": n_layers, "count": count,
                "fraction": count / n_layers if n_layers else np.nan, "offending_pairs": ";".join(offenders),
                "conv_mode": _conv_mode(table),
            })
    return pd.DataFrame(rows)


def _conv_mode(table: pd.DataFrame) -> str:
    return ",".join(sorted(set(table["conv_mode"]))) if "conv_mode" in table else ""
