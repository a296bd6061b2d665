"""Scores of trained stitches: task performance and how in-distribution the stitched representation is.

Why the out-of-distribution diagnostics: the seed paper's point is that TLM can reach high
accuracy by feeding B's back half representations that look nothing like B's own layer-j
activations (so "high stitching accuracy" does not mean "similar representations"). On the same
test inputs we therefore compare the stitched representation s with B's real one r:

* ``repr_diff``: ||s - r||_F^2 / ||r||_F^2 over the test set (the paper's structural DM score);
* ``rel_l2``: mean_n ||s_n - r_n|| / mean_n ||r_n|| (typical per-sample error, relative);
* ``norm_ratio``: mean_n ||s_n|| / mean_n ||r_n|| (TLM often inflates the norm);
* ``mahalanobis_auroc``: each sample gets the mean over positions of the squared Mahalanobis
  distance of its channel vectors under B's layer-j statistics (mean / covariance of B's real
  activations on the training split); the AUROC of telling stitched (positive) from real
  (negative) samples by that score: 0.5 = indistinguishable, 1 = every stitched sample is more
  atypical than every real one. Ratios of means are used (not means of ratios) so a sample
  whose real activation is all zero cannot divide by zero.

The covariance gets a small shrinkage (``shrinkage`` x mean variance on the diagonal) so
directions B never uses (dead ReLU channels) count as very atypical instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from ..models import StitchableNet
from .direct import F64, regularised_eig
from .layer import Stitch, affine_map, as_map
from .network import Cell, freeze, group_by_back

METRICS = ("accuracy", "relative_accuracy", "loss", "repr_diff", "rel_l2", "norm_ratio", "mahalanobis_auroc")


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores ``positive`` vs ``negative`` (Mann-Whitney U; ties count 1/2)."""
    positive, negative = np.asarray(positive, dtype=np.float64).ravel(), np.asarray(negative, dtype=np.float64).ravel()
    if positive.size == 0 or negative.size == 0:
        raise ValueError("AUROC needs at least one positive and one negative score")
    if not (np.isfinite(positive).all() and np.isfinite(negative).all()):
        raise ValueError("AUROC got NaN/Inf scores")
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    u = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def gaussian_whitener(mean: torch.Tensor, cov: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitening map (W, c) of B's per-position channel distribution: ||W v + c||^2 is the squared
    Mahalanobis distance of v under (mean, cov + shrinkage x mean variance), i.e. W^T W = precision.

    Returned as an affine map so scoring is one 1x1 conv on the (N, C, H, W) maps (no transposed
    copies of every activation, and a matmul rather than a per-row quadratic form).
    """
    evals, evecs = regularised_eig(cov, shrinkage)
    whiten = evecs.T / evals.sqrt()[:, None]  # (k, C): W^T W = (cov + shrink)^+
    return whiten, -(whiten @ mean.to(F64))


def mahalanobis_per_sample(h: torch.Tensor, whiten: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over positions of the squared Mahalanobis distance of the channel vectors.

    Computed in ``h``'s dtype: the whitener comes from float64 statistics, and with the
    shrinkage it is well conditioned, so float32 is ample for a ranking score.
    """
    u = affine_map(as_map(h), whiten.to(h), shift.to(h))
    return (u * u).sum(1).flatten(1).mean(1)


@torch.no_grad()
def evaluate_stitches(
    model_a: StitchableNet,
    model_b: StitchableNet,
    stitches: Mapping[Cell, Stitch],
    x: np.ndarray,
    y: np.ndarray,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
    whiteners: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    max_stack: int | None = None,
) -> tuple[dict[Cell, dict[str, float]], dict[str, float]]:
    """Score every stitch on (x, y); returns ({cell: {metric: value}}, {"accuracy", "loss"} of B itself).

    ``whiteners`` maps B layer -> :func:`gaussian_whitener` output for the Mahalanobis AUROC (metric omitted
    when absent). Stitches into one B layer are run stacked, as in training; running sums stay
    on the device (no host sync per batch).
    """
    if len(y) == 0 or len(x) != len(y):
        raise ValueError(f"stitch evaluation needs a non-empty dataset with one label per input, got {len(x)} inputs, {len(y)} labels")
    freeze(model_a), freeze(model_b)
    model_a.to(device), model_b.to(device)
    cells = list(stitches)
    position = {c: k for k, c in enumerate(cells)}
    for s in stitches.values():
        s.to(device).eval()
    groups = group_by_back(cells, model_b.layer_names, max_stack)
    fronts = sorted({c.layer_a for c in cells}, key=model_a.layer_names.index)
    backs = sorted({c.layer_b for c in cells}, key=model_b.layer_names.index)
    # columns: correct, loss, ||s-r||^2, ||s-r||, ||s||, ||r||^2, ||r||  (summed over samples)
    sums = torch.zeros(len(cells), 7, dtype=F64, device=device)
    base = torch.zeros(2, dtype=F64, device=device)
    slots = [torch.tensor([position[c] for c in group], device=device) for _, group in groups]
    maha_stitched: dict[Cell, list[torch.Tensor]] = {c: [] for c in cells}
    maha_real: dict[str, list[torch.Tensor]] = {lb: [] for lb in backs}
    for start in range(0, len(y), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(device)
        yb = torch.from_numpy(np.ascontiguousarray(y[start : start + batch_size])).to(device).long()
        n = len(yb)
        feats_a = model_a.features(xb, fronts)
        real = model_b.features(xb, backs)
        logits_b = model_b(xb)
        base += torch.stack([(logits_b.argmax(1) == yb).sum().double(), F.cross_entropy(logits_b, yb, reduction="sum").double()])
        if whiteners is not None:
            for lb in backs:
                maha_real[lb].append(mahalanobis_per_sample(real[lb], *whiteners[lb]))
        for (lb, group), slot in zip(groups, slots):
            g = len(group)
            z = torch.cat([stitches[c](feats_a[c.layer_a]) for c in group])
            logits = model_b.forward_from(z, lb).view(g, n, -1)
            correct = (logits.argmax(2) == yb).sum(1).double()
            loss = F.cross_entropy(logits.flatten(0, 1), yb.repeat(g), reduction="none").view(g, n).double().sum(1)
            r = real[lb].flatten(1)
            r_norm = r.norm(dim=1).double()
            zs = z.view(g, n, -1)
            rows = []
            for k in range(g):  # one member at a time: (n, D) temporaries instead of (g, n, D)
                d_norm = (zs[k] - r).norm(dim=1).double()
                rows.append(torch.stack([(d_norm**2).sum(), d_norm.sum(), zs[k].norm(dim=1).double().sum()]))
            real_sums = torch.stack([(r_norm**2).sum(), r_norm.sum()]).expand(g, 2)
            block = torch.cat([correct[:, None], loss[:, None], torch.stack(rows), real_sums], dim=1)
            sums.index_add_(0, slot, block)
            if whiteners is not None:
                maha = mahalanobis_per_sample(z, *whiteners[lb]).view(g, n)
                for k, c in enumerate(group):
                    maha_stitched[c].append(maha[k])
    n_total = len(y)
    base_acc, base_loss = (base / n_total).tolist()
    table = sums.cpu().numpy()
    out: dict[Cell, dict[str, float]] = {}
    for c in cells:
        correct, loss, sq_diff, norm_diff, norm_stitched, sq_real, norm_real = table[position[c]]
        scores = {
            "accuracy": correct / n_total,
            "relative_accuracy": (correct / n_total) / base_acc if base_acc > 0 else float("nan"),
            "loss": loss / n_total,
            "repr_diff": sq_diff / sq_real if sq_real > 0 else float("inf"),
            "rel_l2": norm_diff / norm_real if norm_real > 0 else float("inf"),
            "norm_ratio": norm_stitched / norm_real if norm_real > 0 else float("inf"),
        }
        if whiteners is not None:
            scores["mahalanobis_auroc"] = auroc(
                torch.cat(maha_stitched[c]).cpu().numpy(), torch.cat(maha_real[c.layer_b]).cpu().numpy()
            )
        out[c] = {k: float(v) for k, v in scores.items()}
    return out, {"accuracy": base_acc, "loss": base_loss}
