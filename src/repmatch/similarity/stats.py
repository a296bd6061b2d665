"""Per-layer quantities, computed once per layer and shared by every partner and measure.

Why: a layer grid of L_a x L_b pairs needs each layer's centring, norms, SVD / orthonormal basis
exactly once. :class:`LayerStats` computes them lazily (only what the requested measures use) and
caches them, so the per-pair work is reduced to cross products between precomputed factors.

Numerics: the matrix is converted to float64 (by default) and centred *before* any Gram or cross
product; an activation offset of +1000 therefore cannot swamp the signal (the classic failure of
uncentred fp32 Gram matrices).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from functools import cached_property
from typing import Any

import numpy as np
import torch

from .errors import SimilarityInputError


class LayerStats:
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
        xc = x - x.mean(dim=0, keepdim=True)
        norm = float(torch.linalg.matrix_norm(xc))
        # Zero variance: what is left after centring is at the rounding level of the stored data.
        self.zero_variance = norm == 0.0 or norm <= 4 * self.source_eps * scale
        if normalise and not self.zero_variance:
            xc = xc / norm
            norm = 1.0
        self.xc = xc
        self.frob = norm
        self._memo: dict[Hashable, Any] = {}

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """Cache a measure-specific per-layer product (e.g. an RBF kernel for one bandwidth) on the layer."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def device(self) -> torch.device:
        return self.xc.device

    @cached_property
    def factor(self) -> torch.Tensor:
        """F with F F^T = Xc Xc^T and at most ``n`` columns (Xc itself when d <= n).

        When features outnumber rows, Xc^T = Q R gives Xc = R^T Q^T, so R^T has the same Gram
        matrix, pairwise distances and column-space as Xc; every orthogonally invariant measure
        is unchanged and the per-pair cost drops from O(n d_a d_b) to O(n^3) at most.
        """
        if self.d <= self.n:
            return self.xc
        r = torch.linalg.qr(self.xc.T, mode="r").R
        return r.T.contiguous()

    @cached_property
    def gram_frob(self) -> float:
        """||Xc^T Xc||_F = ||Xc Xc^T||_F (the linear-CKA self term)."""
        f = self.factor
        return float(torch.linalg.matrix_norm(f.T @ f))

    @cached_property
    def svd(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U_r, S_r) of Xc, truncated to the numerical rank (tolerance: max(n, d) * eps * s_max)."""
        u, s, _ = torch.linalg.svd(self.factor, full_matrices=False)
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

    @cached_property
    def row_sq(self) -> torch.Tensor:
        """Squared row norms diag(Xc Xc^T) (the debiased-HSIC diagonal)."""
        return self.factor.square().sum(dim=1)
