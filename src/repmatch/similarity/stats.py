"""Per-layer quantities, computed once per layer and shared by every partner and measure.

Why: a layer grid of L_a x L_b pairs needs each layer's centring, norms, SVD / orthonormal basis
exactly once. :class:`LayerStats` computes them lazily (only what the requested measures use) and
caches them, so the per-pair work is reduced to cross products between precomputed factors.

Numerics: the matrix is converted to float64 (by default) and centred *before* any Gram or cross
product; an activation offset of +1000 therefore cannot swamp the signal (the classic failure of
uncentred fp32 Gram matrices).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from .errors import SimilarityInputError
from .memo import Memo

#: Smallest sigma_r / sigma_max a wide layer's Gram eigendecomposition is trusted with (see
#: :meth:`LayerStats._eigh_resolves`); below it the exact QR route is taken.
GRAM_RESOLUTION = 1e-4


def symmetric_gram(x: torch.Tensor, blocks: int = 4) -> torch.Tensor:
    """X X^T computed block-row by block-row, upper blocks only, mirrored into the lower ones.

    Why: BLAS gemm does not know that X X^T is symmetric; with ``blocks`` row blocks only
    (blocks + 1) / (2 blocks) of the multiply-adds are done (5/8 for 4 blocks). Each block is one
    gemm, so every entry is the same float64 dot product as in the full product. A gemm's kernel
    may sum (i, j) and (j, i) of one diagonal block in different orders (it depends on the BLAS
    build and its tiling), so the upper triangle is mirrored into the lower one at the end: the
    result is exactly symmetric on every BLAS. Small inputs (fewer than 64 rows per block) use one
    gemm, mirrored the same way.
    """
    n = x.shape[0]
    if blocks <= 1 or n < 64 * blocks:
        return _mirror_upper(x @ x.T)
    bounds = [round(n * k / blocks) for k in range(blocks + 1)]
    g = torch.empty(n, n, dtype=x.dtype, device=x.device)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        blk = x[lo:hi] @ x[lo:].T
        g[lo:hi, lo:] = blk
        g[hi:, lo:hi] = blk[:, hi - lo :].T
    return _mirror_upper(g)


def _mirror_upper(g: torch.Tensor) -> torch.Tensor:
    """The upper triangle (diagonal included) copied into the lower one: an exactly symmetric matrix."""
    return torch.triu(g) + torch.triu(g, diagonal=1).T


class LayerStats(Memo):
    """Centred (rows x features) matrix of one layer plus lazily cached derived quantities.

    ``source_eps``: machine epsilon of the data *as stored* (float32 activations carry fp32
    rounding even after conversion); it sets the tolerance for "zero variance" and for the
    numerical rank used by the CCA family.
    """

    def __init__(self, x: torch.Tensor, name: str = "", source_eps: float | None = None, normalise: bool = False) -> None:
        if x.ndim != 2:
            raise SimilarityInputError(f"layer {name!r}: expected a (rows, features) matrix, got shape {tuple(x.shape)}")
        if x.shape[0] < 2 or x.shape[1] < 1:
            raise SimilarityInputError(f"layer {name!r}: need at least 2 rows and 1 feature, got shape {tuple(x.shape)}")
        scale = float(torch.linalg.matrix_norm(x))
        # A finite norm proves every entry finite (one pass instead of two); only an infinite norm
        # needs the elementwise check, which also tells overflow of huge-but-finite values apart.
        if not np.isfinite(scale) and not bool(torch.isfinite(x).all()):
            raise SimilarityInputError(f"layer {name!r} contains NaN or Inf activations")
        self.name = name
        self.source_eps = float(source_eps if source_eps is not None else torch.finfo(x.dtype).eps)
        self.n, self.d = int(x.shape[0]), int(x.shape[1])
        mean = x.mean(dim=0, keepdim=True)
        xc = x - mean
        if xc.dtype != torch.float64:
            # Working in float32 (the opt-in fast precision): the column mean of values at a +1000
            # offset is only accurate to ~1e-3 absolute, which would leave a constant column shift;
            # a second pass on the (now small) residuals removes it, so the products below see data
            # centred to float32 accuracy relative to the signal, not to the offset.
            residual = xc.mean(dim=0, keepdim=True)
            xc.sub_(residual)  # xc is a fresh tensor here: in place
            mean = mean + residual
        norm = float(torch.linalg.matrix_norm(xc))
        # Zero variance: what is left after centring is at the rounding level of the stored data.
        self.zero_variance = norm == 0.0 or norm <= 4 * self.source_eps * scale
        #: Column means removed from the view (xc + mean is the view's matrix; user measures get it,
        #: :mod:`.user`), and whether xc was scaled to unit norm (``paper`` mode: then users get xc).
        self.mean = mean
        self.normalised = bool(normalise and not self.zero_variance)
        if self.normalised:
            xc = xc / norm
            norm = 1.0
        self.xc = xc
        self.frob = norm

    @property
    def device(self) -> torch.device:
        return self.xc.device

    @property
    def wide(self) -> bool:
        """More features than rows: the layer is handled through its n x n centred Gram matrix."""
        return self.d > self.n

    @cached_property
    def gram(self) -> torch.Tensor:
        """Centred Gram matrix G = Xc Xc^T (n x n), built from the already centred matrix.

        Why: for a wide layer (d > n) every kernel measure (the CKA family) needs only G, and
        one n x n product per layer (2 n^2 d flops, one BLAS call) is much cheaper than reducing
        Xc to an n-column factor and then forming n x n cross products for every partner. The
        product runs in the stats' precision (float64 by default) on centred data, so a large
        activation offset never enters it.
        """
        return symmetric_gram(self.xc)

    def kernel_operand(self, rows: slice | None = None) -> tuple[torch.Tensor, bool]:
        """What the kernel (CKA) measures multiply: ``(G, True)`` for a wide layer, else ``(Xc, False)``.

        ``rows`` restricts to a block of rows (a minibatch): then a wide layer's Gram block is
        computed from those rows only (2 m^2 d flops) instead of slicing the full Gram matrix.
        """
        if rows is None:
            return (self.gram, True) if self.wide else (self.xc, False)
        if self.wide:
            x = self.xc[rows]
            return x @ x.T, True
        return self.xc[rows], False

    @cached_property
    def _gram_eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigen-decomposition of the (symmetrised) centred Gram matrix, eigenvalues descending."""
        g = self.gram
        lam, vec = torch.linalg.eigh((g + g.T) / 2)
        return lam.flip(0), vec.flip(1)

    @cached_property
    def factor(self) -> torch.Tensor:
        """F with F F^T = Xc Xc^T and at most ``n`` columns (Xc itself when d <= n).

        When features outnumber rows, G = Xc Xc^T = U diag(lam) U^T gives F = U diag(sqrt(lam)),
        which has the same Gram matrix, pairwise distances and column space as Xc; every
        orthogonally invariant measure is unchanged and the per-pair cost drops from
        O(n d_a d_b) to O(n^3) at most. (The kernel measures do not use it: they work on G.)
        """
        if not self.wide:
            return self.xc
        u, s = self._wide_svd_full
        return (u * s[None, :]).contiguous()

    @cached_property
    def _wide_svd_full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, S) of a wide Xc, untruncated: from the Gram eigh when it resolves the spectrum,
        otherwise from a QR of Xc^T (the exact but slower route)."""
        lam, vec = self._gram_eigh
        s = lam.clamp(min=0).sqrt()
        if self._eigh_resolves(s):
            return vec, s
        r = torch.linalg.qr(self.xc.T, mode="r").R
        u, s, _ = torch.linalg.svd(r.T, full_matrices=False)
        return u, s

    def _eigh_resolves(self, s: torch.Tensor) -> bool:
        """True when every singular value kept at the numerical-rank tolerance lies well above
        what the Gram route resolves.

        Why: an eigenvalue lam_i of G carries an absolute error of about eps * lam_max, so
        sigma_i = sqrt(lam_i) has an absolute error of about eps * sigma_max^2 / (2 sigma_i): tiny
        for the large directions, but up to sqrt(eps) * sigma_max for directions near zero. When
        the smallest kept sigma_r is at least GRAM_RESOLUTION * sigma_max, that error is below
        eps * sigma_max / (2 GRAM_RESOLUTION) per direction (the SVD-based measures then agree with
        the QR route to ~1e-12, see tests). Float32-sourced layers with d >~ 10^4 (flattened conv
        maps) qualify by their rank tolerance alone; a float64 layer whose kept spectrum spans
        more decades takes the exact QR route instead.
        """
        if s.numel() == 0 or float(s[0]) == 0.0:
            return True
        tol = float(s[0]) * max(self.n, self.d) * self.source_eps
        kept = s[s > tol]
        return kept.numel() == 0 or float(kept[-1]) >= float(s[0]) * GRAM_RESOLUTION

    @cached_property
    def gram_frob(self) -> float:
        """||Xc^T Xc||_F = ||Xc Xc^T||_F (the linear-CKA self term)."""
        if self.wide:
            return float(torch.linalg.matrix_norm(self.gram))
        return float(torch.linalg.matrix_norm(self.xc.T @ self.xc))

    @cached_property
    def svd(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U_r, S_r) of Xc, truncated to the numerical rank (tolerance: max(n, d) * eps * s_max)."""
        if self.wide:
            u, s = self._wide_svd_full
        else:
            u, s, _ = torch.linalg.svd(self.xc, full_matrices=False)
        if s.numel() == 0 or float(s[0]) == 0.0:
            return u[:, :0], s[:0]
        tol = float(s[0]) * max(self.n, self.d) * self.source_eps
        r = int((s > tol).sum())
        return u[:, :r].contiguous(), s[:r].contiguous()

    @property
    def rank(self) -> int:
        return int(self.svd[1].numel())

    @cached_property
    def basis(self) -> torch.Tensor:
        """Orthonormal basis Q (n x rank) of the centred column space (the CCA family's input)."""
        return self.svd[0]

    def svcca_basis(self, variance: float) -> torch.Tensor:
        """Basis of the top-k singular directions that keep ``variance`` of the variance (SVCCA step 1)."""
        u, s = self.svd
        energy = s.square()
        cum = torch.cumsum(energy, 0) / energy.sum()
        k = int(torch.searchsorted(cum, torch.tensor(variance, dtype=cum.dtype, device=cum.device) - 1e-12)) + 1
        return u[:, : min(k, u.shape[1])]

    @cached_property
    def neuron_projections(self) -> torch.Tensor:
        """Q^T Xc (rank x d): the original neurons in the basis (PWCCA weights reuse it for every partner)."""
        return self.basis.T @ self.xc

