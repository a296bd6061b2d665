"""Confidence intervals: bootstrap percentile, Student t (seeds, pairs, coordinate draws), binomial.

Which interval for which number (docs/design/reading-the-intervals.md has the reading guide):

* similarity index of one cell: :func:`percentile_interval` of its probe-sample bootstrap
  replicates (variability over the probe set, networks fixed);
* anything averaged over a handful of independent units (network pairs / seeds, the R
  coordinate draws of the subspace match): :func:`t_interval` (or
  :func:`t_interval_from_summary` when only mean, std and count were stored), and
  :func:`across_pairs` for a whole stack of grids;
* an accuracy k of n (stitched accuracy on the test set, specificity): :func:`wilson_interval`
  (good coverage for any k, including 0 and n); :func:`clopper_pearson_interval` when a
  guaranteed (conservative) coverage is wanted.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

# scipy.stats is imported inside the functions that need its t and beta quantiles: importing it costs
# ~0.7 s, paid by every pair job that only needs a Wilson interval (the normal quantile is stdlib)


def _check_level(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return float(level)


def percentile_interval(replicates: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bootstrap percentile interval along ``axis`` (the resamples), ignoring NaN replicates.

    Returns (ci_low, ci_high, n_valid); cells with fewer than 2 finite replicates get NaN bounds.
    Degenerate resamples (e.g. a rank-deficient resample for CCA) are dropped, and ``n_valid``
    says how many were left: report it as ``n_boot``.
    """
    level = _check_level(level)
    reps = np.asarray(replicates, dtype=np.float64)
    finite = np.isfinite(reps)
    n_valid = finite.sum(axis=axis)
    alpha = (1.0 - level) / 2.0
    with np.errstate(all="ignore"), _quiet():
        lo = np.nanquantile(np.where(finite, reps, np.nan), alpha, axis=axis)
        hi = np.nanquantile(np.where(finite, reps, np.nan), 1.0 - alpha, axis=axis)
    lo = np.where(n_valid >= 2, lo, np.nan)
    hi = np.where(n_valid >= 2, hi, np.nan)
    return lo, hi, n_valid


class _quiet:
    """Silence numpy's all-NaN-slice RuntimeWarning (those cells are NaN on purpose)."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def t_interval(values: np.ndarray, level: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Student-t interval of the mean over independent units along ``axis`` (NaNs dropped).

    Returns (mean, std (ddof=1), ci_low, ci_high, count). With fewer than 2 units the spread and
    the interval are NaN: one seed has no across-seed uncertainty estimate.
    """
    level = _check_level(level)
    v = np.asarray(values, dtype=np.float64)
    count = np.isfinite(v).sum(axis=axis)
    with np.errstate(all="ignore"), _quiet():
        mean = np.nanmean(v, axis=axis)
        std = np.nanstd(v, axis=axis, ddof=1)
    lo, hi = _t_bounds(mean, std, count, level)
    std = np.where(count >= 2, std, np.nan)
    return mean, std, lo, hi, count


def _t_bounds(mean: np.ndarray, std: np.ndarray, count: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    count = np.asarray(count, dtype=np.float64)
    ok = count >= 2
    df = np.where(ok, count - 1, 1.0)
    from scipy import stats

    q = stats.t.ppf(0.5 + level / 2.0, df)
    half = q * np.asarray(std) / np.sqrt(np.where(ok, count, 1.0))
    return np.where(ok, mean - half, np.nan), np.where(ok, mean + half, np.nan)


def t_interval_from_summary(mean: np.ndarray, std: np.ndarray, count: np.ndarray, level: float = 0.95,
                            ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """t interval from stored summaries (e.g. the subspace table's ``value``, ``value_std``, ``repeats``).

    ``ddof`` is the one the stored std used (the subspace tables store ``np.std``, ddof=0); it is
    converted to the sample std (ddof=1) first.
    """
    level = _check_level(level)
    count = np.asarray(count, dtype=np.float64)
    with np.errstate(all="ignore"):
        s1 = np.asarray(std, dtype=np.float64) * np.sqrt(np.where(count > 1, (count - ddof) / (count - 1), np.nan))
    return _t_bounds(np.asarray(mean, dtype=np.float64), s1, count, level)


def wilson_interval(k: np.ndarray | int, n: np.ndarray | int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion k / n (Wilson 1927); NaN where n = 0.

    (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), p = k/n.
    """
    level = _check_level(level)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= k <= n")
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    with np.errstate(all="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 (k = n) the lower (upper) bound is exactly 0 (1): written so, not left to round-off
    lo = np.where(n > 0, np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0)), np.nan)
    hi = np.where(n > 0, np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0)), np.nan)
    return lo, hi


def clopper_pearson_interval(k: np.ndarray | int, n: np.ndarray | int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) binomial interval: coverage >= level for every true proportion."""
    level = _check_level(level)
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    a = (1.0 - level) / 2.0
    from scipy import stats

    with np.errstate(all="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(a, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - a, k + 1, n - k), 1.0)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


@dataclass(frozen=True)
class AcrossPairs:
    """Mean grid over network pairs with its spread and t interval (each (L_a, L_b)); ``count``: pairs per cell."""

    mean: np.ndarray
    std: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    count: np.ndarray


def across_pairs(grids: np.ndarray, level: float = 0.95) -> AcrossPairs:
    """Aggregate a (P, L_a, L_b) stack of per-pair grids (P network pairs / seeds) into mean, std, t interval.

    Caveat written in the notes: pairs sharing a network are not independent (pairs (0,1), (0,2),
    (1,2) of 3 seeds share seeds), so the t interval over pairs is optimistic; over *seeds*
    (one grid per seed, e.g. within-network grids) it is exact under normality.
    """
    mean, std, lo, hi, count = t_interval(np.asarray(grids, dtype=np.float64), level=level, axis=0)
    return AcrossPairs(mean, std, lo, hi, count)


def bootstrap_mean_interval(values: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95,
                            axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of a mean over units along ``axis`` (e.g. the R coordinate
    draws of a subspace match, when their distribution is skewed or bounded and a t interval
    is doubtful). NaN units are dropped per cell."""
    v = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.shape[0], size=(n_boot, v.shape[0]))
    with np.errstate(all="ignore"), _quiet():
        means = np.nanmean(v[idx], axis=1)
    lo, hi, _ = percentile_interval(means, level=level, axis=0)
    return lo, hi
