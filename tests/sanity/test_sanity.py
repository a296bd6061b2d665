"""The cross-family sanity module (repmatch.sanity) with the uncertainty columns:
raw vs significant "more similar than itself" counts, ties, directions, the specificity interval
and binomial test, and the within- vs cross-seed permutation test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from repmatch.logs import job_logger
from repmatch.sanity import (
    SCORE_COLUMNS,
    more_similar_summary,
    more_similar_than_itself,
    similarity_scores,
    specificity,
    stitching_scores,
    within_vs_cross,
)
from repmatch.settings import section_settings
from repmatch.similarity import similarity_table

LOG = job_logger("sanity", None)


def _table(cells: dict[tuple[int, int], float], model_a: str = "m_seed0", model_b: str = "m_seed1", method: str = "linear_cka",
           p_column: dict | None = None, p_row: dict | None = None) -> pd.DataFrame:  # fmt: skip
    """A similarity table of one model pair from {(i, j): value}; optional p-values per cell."""
    rows = []
    for (i, j), v in cells.items():
        rows.append({"model_a": model_a, "layer_a": f"l{i}", "index_a": i, "model_b": model_b, "layer_b": f"l{j}",
                     "index_b": j, "method": method, "value": v, "conv_mode": "gap",
                     "p_column": (p_column or {}).get((i, j), np.nan), "p_row": (p_row or {}).get((i, j), np.nan)})  # fmt: skip
    return pd.DataFrame(rows)


def _grid(n: int, diag: float = 1.0, off: float = 0.1) -> dict[tuple[int, int], float]:
    return {(i, j): diag if i == j else off for i in range(n) for j in range(n)}


# --- raw vs significant on a planted tie, through the pair stage's bootstrap ---------------------


def _tie_nets(seed: int, n: int = 300) -> tuple[dict, dict]:
    """Column l1 is a planted tie: a.l0 and a.l1 relate to b.l1 identically in the population."""
    rng = np.random.default_rng(seed)
    z, e0, e1 = rng.standard_normal((n, 4)), rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
    a = {"l0": z + e0, "l1": z + e1}
    b = {"l0": z + e0 + 0.05 * rng.standard_normal((n, 4)), "l1": z + 0.8 * rng.standard_normal((n, 4))}
    return a, b


def _bootstrapped_table(a: dict, b: dict, n_boot: int, seed: int, point: pd.DataFrame | None = None) -> pd.DataFrame:
    from repmatch.similarity.stages import add_bootstrap_columns

    sim = section_settings("similarity", {"measures": ["linear_cka"]})
    unc = section_settings("uncertainty", {"bootstrap": n_boot, "seed": seed})
    point = similarity_table(a, b, "net_seed0", "net_seed1", ["linear_cka"]) if point is None else point
    return add_bootstrap_columns(point, a, b, "net_seed0", "net_seed1", sim, unc, "cpu", LOG)


def test_planted_tie_counts_raw_one_significant_zero():
    for seed in range(50):
        a, b = _tie_nets(seed)
        point = similarity_table(a, b, "net_seed0", "net_seed1", ["linear_cka"])
        cell = point.set_index(["layer_a", "layer_b"])["value"]
        if cell[("l0", "l1")] > cell[("l1", "l1")]:
            break
    else:
        pytest.fail("no seed with a chance offender")
    table = _bootstrapped_table(a, b, n_boot=300, seed=seed, point=point)
    msti = more_similar_than_itself(similarity_scores(table), alpha=0.05, correction="holm")
    fwd = msti[(msti["model_a"] == "net_seed0")].set_index(["direction", "layer"])
    assert fwd.loc[("column", "l1"), "n_better"] == 1 and fwd.loc[("column", "l1"), "better_layers"] == "l0"
    assert fwd.loc[("column", "l1"), "n_better_significant"] == 0
    assert fwd.loc[("column", "l1"), "p_min_adjusted"] > 0.05
    # the symmetric mirror (B -> A) sees the same cell as a row offender of its layer l1: raw 2 in all, significant 0
    assert msti["n_better"].sum() == 2 and msti["n_better_significant"].sum() == 0
    assert set(msti["test"]) == {"paired_bootstrap"} and set(msti["correction"]) == {"holm"}
    summary = more_similar_summary(msti)
    assert summary["n_better"].sum() == 2 and summary["n_better_significant"].sum() == 0


def test_planted_real_difference_is_significant():
    rng = np.random.default_rng(5)
    n = 300
    z = rng.standard_normal((n, 4))
    a = {"l0": z + 0.3 * rng.standard_normal((n, 4)), "l1": z + 1.5 * rng.standard_normal((n, 4))}
    b = {"l0": a["l0"] + 0.05 * rng.standard_normal((n, 4)), "l1": z + 0.3 * rng.standard_normal((n, 4))}
    msti = more_similar_than_itself(similarity_scores(_bootstrapped_table(a, b, n_boot=300, seed=0)))
    col = msti[(msti["model_a"] == "net_seed0") & (msti["direction"] == "column") & (msti["layer"] == "l1")].iloc[0]
    assert col["n_better"] == 1 and col["n_better_significant"] == 1 and col["significant_layers"] == "l0"


# --- hand-built p-values: directions, mirror, correction, ties --------------------------------------


def test_row_and_column_directions_use_their_own_p_values():
    cells = _grid(3)
    cells[(0, 2)] = 2.0  # A.l0 beats column l2's counterpart (l2, l2) and row l0's counterpart (l0, l0)
    table = _table(cells, p_column={(0, 2): 0.001}, p_row={(0, 2): 0.3})
    msti = more_similar_than_itself(similarity_scores(table), alpha=0.05)
    fwd = msti[msti["model_a"] == "m_seed0"].set_index(["direction", "layer"])
    assert fwd.loc[("column", "l2"), ["n_better", "n_better_significant"]].tolist() == [1, 1]
    assert fwd.loc[("row", "l0"), ["n_better", "n_better_significant"]].tolist() == [1, 0]
    # the mirrored (symmetric) orientation B -> A swaps the roles: its column l0 is A's row l0
    back = msti[msti["model_a"] == "m_seed1"].set_index(["direction", "layer"])
    assert back.loc[("column", "l0"), ["n_better", "n_better_significant"]].tolist() == [1, 0]
    assert back.loc[("row", "l2"), ["n_better", "n_better_significant"]].tolist() == [1, 1]


def test_holm_corrects_within_the_candidates_of_one_layer():
    cells = _grid(3)
    cells[(0, 2)] = cells[(1, 2)] = 2.0  # two offenders in column l2
    # raw p 0.03, 0.04: Holm (2 tests) -> 0.06, 0.06 -> none significant; uncorrected -> both
    table = _table(cells, p_column={(0, 2): 0.03, (1, 2): 0.04})
    holm = more_similar_than_itself(similarity_scores(table), alpha=0.05, correction="holm")
    none = more_similar_than_itself(similarity_scores(table), alpha=0.05, correction="none")
    pick = (holm["model_a"] == "m_seed0") & (holm["direction"] == "column") & (holm["layer"] == "l2")
    assert holm.loc[pick, "n_better"].item() == 2 and holm.loc[pick, "n_better_significant"].item() == 0
    assert holm.loc[pick, "p_min_adjusted"].item() == pytest.approx(0.06)
    assert none.loc[pick, "n_better_significant"].item() == 2
    with pytest.raises(ValueError, match="correction"):
        more_similar_than_itself(similarity_scores(table), correction="bonferroni")


def test_ties_within_tolerance_are_never_significant_and_untested_offenders_are_nan():
    n_test = 1000
    rows = []
    for i in range(2):
        for j in range(2):
            acc = {(0, 0): 0.9, (1, 1): 0.973, (0, 1): 0.974, (1, 0): 0.95}[(i, j)]  # (0, 1): one image above (1, 1)
            rows.append({"model_a": "m_seed0", "layer_a": f"l{i}", "index_a": i, "model_b": "m_seed0", "layer_b": f"l{j}",
                         "index_b": j, "method": "dm", "metric": "accuracy", "value": acc})  # fmt: skip
    scores = stitching_scores(pd.DataFrame(rows), n_test)
    assert list(scores.columns) == SCORE_COLUMNS and scores[["ci_low", "p_column", "p_row"]].isna().all().all()
    msti = more_similar_than_itself(scores).set_index(["direction", "layer"])
    assert msti.loc[("column", "l1"), ["n_better", "n_ties"]].tolist() == [0, 1]
    assert msti.loc[("column", "l1"), "n_better_significant"] == 0  # nothing to test
    # (1, 0) = 0.95 beats (0, 0) = 0.9 on column l0: a raw offender without a p-value (a table without McNemar columns)
    assert msti.loc[("column", "l0"), "n_better"] == 1 and np.isnan(msti.loc[("column", "l0"), "n_better_significant"])
    assert set(msti["test"]) == {"none"}
    summary = more_similar_summary(msti.reset_index())
    assert summary["n_better"].sum() == 2 and summary["n_better_significant"].isna().all()


def test_distance_measure_flips_the_direction():
    """procrustes_distance: smaller is more similar, so a smaller off-diagonal value is the offender."""
    from repmatch.uncertainty.significance import counterpart_pvalues

    point = np.array([[0.0, 0.5], [0.9, 0.6]])  # column l1: A.l0 (0.5) is *closer* to B.l1 than A.l1 (0.6)
    reps = point + np.random.default_rng(0).normal(0, 1e-3, (50, 2, 2))
    p_col, p_row = counterpart_pvalues(reps, ["l0", "l1"], ["l0", "l1"], larger_is_similar=False)
    cells = {(i, j): point[i, j] for i in range(2) for j in range(2)}
    table = _table(cells, method="procrustes_distance", p_column={c: p_col[c] for c in cells}, p_row={c: p_row[c] for c in cells})
    msti = more_similar_than_itself(similarity_scores(table), alpha=0.05)
    fwd = msti[msti["model_a"] == "m_seed0"].set_index(["direction", "layer"])
    assert fwd.loc[("column", "l1"), ["n_better", "n_better_significant"]].tolist() == [1, 1]
    assert fwd.loc[("column", "l1"), "better_layers"] == "l0"
    assert fwd.loc[("column", "l0"), "n_better"] == 0 and fwd.loc[("row", "l1"), "n_better"] == 0


def test_stitching_tie_is_not_significant_but_a_real_gap_is():
    """The stitching grid's McNemar p-values (per-image correctness of both cells on the same test
    images) through the one "more similar than itself" implementation: 0.975 vs 0.973 on 1000 test
    images is a raw offender, not a significant one (one image apart would be a tie); 0.990 vs 0.950 is."""
    from repmatch.stitching.grid import accuracy_uncertainty
    from repmatch.stitching.network import Cell

    n = 1000
    unc = section_settings("uncertainty", {"mcnemar": "midp"})

    def msti_of(correct: dict[tuple[int, int], np.ndarray]) -> pd.DataFrame:
        per_image = {Cell("dm", f"l{i}", f"l{j}"): v for (i, j), v in correct.items()}
        tests = accuracy_uncertainty(per_image, unc)
        rows = [{"model_a": "m_seed0", "layer_a": c.layer_a, "index_a": int(c.layer_a[1]), "model_b": "m_seed0",
                 "layer_b": c.layer_b, "index_b": int(c.layer_b[1]), "method": c.method, "metric": "accuracy",
                 "value": float(v.mean()), "ci_low": tests[c][0], "ci_high": tests[c][1], "p_column": tests[c][2],
                 "p_row": tests[c][3]} for c, v in per_image.items()]  # fmt: skip
        return more_similar_than_itself(stitching_scores(pd.DataFrame(rows), n), alpha=0.05).set_index(["direction", "layer"])

    diag = np.arange(n) < 973
    tie = np.zeros(n, dtype=bool)
    tie[:970] = True
    tie[973:978] = True  # 970 shared, 5 right only here, 3 right only on the diagonal: 975 vs 973
    correct = {(0, 0): np.ones(n, dtype=bool), (1, 1): diag, (0, 1): tie, (1, 0): np.arange(n) < 900}
    col = msti_of(correct).loc[("column", "l1")]
    assert col["n_better"] == 1 and col["better_layers"] == "l0" and col["n_better_significant"] == 0
    # one-sided mid-p by hand: X ~ Bin(8, 1/2), b = 5: P(X > 5) + P(X = 5)/2 = (28 + 8 + 1)/256 + 56/512 = 130/512
    assert col["p_min_adjusted"] == pytest.approx(130 / 512)  # the only test of its group: Holm leaves it
    one_apart = {**correct, (0, 1): np.arange(n) < 974}
    col = msti_of(one_apart).loc[("column", "l1")]
    assert (col["n_better"], col["n_ties"], col["n_better_significant"]) == (0, 1, 0)
    strong = {**correct, (1, 1): np.arange(n) < 950, (0, 1): np.arange(n) < 990}
    col = msti_of(strong).loc[("column", "l1")]
    assert col["n_better"] == 1 and col["n_better_significant"] == 1


# --- specificity ------------------------------------------------------------------------------------


def test_specificity_interval_and_binomial_test_by_hand():
    cells = _grid(3)
    cells[(0, 2)] = 2.0  # rows A -> B: l0 wrong; columns B -> A (mirror): l2 wrong -> 4 of 6 right, chance 1/3
    spec = specificity(similarity_scores(_table(cells)), level=0.95).iloc[0]
    assert (spec["n_correct"], spec["n_total"], spec["chance"]) == (4, 6, pytest.approx(1 / 3))
    # one-sided exact binomial P(X >= 4), X ~ Bin(6, 1/3) = (15 * 4 + 6 * 2 + 1) / 729
    assert spec["p_value"] == pytest.approx(73 / 729)
    z, k, n = 1.959963984540054, 4, 6
    centre = (k + z * z / 2) / (n + z * z)
    half = z / (n + z * z) * math.sqrt(k * (n - k) / n + z * z / 4)
    assert (spec["ci_low"], spec["ci_high"]) == (pytest.approx(centre - half), pytest.approx(centre + half))
    assert spec["interval"] == "wilson" and spec["test"] == "binomial_vs_chance"
    assert spec["ci_low"] < spec["accuracy"] < spec["ci_high"]


def test_specificity_without_cross_pairs_is_nan_not_an_error():
    spec = specificity(similarity_scores(_table(_grid(3), model_b="m_seed0"))).iloc[0]
    assert spec["n_total"] == 0 and np.isnan(spec["ci_low"]) and np.isnan(spec["p_value"])


# --- within vs cross seed ---------------------------------------------------------------------------


def test_within_vs_cross_exact_permutation_p():
    cross = _grid(3, off=0.2)
    cross.update({(0, 0): 0.9, (1, 1): 0.8, (2, 2): 0.85})
    within = []
    for model, neighbours in (("m_seed0", (0.5, 0.6)), ("m_seed1", (0.55, 0.52))):
        g = _grid(3, off=0.1)
        g[(0, 1)] = g[(1, 0)] = neighbours[0]
        g[(1, 2)] = g[(2, 1)] = neighbours[1]
        within.append(_table(g, model, model))
    scores = similarity_scores(pd.concat([_table(cross), *within], ignore_index=True))
    wc = within_vs_cross(scores, n_permutations=1000, seed=0).iloc[0]
    # 3 distinct cross-seed diagonal values (the symmetric mirror counts once), 4 distinct neighbour values
    assert (wc["n_cross"], wc["n_within"]) == (3, 4)
    assert wc["mean_cross"] == pytest.approx(0.85) and wc["mean_within"] == pytest.approx(0.5425)
    assert wc["difference"] == pytest.approx(0.85 - 0.5425)
    assert wc["p_value"] == pytest.approx(1 / math.comb(7, 3))  # exact: the observed split is the most extreme of 35
    # reversed roles (cross less similar): not significant
    flipped = scores.assign(value=np.where(scores["model_a"] != scores["model_b"], scores["value"] - 0.5, scores["value"]))
    assert within_vs_cross(flipped, n_permutations=1000).iloc[0]["p_value"] > 0.5


def test_within_vs_cross_is_nan_without_within_pairs():
    wc = within_vs_cross(similarity_scores(_table(_grid(3))), n_permutations=100).iloc[0]
    assert wc["n_within"] == 0 and np.isnan(wc["p_value"])


# --- the per-cell p-values behind p_column / p_row ---------------------------------------------------


@pytest.mark.parametrize("larger", [True, False])
def test_counterpart_pvalues_match_a_naive_count(larger):
    from repmatch.uncertainty.significance import counterpart_pvalues

    rng = np.random.default_rng(3)
    reps = rng.normal(size=(40, 3, 4))
    reps[5, 1, 2] = np.nan  # a degenerate resample of one cell is dropped from its comparisons
    names_a, names_b = ["l0", "l1", "only_a"], ["l1", "l0", "l2", "only_b"]
    p_col, p_row = counterpart_pvalues(reps, names_a, names_b, larger_is_similar=larger)
    s = 1.0 if larger else -1.0

    def naive(x, y):
        d = s * (x - y)
        d = d[np.isfinite(d)]
        return (np.sum(d <= 0) + 1) / (d.size + 1)

    for i, na in enumerate(names_a):
        for j, nb in enumerate(names_b):
            c = names_a.index(nb) if nb in names_a else None  # column counterpart row
            k = names_b.index(na) if na in names_b else None  # row counterpart column
            want_col = np.nan if c is None or c == i else naive(reps[:, i, j], reps[:, c, j])
            want_row = np.nan if k is None or k == j else naive(reps[:, i, j], reps[:, i, k])
            np.testing.assert_equal(p_col[i, j], want_col)
            np.testing.assert_equal(p_row[i, j], want_row)
    assert np.isnan(p_col[:, 2]).all() and np.isnan(p_row[2]).all()  # no counterparts: l2 of B, only_a of A


def test_the_test_column_names_mcnemar_for_stitching_and_the_bootstrap_for_indices():
    """Stitched accuracy's p-values are McNemar tests, a similarity index's paired-bootstrap ones: the
    table says which, per family."""
    rows = []
    for family in ("stitching", "similarity"):
        for la, lb, v, p in (("l0", "l0", 0.90, np.nan), ("l1", "l1", 0.80, np.nan), ("l0", "l1", 0.85, 0.01), ("l1", "l0", 0.5, 0.9)):
            rows.append({"family": family, "method": "tlm" if family == "stitching" else "linear_cka", "metric": "accuracy",
                         "model_a": "m_seed0", "model_b": "m_seed1", "layer_a": la, "layer_b": lb, "index_a": int(la[1]),
                         "index_b": int(lb[1]), "value": v, "p_column": p, "p_row": p, "larger_is_better": True,
                         "tie_tolerance": 0.0})  # fmt: skip
    msti = more_similar_than_itself(pd.DataFrame(rows), alpha=0.05, correction="none")
    assert set(msti.loc[msti["family"] == "stitching", "test"]) == {"mcnemar"}
    assert set(msti.loc[msti["family"] == "similarity", "test"]) == {"paired_bootstrap"}
    beaten = msti[(msti["direction"] == "column") & (msti["layer"] == "l1")]
    assert (beaten["n_better_significant"] == 1).all()
