"""Orthonormal bases and relative residuals: the two numerical kernels of subspace match.

Why a rank-aware basis: the distance of a neuron vector z to a neuron set Y is
``‖z − P_span(Y) z‖ / ‖z‖``. When the columns of Y are linearly dependent (duplicated
neurons, more neurons than coordinates) a plain QR's extra Q columns point in round-off
directions, span(Q) would be larger than span(Y) and distances would come out too small. So
we detect near-dependence and then take an SVD basis with the relative cut-off ``lstsq``
uses (``max(p, k) · eps_machine``).

Why CholeskyQR2 first: Householder QR is bandwidth-bound and slow on CPUs (10,000 × 512 in
float64: ~3.7 s on 2 cores, against ~0.6 s for CholeskyQR2, which is two Gram matmuls, two
small Choleskys and two triangular solves, all level-3 and GPU friendly). CholeskyQR2 gives
a Q orthonormal to machine precision whenever cond(columns) ≲ 1e6 (Fukaya et al. 2014); we
check that (the second pass's R must be the identity to 1e-4) and otherwise, or for wide
inputs, use Householder QR with the rank check and the SVD fallback. On the CPU, for the
small square-ish matrices of the reduced problems (fewer than 2048 rows), one Householder QR
is cheaper than the six calls of CholeskyQR2, so it is used directly there.

Why residuals are not simply ``‖z‖² − ‖Qᵀz‖²``: that difference cancels catastrophically
when z is close to the span. We use it only where the residual is large (its absolute error,
a few eps·‖z‖², is then negligible) and compute ``‖z − Q(Qᵀz)‖²`` explicitly for the columns
close to the span, which are exactly the ones the ε decisions hinge on.
"""

from __future__ import annotations

import torch
from torch import Tensor

SMALL_RESIDUAL = 1e-3  # below this fraction of ‖z‖² the residual is recomputed explicitly
CHOLQR_MIN_ROWS = 2048  # on CPU, Householder QR is faster for the small reduced frames


def rank_tolerance(rows: int, cols: int, dtype: torch.dtype) -> float:
    """Relative singular-value cut-off below which a direction counts as numerically absent."""
    return max(rows, cols, 1) * torch.finfo(dtype).eps


def basis_and_coefficients(vectors: Tensor) -> tuple[Tensor, Tensor]:
    """Orthonormal basis Q (p, r) of span(vectors (p, k)), r = numerical rank, and C = Qᵀ·vectors (r, k).

    Columns must be non-zero (dead neurons are removed before matching). They are scaled to
    unit norm first: span and relative distances are scale invariant, and the rank test then
    judges every neuron on the same scale. C comes from the triangular factors for free.
    """
    p, k = vectors.shape
    if k == 0 or p == 0:
        return vectors.new_zeros((p, 0)), vectors.new_zeros((0, k))
    norms = torch.linalg.vector_norm(vectors, dim=0)
    unit = vectors / norms
    if k <= p and (p >= CHOLQR_MIN_ROWS or unit.is_cuda):
        factors = cholesky_qr2(unit)
        if factors is not None:
            return factors[0], factors[1] * norms
    q, r = torch.linalg.qr(unit, mode="reduced")
    diag = torch.diagonal(r).abs()
    if bool((diag > rank_tolerance(p, k, vectors.dtype) * diag.max()).all()):
        return q, r * norms
    u, s, _ = torch.linalg.svd(unit, full_matrices=False)
    q = u[:, s > rank_tolerance(p, k, vectors.dtype) * s[0]]
    return q, q.T @ vectors


def orthonormal_basis(vectors: Tensor) -> Tensor:
    """Orthonormal basis (p, r) of the column span of ``vectors`` (p, k); r = numerical rank."""
    return basis_and_coefficients(vectors)[0]


def _cholesky_qr(x: Tensor) -> tuple[Tensor, Tensor] | None:
    r, info = torch.linalg.cholesky_ex(x.T @ x, upper=True)
    if bool(info != 0):
        return None
    return torch.linalg.solve_triangular(r, x, upper=True, left=False), r


def cholesky_qr2(unit: Tensor, min_sine: float = 1e-5, max_drift: float = 1e-4) -> tuple[Tensor, Tensor] | None:
    """(Q, R) of unit-norm columns (p, k ≤ p) by CholeskyQR2, or None when it cannot be trusted.

    ``diag(R₁)_j`` is the sine between column j and the span of the earlier ones; below
    ``min_sine`` the columns are (nearly) dependent and the caller must find the numerical
    rank. After the first pass Q₁ᵀQ₁ = R₂ᵀR₂ deviates from I by about cond² · eps; the second
    pass restores orthonormality when that deviation is small (``max_drift``).
    """
    first = _cholesky_qr(unit)
    if first is None:
        return None
    q1, r1 = first
    if float(torch.diagonal(r1).abs().min()) < min_sine:
        return None
    second = _cholesky_qr(q1)
    if second is None:
        return None
    q2, r2 = second
    eye = torch.eye(r2.shape[0], dtype=r2.dtype, device=r2.device)
    if float((r2 - eye).abs().max()) > max_drift:
        return None
    return q2, r2 @ r1


def project_out(z: Tensor, basis: Tensor) -> tuple[Tensor, Tensor]:
    """Split z (p, m) into coefficients on ``basis`` (r, m) and the squared norm of the rest (m,)."""
    norm2 = (z * z).sum(dim=0)
    if basis.shape[1] == 0:
        return z.new_zeros((0, z.shape[1])), norm2
    coef = basis.T @ z
    res2 = norm2 - (coef * coef).sum(dim=0)
    close = torch.nonzero(res2 < SMALL_RESIDUAL * norm2).flatten()
    if close.numel():
        rest = z[:, close] - basis @ coef[:, close]
        res2 = res2.index_copy(0, close, (rest * rest).sum(dim=0))
    return coef, res2


def relative_residuals(z: Tensor, span_of: Tensor) -> Tensor:
    """sin(angle) between each column of z (p, m) and span(span_of) (p, k): ‖z − P z‖ / ‖z‖.

    The plain definition for callers and tests; the matching code uses the reduced form in
    :mod:`repmatch.subspace_match.maximum`, which adds an out-of-frame part to the same sum.
    """
    _, res2 = project_out(z, orthonormal_basis(span_of))
    return torch.sqrt(res2 / (z * z).sum(dim=0))
