"""Generalised shape metrics (Williams, Kunz, Kornblith & Linderman 2021, "Generalized shape
metrics on neural representations"; the ``netrep`` package's ``LinearMetric``).

Each layer is centred, scaled to unit Frobenius norm, partially whitened and scaled back to unit
norm:  phi(X) = X Z / ||X Z||_F,  Z = alpha I + (1 - alpha) (X^T X)^{-1/2}  (``shape_alpha``).
With X = U S V^T (numerical rank r), X Z = U diag(alpha s + 1 - alpha) V^T, so phi(X) is known
from the per-layer SVD. The distances are then between the orbits of phi(X) and phi(Y) under
orthogonal maps (the narrower layer zero-padded):
  shape_euclidean = min_Q ||phi(X) Q - phi(Y)||_F,   shape_angular = arccos <phi(X) Q*, phi(Y)>
                  = 2 arcsin(shape_euclidean / 2)     (both on the unit sphere).
alpha = 1 is the orthogonal Procrustes distance (shape_angular = arccos(procrustes),
shape_euclidean^2 = procrustes_distance); alpha = 0 whitens fully: every invertible linear map
is then allowed and cos(shape_angular) = sum of canonical correlations / sqrt(r_a r_b) (CCA-like).
Both are proper metrics (symmetric, triangle inequality) on the equivalence classes.

Differences from netrep: the unit-norm scaling before whitening (netrep whitens X^T X at the
data's own scale, so for 0 < alpha < 1 its metric depends on that scale; here it is invariant to
isotropic scaling, as every repmatch index); whitening on the numerical rank instead of flooring
eigenvalues at 1e-6; netrep's Euclidean score keeps the data's variance instead of unit norm.
Angular values agree with netrep for alpha in {0, 1} and for unit-norm input at any alpha.

Why the residual is formed explicitly: arccos of ||phi(X)^T phi(Y)||_* loses half the digits
near 0 (cos = 1 - theta^2 / 2), so a layer against itself would read ~1e-8 instead of 0; the
residual phi(X) Q* - phi(Y) (Q* from the SVD of the cross block, as in netrep's fit) keeps full
relative accuracy for small distances.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .linalg import blockwise_grid
from .procrustes import _procrustes_resampled
from .resampled import ResampleChunk, resampled_form, smaller_gram, sum_top_sqrt
from .stats import LayerStats


def shape_factor(s: LayerStats, alpha: float) -> torch.Tensor:
    """phi(X) in the layer's column basis: U diag(t) / ||t|| with t = alpha s / ||s|| + (1 - alpha) (n x r)."""
    u, sv = s.svd
    t = alpha * sv / torch.linalg.vector_norm(sv) + (1.0 - alpha)
    return (u * (t / torch.linalg.vector_norm(t))[None, :]).contiguous()


def _alpha(ctx: GridContext) -> float:
    alpha = float(ctx.param("shape_alpha"))
    if not 0.0 <= alpha <= 1.0:
        raise SimilarityInputError(f"similarity.shape_alpha must lie in [0, 1], got {alpha}")
    return alpha


def shape_euclidean_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """min_Q ||phi(X) Q - phi(Y)||_F for every layer pair (unit-norm, partially whitened layers)."""
    alpha = _alpha(ctx)
    fa = [s.memo(("shape", alpha), lambda s=s: shape_factor(s, alpha)) for s in sa]
    fb = fa if sa is sb else [s.memo(("shape", alpha), lambda s=s: shape_factor(s, alpha)) for s in sb]
    if alpha == 0.0:
        n = sa[0].n
        for i, a in enumerate(fa):
            for j, b in enumerate(fb):
                if a.shape[1] + b.shape[1] > n - 1:
                    ctx.degenerate(
                        f"shape metrics with shape_alpha = 0: {sa[i].name!r} (rank {a.shape[1]}) vs {sb[j].name!r} "
                        f"(rank {b.shape[1]}) with {n} rows: ranks sum to more than n - 1, so the whitened layers "
                        "share directions whatever the data (as CCA); use shape_alpha > 0 or more probe samples")

    def residual(blocks: torch.Tensor, idx: list[tuple[int, int]]) -> torch.Tensor:
        u, _, vh = torch.linalg.svd(blocks, full_matrices=False)
        q = u @ vh  # (batch, r_a, r_b): the optimal orthogonal map between the (zero-padded) layers
        xa = torch.stack([fa[i] for i, _ in idx])
        yb = torch.stack([fb[j] for _, j in idx])
        xq = xa @ q
        # When r_a > r_b, Q maps onto r_b directions only; the part of phi(X) it drops (||X (I - Q Q^T)||)
        # is what the zero-padded full orthogonal map leaves unmatched.
        dropped = xa - xq @ q.transpose(1, 2)
        sq = (xq - yb).square().sum(dim=(1, 2)) + dropped.square().sum(dim=(1, 2))
        return sq.sqrt()

    out = blockwise_grid(fa, fb, residual).cpu().numpy()
    if alpha == 0.0:
        n = sa[0].n
        for i, a in enumerate(fa):
            for j, b in enumerate(fb):
                if a.shape[1] + b.shape[1] > n - 1:
                    out[i, j] = np.nan
    return out


def shape_angular_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Angular shape distance 2 arcsin(d / 2) of the Euclidean one d (radians, in [0, pi/2] here)."""
    return 2.0 * np.arcsin(shape_euclidean_grid(sa, sb, ctx) / 2.0)


# --- resampled forms (the bootstrap: c resamples at once, from :class:`~.resampled.ResampleChunk`) ---------------


def _shape_cosine_resampled(ch: ResampleChunk, alpha: float) -> torch.Tensor:
    """cos of the angular distance, ||phi(X)^T phi(Y)||_*, per resample (c, L_a, L_b).

    With the resample's covariance C = V diag(s^2) V^T and its whitening W = V_r diag(1 / s_r),
    phi(X) = X M with M = W diag(t) / ||t|| (t as in :func:`shape_factor`), so
    phi(X)^T phi(Y) = M_a^T C_ab M_b: one small product and eigenvalue sum per cell, no rows.
    alpha = 1 is the Procrustes similarity (shared with ``procrustes``). alpha = 0: NaN where the
    ranks sum to more than n - 1 (as the grid).
    """
    if alpha == 1.0:
        return _procrustes_resampled(ch)

    def factors(whites: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        out = []
        for white, _, lam in whites:
            s = lam.clamp_min(0).sqrt()
            t = torch.where(lam > 0, alpha * s / torch.linalg.vector_norm(s, dim=1, keepdim=True) + (1.0 - alpha), 0.0)
            out.append(white * (t / torch.linalg.vector_norm(t, dim=1, keepdim=True))[:, None, :])
        return out

    def compute() -> torch.Tensor:
        ma = factors(ch.whitening_a)
        mb = ma if ch.same else factors(ch.whitening_b)
        nuc = ch.nan_grid()
        for i, row in enumerate(ch.blocks_ab):
            for j, blk in enumerate(row):
                g = smaller_gram(ma[i].transpose(1, 2) @ blk @ mb[j])
                nuc[:, i, j] = sum_top_sqrt(g, torch.full((ch.c,), g.shape[1], device=g.device))
        if alpha == 0.0:
            ra = torch.stack([w[1] for w in ch.whitening_a], 1)
            rb = torch.stack([w[1] for w in ch.whitening_b], 1)
            nuc = nuc.masked_fill(ra[:, :, None] + rb[:, None, :] > ch.n - 1, float("nan"))
        return nuc

    return ch.memo(("shape_cosine", alpha), compute)


def _shape_euclidean_resampled(ch: ResampleChunk, ctx: GridContext) -> torch.Tensor:
    """sqrt(2 - 2 cos) per resample; a layer against itself (same model) is exactly 0.

    2 - 2 cos loses half the digits near 0 (the grid forms the residual explicitly instead): a
    rounding excess of cos over 1 (~1e-16) is a zero distance; cells near 0 are accurate to ~1e-8.
    """
    alpha = _alpha(ctx)

    def compute() -> torch.Tensor:
        d = (2.0 - 2.0 * _shape_cosine_resampled(ch, alpha)).clamp_min(0.0).sqrt()
        if ch.same:
            diag = torch.diagonal(d, dim1=1, dim2=2)
            diag.copy_(torch.where(torch.isnan(diag), diag, 0.0))
        return d

    return ch.memo(("shape_euclidean", alpha), compute)


@resampled_form()
def shape_euclidean_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """Euclidean shape metric per resample, from the chunk's covariances and whitening."""
    return _shape_euclidean_resampled(ch, ctx), None


@resampled_form()
def shape_angular_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """Angular shape metric 2 arcsin(d / 2) per resample."""
    return 2.0 * torch.arcsin(_shape_euclidean_resampled(ch, ctx) / 2.0), None
