"""Ding et al.'s specificity test, within a layer: does an index's cross-seed distance track function?

For one layer l and the networks of several seeds, each pair (A, B) of different networks gives a
point: the method's distance between A_l and B_l (full rank) and a functional gap,

* ``probe`` — |probe accuracy(A_l) - probe accuracy(B_l)| (Ding et al.: linear probes on the
  layer's pooled features, from the network jobs' full-rank rows), and
* ``network`` — |network accuracy(A) - network accuracy(B)| with layer l's full-rank representation
  fed forward (the network jobs' full-rank ``network_accuracy``; the full-rank projection is the
  identity, so this is the networks' own accuracy gap, the same at every layer; no probe involved).

**Why per layer.** Between layers, both an index's cross-seed distance and the probe gap change
systematically; a correlation over points of different layers measures that between-layer trend
(Simpson's paradox), not whether the index follows functional differences between seeds *at one
layer*. So the statistic is the Spearman correlation over the seed pairs of one layer, and layers
are combined only by a stratified statistic: the mean of the per-layer correlations. Nothing here
correlates points of different layers.

**When it is defined.** A layer needs at least :data:`MIN_PAIRS` pairs (5 networks give 10). Below
that its correlation is NaN with a reason: with n points the exact permutation null of Spearman's
rho has n! orderings, and with n = 4 the smallest two-sided p-value is 2/24 = 0.083, so no single
layer could ever reject at 0.05 (n = 5: 2/120 = 0.017). A constant distance or gap is NaN too.

**Test.** The permutation test permutes the networks' functional scores among the networks of each
layer, independently per layer (a Mantel-type test stratified by layer): the points of one layer
share networks (10 pairs from 5 networks are not 10 independent points), and permuting network
labels keeps that dependence, where permuting the pairs' gaps would not (it would be
anti-conservative). Two-sided on the stratified mean; Monte Carlo with the observed statistic
counted, p = (1 + #{|perm| >= |obs|}) / (1 + n_permutations).

**Interval.** Jackknife over networks (leave one network and all its pairs out, recompute), a
Student-t interval with n_networks - 1 degrees of freedom, bounds cut to [-1, 1] (a correlation's
bound beyond +-1 carries no information). It needs every leave-one-out replicate defined, i.e. at
least :data:`MIN_PAIRS` pairs in each layer without any one network (5 networks: 6 pairs); else NaN
with a reason. Approximate for so few networks, and it is stated as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .dissimilarity import index_dissimilarity

#: Fewest seed pairs in a layer for a defined per-layer correlation (see the module docstring).
MIN_PAIRS = 5
#: The functional gaps: name -> the network table's full-rank score it is the absolute difference of.
GAPS = {"probe": "probe_accuracy", "network": "network_accuracy"}
STITCH_METHODS = ("dm_accuracy", "dm_repr_diff", "tlm_accuracy", "tlm_repr_diff")
POINT_COLUMNS = ["model_a", "model_b", "layer", "method", "distance", *(f"{g}_gap" for g in GAPS)]
LAYER_COLUMNS = ["method", "gap", "layer", "n_networks", "n_pairs", "spearman", "spearman_low", "spearman_high", "reason"]
STRATIFIED_COLUMNS = ["method", "gap", "n_layers", "n_layers_defined", "layers", "spearman", "spearman_low",
                      "spearman_high", "p_value", "n_permutations", "reason"]  # fmt: skip


# --------------------------------------------------------------------------------------------
# The per-layer statistic (pure arrays)


def spearman_rows(distance: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Spearman's rho of ``distance`` (n,) with each row of ``gaps`` (P, n): average ranks (ties),
    then Pearson of the ranks, all rows in one matrix product. A constant side gives NaN."""
    from scipy import stats  # in the functions: ~0.7 s of import, needed by the aggregate job only

    rd = stats.rankdata(distance)
    rg = stats.rankdata(np.atleast_2d(gaps), axis=1)
    rd = rd - rd.mean()
    rg = rg - rg.mean(axis=1, keepdims=True)
    num = rg @ rd
    den = np.sqrt((rg * rg).sum(axis=1) * (rd @ rd))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


@dataclass(frozen=True)
class LayerPoints:
    """One layer's seed pairs: ``a``, ``b`` index ``networks``; ``score`` is each network's
    functional score (the gap of pair k is |score[a[k]] - score[b[k]]|)."""

    layer: str
    networks: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    distance: np.ndarray
    score: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        return np.abs(self.score[self.a] - self.score[self.b])

    def without(self, network: str) -> LayerPoints:
        """The same layer without ``network``'s pairs (a jackknife replicate)."""
        keep = np.array([self.networks[i] != network and self.networks[j] != network for i, j in zip(self.a, self.b)],
                        dtype=bool)
        return LayerPoints(self.layer, self.networks, self.a[keep], self.b[keep], self.distance[keep], self.score)


def layer_spearman(points: LayerPoints, *, min_pairs: int = MIN_PAIRS, atol: float = 1e-12) -> tuple[float, str]:
    """The layer's Spearman rho over its seed pairs, or NaN and the reason it is undefined."""
    n = len(points.distance)
    if n < min_pairs:
        return float("nan"), f"{n} seed pairs < {min_pairs} (need {min_pairs} for a defined per-layer correlation)"
    if float(np.ptp(points.distance)) <= atol:
        return float("nan"), "the distance is the same for every seed pair"
    gap = points.gap
    if float(np.ptp(gap)) <= atol:
        return float("nan"), "the functional gap is the same for every seed pair"
    return float(spearman_rows(points.distance, gap[None, :])[0]), ""


def jackknife_interval(estimate: float, replicates: np.ndarray, *, level: float) -> tuple[float, float]:
    """Jackknife Student-t interval from leave-one-out ``replicates`` (n - 1 df), cut to [-1, 1];
    NaN when any replicate is NaN or there are fewer than 3."""
    r = np.asarray(replicates, dtype=np.float64)
    n = r.size
    if n < 3 or not np.all(np.isfinite(r)) or not np.isfinite(estimate):
        return float("nan"), float("nan")
    se = np.sqrt((n - 1) / n * np.sum((r - r.mean()) ** 2))
    from scipy import stats

    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    return float(max(estimate - half, -1.0)), float(min(estimate + half, 1.0))


def _networks(layers: Sequence[LayerPoints]) -> list[str]:
    return sorted({layer.networks[i] for layer in layers for i in (*layer.a, *layer.b)})


def layer_specificity(points: LayerPoints, *, level: float, min_pairs: int = MIN_PAIRS) -> dict[str, object]:
    """One layer: rho, its jackknife interval over networks, the counts and the reason when NaN."""
    rho, reason = layer_spearman(points, min_pairs=min_pairs)
    nets = _networks([points])
    lo = hi = float("nan")
    if np.isfinite(rho):
        reps = np.array([layer_spearman(points.without(k), min_pairs=min_pairs)[0] for k in nets])
        lo, hi = jackknife_interval(rho, reps, level=level)
        if not np.isfinite(lo):
            reason = f"no interval: leaving one of {len(nets)} networks out leaves < {min_pairs} pairs or a constant side"
    return {"layer": points.layer, "n_networks": len(nets), "n_pairs": len(points.distance), "spearman": rho,
            "spearman_low": lo, "spearman_high": hi, "reason": reason}


def stratified_mean(layers: Sequence[LayerPoints], *, min_pairs: int = MIN_PAIRS) -> tuple[float, int]:
    """Mean of the defined per-layer correlations and how many layers were defined (NaN, 0 if none)."""
    rhos = np.array([layer_spearman(lp, min_pairs=min_pairs)[0] for lp in layers])
    ok = np.isfinite(rhos)
    return (float(rhos[ok].mean()) if ok.any() else float("nan")), int(ok.sum())


def within_layer_permutation_p(layers: Sequence[LayerPoints], observed: float, *, n_permutations: int,
                               rng: np.random.Generator, min_pairs: int = MIN_PAIRS) -> float:
    """Two-sided p-value of the stratified mean: the networks' scores permuted within each layer.

    Only the layers whose correlation is defined enter (as in the observed mean). A permutation
    whose layers are all undefined counts as at least as extreme (conservative).
    """
    if not np.isfinite(observed) or n_permutations < 1:
        return float("nan")
    used = [lp for lp in layers if np.isfinite(layer_spearman(lp, min_pairs=min_pairs)[0])]
    total = np.zeros(n_permutations)
    count = np.zeros(n_permutations)
    for lp in used:
        present = np.unique(np.concatenate([lp.a, lp.b]))
        perms = rng.permuted(np.tile(present, (n_permutations, 1)), axis=1)  # row p: network present[i] -> perms[p, i]
        score = np.tile(lp.score, (n_permutations, 1))
        score[:, present] = lp.score[perms]
        gaps = np.abs(score[:, lp.a] - score[:, lp.b])
        rho = spearman_rows(lp.distance, gaps)
        ok = np.isfinite(rho)
        total += np.where(ok, rho, 0.0)
        count += ok
    with np.errstate(invalid="ignore"):
        means = np.where(count > 0, total / np.where(count > 0, count, 1), np.inf)
    extreme = np.abs(means) >= abs(observed) - 1e-12
    return float((1 + extreme.sum()) / (1 + n_permutations))


def stratified_specificity(layers: Sequence[LayerPoints], *, level: float, n_permutations: int, seed: int,
                           min_pairs: int = MIN_PAIRS) -> dict[str, object]:
    """The layers combined: mean of the per-layer correlations, jackknife interval over networks,
    within-layer permutation p-value. Layers whose correlation is undefined are left out of the
    mean and named in ``reason``; none defined gives NaN."""
    mean, n_def = stratified_mean(layers, min_pairs=min_pairs)
    undefined = [lp.layer for lp in layers if not np.isfinite(layer_spearman(lp, min_pairs=min_pairs)[0])]
    row: dict[str, object] = {"n_layers": len(layers), "n_layers_defined": n_def,
                              "layers": ",".join(lp.layer for lp in layers), "spearman": mean,
                              "spearman_low": np.nan, "spearman_high": np.nan, "p_value": np.nan,
                              "n_permutations": 0, "reason": ""}  # fmt: skip
    if not np.isfinite(mean):
        reasons = {layer_spearman(lp, min_pairs=min_pairs)[1] for lp in layers}
        row["reason"] = "no layer has a defined correlation: " + "; ".join(sorted(reasons)) if layers else "no layers"
        return row
    if undefined:
        row["reason"] = f"mean over {n_def} of {len(layers)} layers (undefined: {', '.join(undefined)})"
    defined = [lp for lp in layers if lp.layer not in undefined]
    reps = np.array([stratified_mean([lp.without(k) for lp in defined], min_pairs=min_pairs) for k in _networks(defined)])
    complete = reps[:, 1] == len(defined) if len(reps) else np.array([], dtype=bool)
    lo, hi = jackknife_interval(mean, np.where(complete, reps[:, 0], np.nan) if len(reps) else reps, level=level)
    if not np.isfinite(lo):
        row["reason"] = "; ".join(filter(None, [str(row["reason"]), "no interval: leaving one network out leaves a "
                                                f"layer with < {min_pairs} pairs or a constant side"]))
    p = within_layer_permutation_p(defined, mean, n_permutations=n_permutations, rng=np.random.default_rng(seed),
                                   min_pairs=min_pairs)
    row.update({"spearman_low": lo, "spearman_high": hi, "p_value": p, "n_permutations": int(n_permutations)})
    return row


# --------------------------------------------------------------------------------------------
# Tables: the points from the job tables, and the per-layer and stratified results


def network_scores(networks: pd.DataFrame) -> pd.DataFrame:
    """Each network's full-rank functional scores per layer: columns model, layer, and one per gap."""
    full = networks[(networks["rank"] == networks["full_rank"]) & networks["method"].isin(list(GAPS.values()))]
    wide = full.pivot_table(index=["model", "layer"], columns="method", values="value", aggfunc="first")
    missing = set(GAPS.values()) - set(wide.columns)
    if missing:
        raise ValueError(f"the specificity test needs the network tables' full-rank {sorted(missing)}")
    return wide[list(GAPS.values())].rename(columns={v: k for k, v in GAPS.items()}).reset_index()


def _one_point_per_pair(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of (model_a, model_b, layer, method, distance) with A -> B and B -> A merged into one
    point per unordered pair (their mean): the functional gap is symmetric, and two directions of
    one pair are not two independent points."""
    if rows.empty:
        return pd.DataFrame(columns=["model_a", "model_b", "layer", "method", "distance"])
    r = rows.copy()
    swap = r["model_a"] > r["model_b"]
    r.loc[swap, ["model_a", "model_b"]] = r.loc[swap, ["model_b", "model_a"]].to_numpy()
    return r.groupby(["model_a", "model_b", "layer", "method"], sort=False, as_index=False)["distance"].mean()


def index_distances(similarity: pd.DataFrame, layers: Sequence[str], measures: Sequence[str] | None = None) -> pd.DataFrame:
    """The indices' distances between corresponding layers of different networks, from the
    similarity pair tables (``COLUMNS["similarity"]``): columns model_a, model_b, layer, method,
    distance; an asymmetric measure's two directions (both in the pair table) are one point."""
    s = similarity[(similarity["model_a"] != similarity["model_b"]) & (similarity["layer_a"] == similarity["layer_b"])
                   & similarity["layer_a"].isin(list(layers))]  # fmt: skip
    if measures is not None:
        s = s[s["method"].isin(list(measures))]
    out = s[["model_a", "model_b", "layer_a", "method"]].rename(columns={"layer_a": "layer"}).copy()
    out["distance"] = [float(index_dissimilarity(m, v)) for m, v in zip(s["method"], s["value"])]
    return _one_point_per_pair(out).reset_index(drop=True)


def stitch_distances(pairs: pd.DataFrame) -> pd.DataFrame:
    """DM's and TLM's full-rank distances (``distance`` of the sensitivity pair tables) between
    corresponding layers of different networks, one point per unordered pair: the mean of A -> B
    and B -> A where both ran (the functional gap is symmetric; two directions are not two points)."""
    s = pairs[(pairs["model_a"] != pairs["model_b"]) & (pairs["rank"] == pairs["full_rank"])
              & pairs["method"].isin(STITCH_METHODS)]  # fmt: skip
    return _one_point_per_pair(s[["model_a", "model_b", "layer", "method", "distance"]])


def specificity_points(distances: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """``distances`` (model_a, model_b, layer, method, distance) with both functional gaps."""
    s = scores.set_index(["model", "layer"])
    try:
        sa = s.loc[list(zip(distances["model_a"], distances["layer"]))].to_numpy(dtype=np.float64)
        sb = s.loc[list(zip(distances["model_b"], distances["layer"]))].to_numpy(dtype=np.float64)
    except KeyError as err:
        raise ValueError(f"the specificity test needs the full-rank scores of every network's layer: {err}") from None
    out = distances.copy()
    for k, g in enumerate(GAPS):
        out[f"{g}_gap"] = np.abs(sa[:, k] - sb[:, k]) if len(out) else np.array([], dtype=np.float64)
    return out[POINT_COLUMNS].reset_index(drop=True)


def layer_points(points: pd.DataFrame, scores: pd.DataFrame, method: str, gap: str,
                 layer_order: Sequence[str] | None = None) -> list[LayerPoints]:
    """One method's points as :class:`LayerPoints`, one per layer (in ``layer_order``)."""
    p = points[points["method"] == method]
    order = list(layer_order) if layer_order is not None else list(dict.fromkeys(p["layer"]))
    out = []
    for layer in order:
        g = p[p["layer"] == layer]
        sc = scores[scores["layer"] == layer]
        nets = tuple(sc["model"])
        where = {m: i for i, m in enumerate(nets)}
        missing = sorted(set(g["model_a"]).union(g["model_b"]) - set(where))
        if missing:
            raise ValueError(f"no full-rank {GAPS[gap]} of {missing} at {layer}")
        out.append(LayerPoints(layer, nets, np.array([where[m] for m in g["model_a"]], dtype=np.int64),
                               np.array([where[m] for m in g["model_b"]], dtype=np.int64),
                               g["distance"].to_numpy(dtype=np.float64), sc[gap].to_numpy(dtype=np.float64)))
    return out


def specificity_tables(points: pd.DataFrame, scores: pd.DataFrame, *, level: float, n_permutations: int, seed: int,
                       layers: Sequence[str] | None = None, min_pairs: int = MIN_PAIRS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (method, gap): the per-layer table (:data:`LAYER_COLUMNS`) and the stratified one
    (:data:`STRATIFIED_COLUMNS`). Every method is tested at every layer of ``layers`` (default: the
    layers of ``points``); a layer without points is NaN with its reason, not skipped."""
    layer_order = list(layers) if layers is not None else list(dict.fromkeys(points["layer"]))
    by_layer, strat = [], []
    for method in dict.fromkeys(points["method"]):
        for gap in GAPS:
            lps = layer_points(points, scores, method, gap, layer_order)
            for lp in lps:
                by_layer.append({"method": method, "gap": gap, **layer_specificity(lp, level=level, min_pairs=min_pairs)})
            strat.append({"method": method, "gap": gap, **stratified_specificity(
                lps, level=level, n_permutations=n_permutations, seed=seed, min_pairs=min_pairs)})
    return pd.DataFrame(by_layer, columns=LAYER_COLUMNS), pd.DataFrame(strat, columns=STRATIFIED_COLUMNS)


def summary_columns(stratified: pd.DataFrame, method: str) -> Mapping[str, object]:
    """``method``'s stratified specificity as summary-table columns ``spec_<gap>`` (+ ``_low``,
    ``_high``, ``_p``, ``_layers`` (defined layers), ``_reason``)."""
    row: dict[str, object] = {}
    for gap in GAPS:
        hit = stratified[(stratified["method"] == method) & (stratified["gap"] == gap)] if len(stratified) else stratified
        h = hit.iloc[0] if len(hit) else None
        col = f"spec_{gap}"
        row.update({col: h["spearman"] if h is not None else np.nan,
                    f"{col}_low": h["spearman_low"] if h is not None else np.nan,
                    f"{col}_high": h["spearman_high"] if h is not None else np.nan,
                    f"{col}_p": h["p_value"] if h is not None else np.nan,
                    f"{col}_layers": int(h["n_layers_defined"]) if h is not None else 0,
                    f"{col}_reason": h["reason"] if h is not None else "no cross-seed points"})  # fmt: skip
    return row
