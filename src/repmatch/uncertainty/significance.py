"""Tests behind the sanity claims: each returns a p-value (or counts) that a table can carry.

* :func:`mcnemar_test` — two stitched cells evaluated on the *same* test images: only the
  discordant images (right in one, wrong in the other) carry information; exact binomial test
  of b vs c, or its mid-p version (less conservative, close to nominal size; Fagerland et al. 2013).
* :func:`paired_bootstrap_pvalue` — two cells of the same similarity grid(s) with replicates
  from the *same* probe resamples: the bootstrap distribution of their difference.
* :func:`holm` — Holm's step-down correction (controls the family-wise error rate, valid under
  any dependence; uniformly more powerful than Bonferroni).
* :func:`counterpart_pvalues` — per cell of a grid of paired bootstrap replicates, the p-values of
  "beats its column's / row's counterpart" (the similarity tables' ``p_column``, ``p_row``); the
  "more similar than itself" counts built on them are ``repmatch.sanity.more_similar_than_itself``.
* :func:`mcnemar_one_sided_pvalue` — the same question for two stitched cells (``repmatch.stitching``).
* :func:`binomial_test_vs_chance` — specificity accuracy k of n against its chance level.
* :func:`permutation_test` — within-seed vs cross-seed values of an index (difference of means).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import comb

import numpy as np

from .intervals import clopper_pearson_interval, wilson_interval

# --- stitching: McNemar --------------------------------------------------------------------------


def _half_binomial_mass(m: int, lo: int, hi: int) -> Fraction:
    """P(lo <= X <= hi) for X ~ Bin(m, 1/2), exactly (integer binomial coefficients over 2^m).

    Exact rather than scipy's incomplete beta: McNemar's counts are small integers, the sum is
    cheap, and a stitching pair job need not import scipy.stats (~0.7 s) for it."""
    lo, hi = max(lo, 0), min(hi, m)
    return Fraction(sum(comb(m, i) for i in range(lo, hi + 1)), 2**m) if lo <= hi else Fraction(0)



@dataclass(frozen=True)
class McNemarResult:
    """``b``: images right in the first cell only; ``c``: right in the second only; ``p_value`` two-sided."""

    b: int
    c: int
    p_value: float
    method: str


def mcnemar_test(correct_1: np.ndarray, correct_2: np.ndarray, method: str = "midp") -> McNemarResult:
    """McNemar's test of equal accuracy of two classifiers on the same images (paired 0/1 vectors).

    Under H0 each discordant image is equally likely to favour either cell, so b ~ Bin(b + c, 1/2).
    ``exact``: p = min(1, 2 P(X <= min(b, c))). ``midp``: the exact p minus the probability of the
    observed table, p = 2 P(X < min(b, c)) + P(X = min(b, c)) (capped at 1). No discordant
    images: p = 1 (no evidence of a difference).
    """
    x = np.asarray(correct_1)
    y = np.asarray(correct_2)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two equally long 1-d correct/incorrect vectors, got {x.shape} and {y.shape}")
    if not (np.isin(x, (0, 1)).all() and np.isin(y, (0, 1)).all()):
        raise ValueError("correct/incorrect vectors must hold only 0/1 (or booleans)")
    x, y = x.astype(bool), y.astype(bool)
    b = int(np.sum(x & ~y))
    c = int(np.sum(~x & y))
    return McNemarResult(b, c, mcnemar_pvalue(b, c, method), method)


def mcnemar_pvalue(b: int, c: int, method: str = "midp") -> float:
    """Two-sided McNemar p-value from the discordant counts (see :func:`mcnemar_test`)."""
    if method not in ("exact", "midp"):
        raise ValueError(f"method must be 'exact' or 'midp', got {method!r}")
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    cdf = _half_binomial_mass(m, 0, k)
    if method == "exact":
        return float(min(Fraction(1), 2 * cdf))
    return float(min(Fraction(1), 2 * cdf - _half_binomial_mass(m, k, k)))


def mcnemar_one_sided_pvalue(b: int, c: int, method: str = "midp") -> float:
    """One-sided McNemar p-value of H0 "the first cell is not more accurate" (b = right only in the first).

    exact: P(X >= b), X ~ Bin(b + c, 1/2); mid-p: P(X > b) + P(X = b) / 2. No discordant images: 1.
    """
    if method not in ("exact", "midp"):
        raise ValueError(f"method must be 'exact' or 'midp', got {method!r}")
    m = b + c
    if m == 0:
        return 1.0
    if method == "exact":
        return float(_half_binomial_mass(m, b, m))
    return float(_half_binomial_mass(m, b + 1, m) + _half_binomial_mass(m, b, b) / 2)


# --- multiple comparisons ------------------------------------------------------------------------


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (same shape; NaN entries are not counted as tests and stay NaN).

    Sorted p_(1) <= ... <= p_(m): adjusted p_(k) = max_{l <= k} min(1, (m - l + 1) p_(l)).
    Reject at family-wise level alpha where the adjusted p <= alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    flat = p.ravel()
    ok = np.isfinite(flat)
    vals = flat[ok]
    m = vals.size
    out = np.full(flat.shape, np.nan)
    if m:
        order = np.argsort(vals, kind="stable")
        adj = np.minimum(1.0, (m - np.arange(m)) * vals[order])
        adj = np.maximum.accumulate(adj)
        res = np.empty(m)
        res[order] = adj
        out[np.flatnonzero(ok)] = res
    return out.reshape(p.shape)


# --- indices: paired bootstrap -------------------------------------------------------------------


def paired_bootstrap_pvalue(rep_x: np.ndarray, rep_y: np.ndarray, alternative: str = "greater") -> np.ndarray:
    """p-value of H0 "theta_x <= theta_y" (``greater``) or "theta_x == theta_y" (``two-sided``)
    from paired bootstrap replicates (axis 0 = the shared resamples; NaN pairs dropped).

    The percentile-interval duality: the one-sided p-value is the fraction of resamples in which
    the difference x - y is <= 0 (with +1 in numerator and denominator, so p >= 1/(B+1) and a
    test at level alpha rejects exactly when the (1 - alpha) one-sided percentile bound of the
    difference excludes 0, up to the discreteness of B); two-sided doubles the smaller tail.
    """
    d = np.asarray(rep_x, dtype=np.float64) - np.asarray(rep_y, dtype=np.float64)
    valid = np.isfinite(d)
    nv = valid.sum(axis=0)
    le = np.where(valid, d <= 0, False).sum(axis=0)
    ge = np.where(valid, d >= 0, False).sum(axis=0)
    with np.errstate(all="ignore"):
        p_greater = (le + 1.0) / (nv + 1.0)
        p_less = (ge + 1.0) / (nv + 1.0)
    if alternative == "greater":
        p = p_greater
    elif alternative == "less":
        p = p_less
    elif alternative == "two-sided":
        p = np.minimum(1.0, 2.0 * np.minimum(p_greater, p_less))
    else:
        raise ValueError(f"alternative must be greater, less or two-sided, got {alternative!r}")
    return np.where(nv > 0, p, np.nan)


def counterpart_pvalues(replicates: np.ndarray, layers_a: Sequence[str], layers_b: Sequence[str], *,
                        larger_is_similar: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paired-bootstrap p-values of "cell (i, j) beats its counterpart", per cell of one grid.

    ``replicates``: (B, L_a, L_b) values of one index on shared resamples (rows: layers of A,
    columns: layers of B). The counterpart of column j is the cell (c, j) with A's layer c named
    like B's layer j (``p_column``); the counterpart of row i is (i, k) with B's layer k named like
    A's layer i (``p_row``). Each p-value tests H0 "value(i, j) is not more similar than the
    counterpart" one-sided (direction from ``larger_is_similar``) with
    :func:`paired_bootstrap_pvalue`; NaN where the layer has no counterpart, on the counterpart
    itself, and where no resample is finite. Why per cell and uncorrected: the sanity module
    (``repmatch.sanity.more_similar_than_itself``) chooses the family of candidates and corrects within it.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim != 3 or reps.shape[1:] != (len(layers_a), len(layers_b)):
        raise ValueError(f"need (B, {len(layers_a)}, {len(layers_b)}) replicates, got {reps.shape}")
    s = 1.0 if larger_is_similar else -1.0
    pos_a = {name: i for i, name in enumerate(layers_a)}
    pos_b = {name: j for j, name in enumerate(layers_b)}
    p_col = np.full(reps.shape[1:], np.nan)
    p_row = np.full(reps.shape[1:], np.nan)
    for j, name in enumerate(layers_b):
        c = pos_a.get(name)
        if c is not None:
            p_col[:, j] = paired_bootstrap_pvalue(s * reps[:, :, j], s * reps[:, c, j][:, None], "greater")
            p_col[c, j] = np.nan
    for i, name in enumerate(layers_a):
        k = pos_b.get(name)
        if k is not None:
            p_row[i, :] = paired_bootstrap_pvalue(s * reps[:, i, :], s * reps[:, i, k][:, None], "greater")
            p_row[i, k] = np.nan
    return p_col, p_row


# --- specificity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BinomialVsChance:
    k: int
    n: int
    accuracy: float
    chance: float
    ci_low: float
    ci_high: float
    p_value: float
    interval: str


def binomial_test_vs_chance(k: int, n: int, chance: float, level: float = 0.95, interval: str = "wilson") -> BinomialVsChance:
    """Specificity accuracy k / n with a binomial interval and the one-sided exact test of H0 "accuracy <= chance".

    Caveat (in the notes): the n cases of a specificity table share networks and layers, so they
    are not independent trials; the interval treats them as such and is therefore optimistic.
    """
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < chance < 1.0:
        raise ValueError(f"chance level must be in (0, 1), got {chance}")
    if interval == "wilson":
        lo, hi = wilson_interval(k, n, level)
    elif interval == "clopper_pearson":
        lo, hi = clopper_pearson_interval(k, n, level)
    else:
        raise ValueError(f"interval must be wilson or clopper_pearson, got {interval!r}")
    from scipy import stats

    p = float(stats.binom.sf(k - 1, n, chance))  # P(X >= k)
    return BinomialVsChance(int(k), int(n), k / n, float(chance), float(lo), float(hi), p, interval)


# --- within vs cross seed ------------------------------------------------------------------------


def permutation_test(x: np.ndarray, y: np.ndarray, *, n_perm: int = 10_000, seed: int = 0,
                     alternative: str = "two-sided") -> tuple[float, float]:
    """Permutation test of mean(x) - mean(y) (e.g. within-network vs cross-seed values of an index).

    Returns (observed difference, p-value). When the number of distinct splits is at most
    ``n_perm`` every split is enumerated (exact test); otherwise ``n_perm`` random relabellings
    with the observed labelling counted once (p >= 1/(n_perm + 1)).
    """
    import itertools
    import math

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 1 or y.size < 1:
        raise ValueError("need at least one finite value in each group")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    pooled = np.concatenate([x, y])
    nx, n = x.size, pooled.size
    obs = x.mean() - y.mean()
    total = pooled.sum()

    def diffs(sum_x: np.ndarray) -> np.ndarray:
        return sum_x / nx - (total - sum_x) / (n - nx)

    if math.comb(n, nx) <= n_perm:
        sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), nx)])
        d = diffs(sums)
    else:
        rng = np.random.default_rng(seed)
        sums = np.array([pooled[rng.permutation(n)[:nx]].sum() for _ in range(n_perm)])
        d = np.concatenate([[obs], diffs(sums)])
    tol = 1e-12 * max(1.0, abs(obs))
    if alternative == "greater":
        p = np.mean(d >= obs - tol)
    elif alternative == "less":
        p = np.mean(d <= obs + tol)
    else:
        p = np.mean(np.abs(d) >= abs(obs) - tol)
    return float(obs), float(p)
