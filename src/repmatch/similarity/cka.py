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

Each measure's resampled form (its bootstrap replicates, :mod:`.resampled`) follows its grid
function's maths on the resample's centred moments: linear CKA from ||C_ij||_F^2, the unbiased
estimators from the same :func:`hsic1` (centred rows: u = -a, 1'K~1 = -sum a), minibatch CKA per
minibatch of the sorted resampled rows, RBF CKA from the original pairwise distances re-weighted
by the row multiplicities (:class:`RbfDistances`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .linalg import kernel_cross_grid
from .resampled import ResampleChunk, resampled_form, row_blocks
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


def hsic1(cross_sq: torch.Tensor, terms_a: tuple[torch.Tensor, ...], terms_b: tuple[torch.Tensor, ...], self_sq_a: torch.Tensor,
          self_sq_b: torch.Tensor | None, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """HSIC_1 numerators of every layer pair and both self terms, for one block of m rows (Song et al. 2012).

    ``cross_sq``: (..., L_a, L_b) ||X_i^T Y_j||_F^2 (= tr(K L)); ``terms_*``: (a, u, 1'K~1) per layer,
    (..., L, m), (..., L, m), (..., L); ``self_sq_*``: (..., L) ||X_i^T X_i||_F^2. Leading axes are
    optional (the point grid has none, the resampled forms one per resample); ``self_sq_b`` None
    skips the second self term (a model against itself).
    """
    a_a, u_a, o_a = terms_a
    a_b, u_b, o_b = terms_b
    c1, c2, c3 = 1.0 / ((m - 1) * (m - 2)), 2.0 / (m - 2), 1.0 / (m * (m - 3))
    num = c3 * (cross_sq - a_a @ a_b.mT + c1 * o_a[..., :, None] * o_b[..., None, :] - c2 * (u_a @ u_b.mT))
    self_a = c3 * (self_sq_a - a_a.square().sum(-1) + c1 * o_a.square() - c2 * u_a.square().sum(-1))
    if self_sq_b is None:
        return num, self_a, None
    return num, self_a, c3 * (self_sq_b - a_b.square().sum(-1) + c1 * o_b.square() - c2 * u_b.square().sum(-1))


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
    for sl in row_blocks(n, batch_size):
        m = sl.stop - sl.start
        whole = m == n
        fa = [s.kernel_operand(None if whole else sl) for s in sa]
        fb = fa if same else [s.kernel_operand(None if whole else sl) for s in sb]
        ta = [_hsic1_terms(f) for f in fa]
        tb = ta if same else [_hsic1_terms(f) for f in fb]
        a_a, u_a, o_a, sq_a = (torch.stack(z) for z in zip(*ta))
        a_b, u_b, o_b, sq_b = (torch.stack(z) for z in zip(*tb))
        # Self terms from the same pieces (||K||_F^2 = ||X^T X||_F^2 per layer).
        n_ab, n_a, n_b = hsic1(kernel_cross_grid(fa, fb), (a_a, u_a, o_a), (a_b, u_b, o_b), sq_a, None if same else sq_b, m)
        num += n_ab
        self_a += n_a
        if not same:
            self_b += n_b
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


# --- resampled forms (the bootstrap: c resamples at once, from :class:`~.resampled.ResampleChunk`) ---------------


@resampled_form()
def linear_cka_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """||C_ij||_F^2 / (||C_ii||_F ||C_jj||_F) per resample."""
    return ch.cross_sq / (ch.frob_a[:, :, None] * ch.frob_b[:, None, :]), None


def _resampled_hsic_terms(f: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-layer HSIC_1 pieces for rows f (c, m, D): a = row norms^2 (c, L, m), u = K~1 (c, L, m), 1'K~1 (c, L)."""
    a = (f.square() @ seg.T).transpose(1, 2)
    s = f.sum(dim=1)  # (c, D)
    u = ((f * s[:, None, :]) @ seg.T).transpose(1, 2) - a
    ones = s.square() @ seg.T - a.sum(-1)
    return a, u, ones


def _centred_hsic_terms(f: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_resampled_hsic_terms` for rows centred on their own mean: F^T 1 = 0, so u = -a and 1'K~1 = -sum(a)."""
    a = (f.square() @ seg.T).transpose(1, 2)
    return a, -a, -a.sum(-1)


def _cka_ratio(num: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> torch.Tensor:
    """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); NaN where a self term is not positive (as the point grid)."""
    nan = torch.tensor(float("nan"), dtype=num.dtype, device=num.device)
    sa = torch.where(self_a > 0, self_a, nan).sqrt()
    sb = torch.where(self_b > 0, self_b, nan).sqrt()
    return num / (sa[:, :, None] * sb[:, None, :])


@resampled_form()
def debiased_cka_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """HSIC_1 from the feature-space identity on each resample's centred rows (||K||_F^2 = ||C_ii||_F^2)."""
    fa, fb = ch.centred
    ta = _centred_hsic_terms(fa, ch.set.seg_a)
    tb = ta if ch.same else _centred_hsic_terms(fb, ch.set.seg_b)
    num, self_a, self_b = hsic1(ch.cross_sq, ta, tb, ch.frob_a.square(), None if ch.same else ch.frob_b.square(), ch.n)
    return _cka_ratio(num, self_a, self_a if self_b is None else self_b), None


def _layer_self_sq(f: torch.Tensor, spans: list[slice]) -> torch.Tensor:
    """||F_k^T F_k||_F^2 per layer k from per-layer products only (not the whole D x D product)."""
    return torch.stack([(f[:, :, sl].transpose(1, 2) @ f[:, :, sl]).square().sum((1, 2)) for sl in spans], 1)


@resampled_form(row_blocks="minibatch_size")
def minibatch_cka_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """HSIC_1 summed over the contiguous minibatches of each (sorted) resample, then the CKA ratio.

    The chunk forms its cross-products over the same minibatches (``row_blocks``), so the
    per-block ||C_ij^(block)||_F^2 come with it; the rows are centred on the resample's mean, as the
    grid engine centres the gathered rows before cutting them into minibatches.
    """
    if int(ctx.param("minibatch_size")) < 4:
        raise SimilarityInputError(f"minibatch_cka: the unbiased HSIC estimator needs at least 4 rows per batch "
                                   f"(batch={ctx.param('minibatch_size')})")  # fmt: skip
    fa, fb = ch.centred
    rs = ch.set
    num = torch.zeros(ch.c, len(rs.span_a), len(rs.span_b), dtype=fa.dtype, device=fa.device)
    self_a = torch.zeros(ch.c, len(rs.span_a), dtype=fa.dtype, device=fa.device)
    self_b = self_a if ch.same else torch.zeros(ch.c, len(rs.span_b), dtype=fa.dtype, device=fa.device)
    blocks = row_blocks(ch.n, int(ctx.param("minibatch_size")))
    if blocks == ch.blocks:
        sqs = ch.block_cross_sq
    else:  # the chunk's products were formed over other blocks (another block-wise measure in the run)
        sqs = [rs.seg_a @ (fa[:, b].transpose(1, 2) @ fb[:, b]).square() @ rs.seg_b.T for b in blocks]
    for bsl, csq in zip(blocks, sqs):
        pa, pb = fa[:, bsl], fb[:, bsl]
        ta = _resampled_hsic_terms(pa, rs.seg_a)
        tb = ta if ch.same else _resampled_hsic_terms(pb, rs.seg_b)
        sq_a = torch.diagonal(csq, dim1=1, dim2=2) if ch.same else _layer_self_sq(pa, rs.span_a)
        n_ab, n_a, n_b = hsic1(csq, ta, tb, sq_a, None if ch.same else _layer_self_sq(pb, rs.span_b), bsl.stop - bsl.start)
        num += n_ab
        self_a += n_a
        if n_b is not None:
            self_b += n_b
    return _cka_ratio(num, self_a, self_b), None


class RbfDistances:
    """RBF CKA per resample from each layer's original squared distances (sorted once per run).

    With multiplicities w and K the kernel on the original rows, the resample's centred kernel
    is Kc = K - k 1' - 1 k' + kappa (k = K w / n, kappa = w'K w / n^2), and because the
    weighted row sums of Lc vanish, <Kc, Lc>_w = <K, L>_w - 2 n sum_p w_p k_p l_p + n^2 kappa lambda,
    with <K, L>_w = sum_pq w_p w_q K_pq L_pq: one matmul of the weighted kernels of all layers,
    restricted to the rows the resample contains. The bandwidth is the resample's median distance
    (a weighted median with weights w_p w_q, from one sort per layer).
    """

    def __init__(self, xa: list[torch.Tensor], xb: list[torch.Tensor], same: bool, sigma: float) -> None:
        self.same, self.sigma = same, sigma
        n = xa[0].shape[0]
        self.iu = torch.triu_indices(n, n, offset=1, device=xa[0].device)
        self.a = [self._prep(x) for x in xa]
        self.b = self.a if same else [self._prep(x) for x in xb]

    def _prep(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        gram = x @ x.T
        sq = torch.diagonal(gram)
        d2 = sq[:, None] + sq[None, :] - 2 * gram
        vals = d2[self.iu[0], self.iu[1]]
        vals, order = torch.sort(vals)
        return d2, vals, self.iu[:, order].contiguous()

    @staticmethod
    def _median(w: torch.Tensor, vals: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        """numpy's median of each resample's n x n distance matrix, from multiplicities w (c, n).

        The resampled matrix holds d2[p, q] w_p w_q times (twice, by symmetry, for p < q) and
        zeros sum_p w_p^2 times (its diagonal, repeats of a row included).
        """
        n = w.shape[1]
        total = n * n
        if n * n >= 2**31:
            raise SimilarityInputError(f"rbf_cka bootstrap: {n} rows is too many for the exact resampled median")
        # Multiplicities are small integers: int32 products and prefix sums are exact (n^2 < 2^31)
        # and move half the bytes of float64; numpy's take along a row of a small table is the fastest gather here.
        wn = w.detach().cpu().numpy().astype(np.int32)
        pn = pairs.cpu().numpy()
        prod = np.take(wn, pn[0], axis=1) * np.take(wn, pn[1], axis=1)
        zeros_np = np.square(wn).sum(axis=1)
        cum = torch.from_numpy(zeros_np[:, None] + 2 * np.cumsum(prod, axis=1, dtype=np.int64)).to(w.device)
        zeros = torch.from_numpy(zeros_np).to(w.device)
        out = []
        for k in ((total - 1) // 2, total // 2):
            kk = torch.full((w.shape[0], 1), k, dtype=cum.dtype, device=cum.device)
            pos = torch.searchsorted(cum, kk, right=True).squeeze(1).clamp_max(vals.numel() - 1)
            out.append(torch.where(zeros <= k, vals[pos], torch.zeros((), dtype=vals.dtype, device=vals.device)))
        return (out[0] + out[1]) / 2

    def _kernels(self, w: torch.Tensor, rows: torch.Tensor, meds: torch.Tensor, layers: list):
        """Weighted kernels of one resample on its distinct rows: (L, m^2) stack, k (L, m), kappa (L,)."""
        n = w.shape[0]
        wu = w[rows]
        sw = wu.sqrt()
        scale = (sw[:, None] * sw[None, :]).reshape(-1)
        flat, ks, kappas = [], [], []
        for (d2, _, _), med in zip(layers, meds):
            d2u = d2.index_select(0, rows).index_select(1, rows)
            k = torch.exp(d2u * (-1.0 / (2 * self.sigma**2 * float(med)))) if med > 0 else torch.full_like(d2u, float("nan"))
            kw = (k @ wu) / n
            ks.append(kw)
            kappas.append((kw * wu).sum() / n)
            flat.append(k.reshape(-1) * scale)
        return torch.stack(flat), torch.stack(ks), torch.stack(kappas)

    def grid(self, w: torch.Tensor) -> torch.Tensor:
        """(c, L_a, L_b) RBF CKA of every layer pair on each resample of multiplicities w (c, n)."""
        n = w.shape[1]
        meds_a = torch.stack([self._median(w, v, p) for _, v, p in self.a], 1)  # (c, L_a)
        meds_b = meds_a if self.same else torch.stack([self._median(w, v, p) for _, v, p in self.b], 1)
        out = []
        for b in range(w.shape[0]):
            wb = w[b]
            rows = torch.nonzero(wb > 0).squeeze(1)
            wu = wb[rows]
            ka, ka_k, ka_kap = self._kernels(wb, rows, meds_a[b], self.a)
            kb, kb_k, kb_kap = (ka, ka_k, ka_kap) if self.same else self._kernels(wb, rows, meds_b[b], self.b)
            cross = ka @ kb.T - 2 * n * (ka_k * wu) @ kb_k.T + n * n * ka_kap[:, None] * kb_kap[None, :]
            self_a = (ka.square().sum(-1) - 2 * n * (ka_k.square() * wu).sum(-1) + n * n * ka_kap.square())
            self_b = self_a if self.same else (kb.square().sum(-1) - 2 * n * (kb_k.square() * wu).sum(-1) + n * n * kb_kap.square())
            out.append(cross / (self_a.sqrt()[:, None] * self_b.sqrt()[None, :]))
        return torch.stack(out, 0)


@resampled_form()
def rbf_cka_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """RBF CKA from the layers' original pairwise distances, re-weighted per resample (:class:`RbfDistances`)."""
    sigma = float(ctx.param("rbf_sigma"))
    rs = ch.set
    dist = rs.memo(("rbf_distances", sigma), lambda: RbfDistances(rs.xa, rs.xb, rs.same, sigma))
    return dist.grid(ch.w), None
