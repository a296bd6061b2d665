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
* ``mahalanobis_separability`` = max(AUROC, 1 - AUROC) and ``mahalanobis_direction`` (+1: stitched
  samples score as *more* atypical than real ones, -1: as *less* atypical, e.g. a stitch that
  collapses onto B's mean; 0 at exactly 0.5). An AUROC of 0 is perfect separation, not "more
  typical": read alone, a one-sided AUROC hides half of the evidence.
* ``mahalanobis_cc_*``: the same three for the class-conditional score of Lee et al. (NeurIPS
  2018): per-class means, one shared within-class covariance, score = the distance to the
  nearest class mean. The class-agnostic score calls a point between two class clusters
  typical (it is near the global mean); the class-conditional one does not.

Why a variance floor: the covariance gets ``shrinkage`` x mean variance added to *every*
eigenvalue, and no direction is dropped. Directions B never uses (dead ReLU channels, variance
exactly 0) then have variance = the floor, so a stitch that writes +100 into a dead channel is
scored as what it is, the most atypical thing a stitch can do (the pseudo-inverse rule of DM,
which drops such directions, would score it exactly like the real map). ``shrinkage = 0``
keeps the pseudo-inverse rule (no floor; dead directions are ignored).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..networks.stitchable import StitchableNet
from .direct import F64, regularised_eig
from .layer import Stitch, affine_map, as_map
from .network import Cell, freeze, group_by_back
from .ood_metrics import auroc, detection_metrics, separability

MAHALANOBIS_METRICS = ("mahalanobis_auroc", "mahalanobis_separability", "mahalanobis_direction")
CLASS_MAHALANOBIS_METRICS = ("mahalanobis_cc_auroc", "mahalanobis_cc_separability", "mahalanobis_cc_direction")
METRICS = ("accuracy", "relative_accuracy", "loss", "repr_diff", "rel_l2", "norm_ratio", *MAHALANOBIS_METRICS)


def floored_eig(cov: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of ``cov + lam I`` with ``lam = shrinkage x mean variance``, every direction kept.

    Negative round-off eigenvalues count as 0 (so dead directions get exactly the floor). When the
    whole layer is constant (mean variance 0) the floor is ``shrinkage`` in absolute units.
    ``shrinkage = 0``: the pseudo-inverse rule of :func:`regularised_eig` (null directions dropped).
    """
    if shrinkage < 0:
        raise ValueError(f"shrinkage must be >= 0, got {shrinkage}")
    if shrinkage == 0:
        return regularised_eig(cov, 0.0)
    cov = cov.to(F64)
    d = cov.shape[0]
    evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    mean_var = float(torch.trace(cov)) / d
    lam = shrinkage * mean_var if mean_var > 0 else shrinkage
    return evals.clamp_min(0.0) + lam, evecs


def gaussian_whitener(mean: torch.Tensor, cov: torch.Tensor, shrinkage: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitening map (W, c) of B's per-position channel distribution: ||W v + c||^2 is the squared
    Mahalanobis distance of v under (mean, cov + shrinkage x mean variance), i.e. W^T W = precision.

    Every direction is kept (:func:`floored_eig`: a variance floor, not a cut-off), so activity
    in channels B never uses is scored, and scored high.
    Returned as an affine map so scoring is one 1x1 conv on the (N, C, H, W) maps (no transposed
    copies of every activation, and a matmul rather than a per-row quadratic form).
    """
    evals, evecs = floored_eig(cov, shrinkage)
    whiten = evecs.T / evals.sqrt()[:, None]  # (k, C): W^T W = (cov + floor)^-1
    return whiten, -(whiten @ mean.to(F64))


class ClassMoments:
    """Float64 per-class sums of B's per-position channel vectors (for class-conditional Mahalanobis).

    ``update(rows, labels)``: rows (n, C) with one class label per row (a sample's label repeated
    over its positions).
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.sums: torch.Tensor | None = None
        self.counts = torch.zeros(num_classes, dtype=F64)

    def update(self, rows: torch.Tensor, labels: torch.Tensor) -> None:
        rows, labels = rows.to(F64).cpu(), labels.long().cpu()
        if self.sums is None:
            self.sums = torch.zeros(self.num_classes, rows.shape[1], dtype=F64)
        self.sums.index_add_(0, labels, rows)
        self.counts += torch.bincount(labels, minlength=self.num_classes).to(F64)

    def means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(class means (K', C) of the classes seen, their row fractions (K',))."""
        if self.sums is None or self.counts.sum() == 0:
            raise ValueError("no data accumulated for the class means")
        seen = self.counts > 0
        return self.sums[seen] / self.counts[seen, None], self.counts[seen] / self.counts.sum()


def class_whitener(
    mean: torch.Tensor, cov: torch.Tensor, class_means: torch.Tensor, class_weights: torch.Tensor, shrinkage: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-conditional Mahalanobis (Lee et al. 2018): shared within-class covariance, per-class means.

    The within-class covariance is the total covariance minus the between-class one,
    ``cov - sum_c w_c (mu_c - mu)(mu_c - mu)^T`` (exact for population moments), floored like
    :func:`gaussian_whitener`. Returns (W, c, centres): ``u = W v + c`` is the whitened vector
    relative to the global mean and ``centres`` (K, k) the whitened class means relative to it,
    so the distance of v to class k is ``||u - centres[k]||^2``.
    """
    # the class sums are accumulated on the CPU (ClassMoments), the global moments on the job's device
    mean, cov, class_means, class_weights = (t.to(cov.device, F64) for t in (mean, cov, class_means, class_weights))
    dev = class_means - mean
    within = cov - (dev * class_weights[:, None]).T @ dev
    whiten, shift = gaussian_whitener(mean, 0.5 * (within + within.T), shrinkage)
    return whiten, shift, dev @ whiten.T


def mahalanobis_per_sample(h: torch.Tensor, whiten: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per sample: mean over positions of the squared Mahalanobis distance of the channel vectors.

    Computed in ``h``'s dtype: the whitener comes from float64 statistics, and with the
    shrinkage it is well conditioned, so float32 is ample for a ranking score.
    """
    u = affine_map(as_map(h), whiten.to(h), shift.to(h))
    return (u * u).sum(1).flatten(1).mean(1)


def class_mahalanobis_per_sample(h: torch.Tensor, whiten: torch.Tensor, shift: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Per sample: min over classes k of the mean over positions of ||W v + c - centres[k]||^2.

    The sample (not each position) is assigned to its nearest class. Expanded as
    mean||u||^2 - 2 mean(u) . centre_k + ||centre_k||^2 so no (N, K, C, H, W) tensor is formed;
    the expansion is assembled in float64 (u is relative to the global mean, so the terms are
    of the size of the distances, not of the raw activations). The per-position work (u, its
    squared norm, its mean) runs in ``h``'s dtype, as :func:`mahalanobis_per_sample`: a float64
    copy of every stitched (N, k, P) map and its products were among the costliest steps of scoring.
    """
    u = affine_map(as_map(h), whiten.to(h), shift.to(h)).flatten(2)  # (N, k, P)
    sq = (u * u).sum(1).double().mean(1)  # (N,)
    m = u.mean(2).double()  # (N, k)
    centres = centres.to(m)
    d = sq[:, None] - 2.0 * m @ centres.T + (centres * centres).sum(1)[None, :]
    return d.min(1).values


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
    class_whiteners: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
    detectors: Mapping[str, Any] | None = None,
    per_image: dict[Cell, np.ndarray] | None = None,
) -> tuple[dict[Cell, dict[str, float]], dict[str, float]]:
    """Score every stitch on (x, y); returns ({cell: {metric: value}}, {"accuracy", "loss"} of B itself).

    ``whiteners`` maps B layer -> :func:`gaussian_whitener` output for the Mahalanobis metrics, and
    ``class_whiteners`` B layer -> :func:`class_whitener` output for the class-conditional ones
    (metrics omitted when absent). ``detectors`` maps B layer -> a fitted
    :class:`~repmatch.stitching.detectors.LayerDetector` (energy score): adds ``detector_*`` metrics.
    ``per_image`` (a dict, filled in place): each cell's per-image correctness (bool, test order), for
    paired tests between cells on the same images. Stitches into one B layer are run stacked, as in
    training; running sums stay on the device (no host sync per batch).
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
    cc_stitched: dict[Cell, list[torch.Tensor]] = {c: [] for c in cells}
    cc_real: dict[str, list[torch.Tensor]] = {lb: [] for lb in backs}
    det_stitched: dict[Cell, list[torch.Tensor]] = {c: [] for c in cells}
    det_real: dict[str, list[torch.Tensor]] = {lb: [] for lb in backs}
    hit_chunks: dict[Cell, list[torch.Tensor]] = {c: [] for c in cells}
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
        if class_whiteners is not None:
            for lb in backs:
                cc_real[lb].append(class_mahalanobis_per_sample(real[lb], *class_whiteners[lb]))
        if detectors is not None:
            for lb in backs:
                det_real[lb].append(detectors[lb].score(real[lb]))
        for (lb, group), slot in zip(groups, slots):
            g = len(group)
            z = torch.cat([stitches[c](feats_a[c.layer_a]) for c in group])
            logits = model_b.forward_from(z, lb, xb).view(g, n, -1)
            hits = logits.argmax(2) == yb
            correct = hits.sum(1).double()
            if per_image is not None:
                for k, c in enumerate(group):
                    hit_chunks[c].append(hits[k])
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
            if class_whiteners is not None:
                cc = class_mahalanobis_per_sample(z, *class_whiteners[lb]).view(g, n)
                for k, c in enumerate(group):
                    cc_stitched[c].append(cc[k])
            if detectors is not None:
                energies = detectors[lb].score(z).view(g, n)
                for k, c in enumerate(group):
                    det_stitched[c].append(energies[k])
    n_total = len(y)
    if per_image is not None:
        per_image.update({c: torch.cat(hit_chunks[c]).cpu().numpy() for c in cells})
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
            auc = auroc(torch.cat(maha_stitched[c]).cpu().numpy(), torch.cat(maha_real[c.layer_b]).cpu().numpy())
            scores.update(zip(MAHALANOBIS_METRICS, (auc, *separability(auc))))
        if class_whiteners is not None:
            auc = auroc(torch.cat(cc_stitched[c]).cpu().numpy(), torch.cat(cc_real[c.layer_b]).cpu().numpy())
            scores.update(zip(CLASS_MAHALANOBIS_METRICS, (auc, *separability(auc))))
        if detectors is not None:
            scores.update(detection_metrics(torch.cat(det_stitched[c]).cpu().numpy(), torch.cat(det_real[c.layer_b]).cpu().numpy()))
        out[c] = {k: float(v) for k, v in scores.items()}
    return out, {"accuracy": base_acc, "loss": base_loss}
