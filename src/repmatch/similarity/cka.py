"""The CKA family: linear, RBF, debiased (unbiased HSIC) and minibatch unbiased CKA.

Kornblith et al. 2019 ("Similarity of Neural Network Representations Revisited"):
CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K, L the (n x n) Gram matrices of the
two layers. For linear kernels the biased HSIC reduces to feature space,
<Kc, Lc> = ||Xc^T Yc||_F^2, so a layer grid needs only cross products of the (centred) features,
batched by :func:`~repmatch.similarity.linalg.cross_sq_grid`.

The unbiased estimator HSIC_1 (Song et al. 2012) also reduces to feature space for linear kernels:
with K~ = K - diag(K), a = diag(K), u = K~ 1,
  HSIC_1 = [tr(K~ L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) u.v] / (n(n-3)),
  tr(K~ L~) = ||X^T Y||_F^2 - a.b,   1'K~1 = ||X^T 1||^2 - sum(a),   u = X (X^T 1) - a.
Minibatch CKA (Nguyen et al. 2021) sums HSIC_1 over minibatches before forming the ratio, so it
needs only one minibatch of the Gram matrix at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .linalg import kernel_cross_grid
from .stats import LayerStats

#: RBF CKA materialises one (rows x rows) kernel per layer; refuse beyond this many rows.
MAX_KERNEL_ROWS = 20_000


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def linear_cka_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Linear CKA for every (a_i, b_j): ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F).

    Narrow layers (d <= n) stay in feature space; wide ones enter through their centred n x n
    Gram matrix (<Kc, Lc>_F), whichever makes each pair cheaper (:func:`kernel_cross_grid`).
    """
    ops_a = [s.kernel_operand() for s in sa]
    cross = kernel_cross_grid(ops_a, ops_a if sa is sb else [s.kernel_operand() for s in sb])
    na = torch.tensor([s.gram_frob for s in sa], dtype=cross.dtype, device=cross.device)
    nb = torch.tensor([s.gram_frob for s in sb], dtype=cross.dtype, device=cross.device)
    return _to_numpy(cross / (na[:, None] * nb[None, :]))


# --- RBF -----------------------------------------------------------------------------------------


def _exact_median(values: torch.Tensor) -> torch.Tensor:
    """Median as numpy defines it (mean of the two middle values); works on any size."""
    flat = values.reshape(-1)
    m = flat.numel()
    lo = torch.kthvalue(flat, (m - 1) // 2 + 1).values
    hi = torch.kthvalue(flat, m // 2 + 1).values
    return (lo + hi) / 2


def centred_rbf_kernel(s: LayerStats, sigma_fraction: float) -> torch.Tensor | None:
    """Double-centred RBF kernel with bandwidth sigma = ``sigma_fraction`` * median distance,
    scaled to unit Frobenius norm; None when the median distance is zero (over half the rows coincide).
    """
    if s.n > MAX_KERNEL_ROWS:
        raise SimilarityInputError(
            f"rbf_cka builds a (rows x rows) kernel per layer; layer {s.name!r} has {s.n} rows "
            f"(more than {MAX_KERNEL_ROWS}); use conv_mode 'gap' or 'flatten', fewer probe samples, or minibatch_cka"
        )
    gram = s.gram if s.wide else s.xc @ s.xc.T
    sq = torch.diagonal(gram)
    d2 = sq[:, None] + sq[None, :] - 2 * gram
    med = _exact_median(d2)
    if float(med) <= 0:
        return None
    k = torch.exp(-d2 / (2 * sigma_fraction**2 * med))
    row = k.mean(dim=0)
    k = k - row[None, :] - row[:, None] + row.mean()
    return k / torch.linalg.matrix_norm(k)


def rbf_cka_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """RBF-kernel CKA (Kornblith et al. 2019): <Kc, Lc> / (||Kc|| ||Lc||) with per-layer bandwidths.

    Each layer's centred, normalised kernel is built once; the whole grid is one matmul of the
    stacked, flattened kernels. Memory: one rows x rows float64 kernel per layer.
    """
    frac = float(ctx.param("rbf_sigma"))
    same = sa is sb
    ka = [s.memo(("rbf", frac), lambda s=s: centred_rbf_kernel(s, frac)) for s in sa]
    kb = ka if same else [s.memo(("rbf", frac), lambda s=s: centred_rbf_kernel(s, frac)) for s in sb]
    out = np.full((len(sa), len(sb)), np.nan)
    ia = [i for i, k in enumerate(ka) if k is not None]
    ib = [j for j, k in enumerate(kb) if k is not None]
    for i, k in enumerate(ka):
        if k is None:
            ctx.degenerate(f"rbf_cka: layer {sa[i].name!r}: median pairwise distance is 0 (more than half the rows coincide)")
    for j, k in enumerate(kb):
        if k is None and not same:
            ctx.degenerate(f"rbf_cka: layer {sb[j].name!r}: median pairwise distance is 0 (more than half the rows coincide)")
    if ia and ib:
        stack_a = torch.stack([ka[i].reshape(-1) for i in ia])  # type: ignore[union-attr]
        stack_b = stack_a if same else torch.stack([kb[j].reshape(-1) for j in ib])  # type: ignore[union-attr]
        out[np.ix_(ia, ib)] = _to_numpy(stack_a @ stack_b.T)
    return out


# --- unbiased HSIC -------------------------------------------------------------------------------


def _batches(n: int, size: int | None) -> list[slice]:
    """Contiguous minibatches of at least ``size`` rows (all rows when ``size`` is None or >= n)."""
    if size is None or size >= n:
        return [slice(0, n)]
    k = n // size
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _hsic1_terms(op: tuple[torch.Tensor, bool]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-layer pieces of HSIC_1 for one minibatch: a = diag(K), u = K~ 1, 1'K~1 and ||K||_F^2,
    from the features F (K = F F^T, never formed) or from the Gram matrix K itself."""
    f, is_gram = op
    if is_gram:
        a = torch.diagonal(f)
        u = f.sum(dim=1) - a
        ones = f.sum() - a.sum()
        return a, u, ones, f.square().sum()
    a = f.square().sum(dim=1)
    s = f.sum(dim=0)
    u = f @ s - a
    ones = s.square().sum() - a.sum()
    return a, u, ones, torch.linalg.matrix_norm(f.T @ f) ** 2


def unbiased_cka_grid(
    sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext, batch_size: int | None, name: str
) -> np.ndarray:
    """Sum of HSIC_1 over minibatches of rows, for every pair and every self term; then the CKA ratio."""
    n = sa[0].n
    if n < 4 or (batch_size is not None and batch_size < 4):
        raise SimilarityInputError(f"{name}: the unbiased HSIC estimator needs at least 4 rows per batch (n={n}, batch={batch_size})")
    same = sa is sb
    ref = sa[0].xc
    num = torch.zeros(len(sa), len(sb), dtype=ref.dtype, device=ref.device)
    self_a = torch.zeros(len(sa), dtype=ref.dtype, device=ref.device)
    self_b = self_a if same else torch.zeros(len(sb), dtype=ref.dtype, device=ref.device)
    for sl in _batches(n, batch_size):
        m = sl.stop - sl.start
        whole = m == n
        fa = [s.kernel_operand(None if whole else sl) for s in sa]
        fb = fa if same else [s.kernel_operand(None if whole else sl) for s in sb]
        ta = [_hsic1_terms(f) for f in fa]
        tb = ta if same else [_hsic1_terms(f) for f in fb]
        a_a, u_a, o_a, sq_a = (torch.stack(z) for z in zip(*ta))
        a_b, u_b, o_b, sq_b = (torch.stack(z) for z in zip(*tb))
        c1, c2, c3 = 1.0 / ((m - 1) * (m - 2)), 2.0 / (m - 2), 1.0 / (m * (m - 3))
        cross = kernel_cross_grid(fa, fb)
        num += c3 * (cross - a_a @ a_b.T + c1 * o_a[:, None] * o_b[None, :] - c2 * (u_a @ u_b.T))
        # Self terms from the same pieces (||K||_F^2 = ||X^T X||_F^2 per layer).
        self_a += c3 * (sq_a - a_a.square().sum(1) + c1 * o_a.square() - c2 * u_a.square().sum(1))
        if not same:
            self_b += c3 * (sq_b - a_b.square().sum(1) + c1 * o_b.square() - c2 * u_b.square().sum(1))
    out = _to_numpy(num)
    va, vb = _to_numpy(self_a), _to_numpy(self_b)
    for i, v in enumerate(va):
        if not v > 0:
            ctx.degenerate(f"{name}: layer {sa[i].name!r}: unbiased HSIC(K, K) = {v:.3g} <= 0 (too little signal for the estimator)")
    if not same:
        for j, v in enumerate(vb):
            if not v > 0:
                ctx.degenerate(f"{name}: layer {sb[j].name!r}: unbiased HSIC(L, L) = {v:.3g} <= 0 (too little signal for the estimator)")
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(np.where(va > 0, va, np.nan))[:, None] * np.sqrt(np.where(vb > 0, vb, np.nan))[None, :]
        return out / denom


def debiased_cka_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Debiased CKA: CKA with the unbiased HSIC_1 estimator on the whole probe set."""
    return unbiased_cka_grid(sa, sb, ctx, None, "debiased_cka")


def minibatch_cka_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Minibatch CKA: HSIC_1 accumulated over contiguous minibatches of ``minibatch_size`` rows."""
    return unbiased_cka_grid(sa, sb, ctx, int(ctx.param("minibatch_size")), "minibatch_cka")
