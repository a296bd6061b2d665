"""Out-of-distribution metrics: how well a score tells stitched representations from real ones.

Pure functions of two score arrays (numpy in, floats out), shared by the Gaussian (Mahalanobis)
scores of :mod:`.scores` and the learned energy detectors of :mod:`.detectors`: AUROC
(Mann-Whitney U), its two-sided reading (separability and direction), AUPR and FPR95.
"""

from __future__ import annotations

import numpy as np


def average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-d array, ties sharing their average rank (scipy.stats.rankdata's 'average',
    without importing scipy.stats, ~0.7 s per stitching job)."""
    v = np.asarray(v).ravel()
    order = np.argsort(v, kind="stable")
    sv = v[order]
    starts = np.flatnonzero(np.r_[True, sv[1:] != sv[:-1]])
    ends = np.r_[starts[1:], sv.size]  # one past each tie block
    mean_rank = (starts + 1 + ends) / 2.0  # average of the positions starts+1 .. ends
    ranks = np.empty(sv.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores ``positive`` vs ``negative`` (Mann-Whitney U; ties count 1/2)."""
    positive, negative = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if positive.size == 0 or negative.size == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    if not (np.isfinite(positive).all() and np.isfinite(negative).all()):
        raise ValueError("AUROC got NaN/Inf scores")
    ranks = average_ranks(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def separability(auc: float) -> tuple[float, float]:
    """Two-sided reading of an AUROC: (max(AUROC, 1 - AUROC), direction +1 / -1 / 0 at exactly 0.5)."""
    return max(auc, 1.0 - auc), float(np.sign(auc - 0.5))


def average_precision(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the precision-recall curve of ``positive`` vs ``negative`` scores (higher = positive),
    as the step-wise average precision (sklearn's ``average_precision_score``; tied scores share one threshold)."""
    pos, neg = np.asarray(positive, np.float64).ravel(), np.asarray(negative, np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise ValueError("AUPR needs at least one positive and one negative score")
    scores = np.concatenate([pos, neg])
    labels = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    tp = np.cumsum(labels)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision, recall = tp / (tp + fp), tp / pos.size
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_95_tpr(stitched: np.ndarray, real: np.ndarray) -> float:
    """Fraction of stitched (out) samples accepted as in-distribution at the energy threshold that keeps
    95% of the real samples in (Liu et al.'s FPR95 with in-distribution as the positive class)."""
    real = np.asarray(real, np.float64).ravel()
    threshold = np.quantile(real, 0.95, method="higher")
    return float(np.mean(np.asarray(stitched, np.float64).ravel() <= threshold))


def detection_metrics(stitched: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """``detector_auroc`` (stitched scored as more OOD than real), its two-sided reading
    (``detector_separability``, ``detector_direction``: -1 when stitched representations look *more*
    in-distribution than real ones -- energy falls as activations grow, so an inflated stitch can do
    that), ``detector_aupr`` (stitched = positive) and ``detector_fpr95`` of energy scores."""
    auc = auroc(stitched, real)
    sep, direction = separability(auc)
    return {"detector_auroc": auc, "detector_separability": sep, "detector_direction": direction,
            "detector_aupr": average_precision(stitched, real), "detector_fpr95": fpr_at_95_tpr(stitched, real)}
