"""Probe-sample bootstrap of every similarity grid of a model pair.

What is estimated: the sampling variability of each index over the probe set. Resample b draws
n probe rows with replacement (:func:`~repmatch.uncertainty.resample.bootstrap_indices`); its
replicate of cell (i, j) is *exactly* the value the grid engine gives on the resampled rows
``X_i[idx_b]``, ``Y_j[idx_b]`` (duplicated rows included, re-centred on the resample's own
mean). The same resamples serve every layer and every measure of the pair, so the replicates of
two cells are paired and a difference between cells has its own bootstrap distribution.

How (the ``weighted`` path, used for ``gap`` / ``flatten`` views of layers no wider than the
probe set): a resample is a vector of row multiplicities w (sum n). Every measure of the engine
except RBF CKA is a function of the resample's centred second moments: cross-covariances
C_ij = sum_p (x_p - m)(y_p - m)^T of all layer pairs (one batched matmul over all resamples
and all layers at once), the per-layer covariances C_ii, and, for the unbiased HSIC estimators,
the resampled rows' squared norms. From them, per resample and cell:

* linear CKA ||C_ij||_F^2 / (||C_ii||_F ||C_jj||_F);
* debiased CKA from the feature-space HSIC_1 identity (centred rows: u = -a, 1'K~1 = -sum a);
* minibatch CKA from per-minibatch cross products of the (sorted) resampled rows, whose sum is C_ij;
* Procrustes ||C_ij||_* / sqrt(tr C_ii tr C_jj);
* CCA family and regression through whitening: C_ii = V diag(s^2) V^T, W_i = V_r diag(1/s_r)
  (rank r with the engine's tolerance), canonical correlations = singular values of
  W_i^T C_ij W_j, PWCCA weights from W_i^T C_ii (the neurons in the canonical basis), regression
  R^2 = ||W_i^T C_ij||_F^2 / tr C_jj;
* RBF CKA from the original pairwise distances: the bandwidth is the resample's median distance
  (a weighted median with weights w_p w_q, computed from one sort per layer), the kernel is
  re-centred with weights and compared with weights sqrt(w_p w_q).

Singular values of the small blocks come from ``eigvalsh`` of the smaller Gram matrix (square
roots of its eigenvalues), which agrees with an SVD to ~1e-8 relative and is ~2x faster batched.

The ``gather`` path (any conv mode, any width) runs the grid engine on each resample's gathered
activations: exact by definition, B times the point-estimate cost; it is the reference the
weighted path is tested against.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..similarity.cka import _batches
from ..similarity.errors import SimilarityInputError
from ..similarity.grid import _DTYPES, _check_inputs, _source_eps, similarity_grids
from ..similarity.preprocess import pair_views, to_matrix
from ..similarity.registry import check_measures
from .intervals import percentile_interval
from .resample import bootstrap_counts, bootstrap_indices

#: Measures the weighted path computes (every default measure).
WEIGHTED_MEASURES = frozenset({
    "linear_cka", "rbf_cka", "debiased_cka", "minibatch_cka", "mean_cca", "svcca", "pwcca", "procrustes",
    "procrustes_distance", "linear_regression",
})
#: The weighted path works with d x d covariances; wider layers go through the gather path.
MAX_WEIGHTED_WIDTH = 1024


@dataclass
class BootstrapGrids:
    """Bootstrap replicates of every grid of one model pair.

    ``replicates[m]``: (B, L_a, L_b) values of measure m on each resample (NaN where the
    resample is degenerate for that cell); ``backward[m]``: (B, L_b, L_a) for asymmetric measures
    when requested. ``indices``: the (B, n) resampled rows (shared by every cell and measure).
    ``path``: ``weighted`` or ``gather`` (how they were computed).
    """

    measures: list[str]
    replicates: dict[str, np.ndarray]
    backward: dict[str, np.ndarray] = field(default_factory=dict)
    indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    seed: int = 0
    path: str = "weighted"

    @property
    def n_boot(self) -> int:
        return int(self.indices.shape[0])

    def interval(self, measure: str, level: float = 0.95, backward: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Percentile interval per cell: (ci_low, ci_high, n_valid) grids."""
        reps = (self.backward if backward else self.replicates)[measure]
        return percentile_interval(reps, level=level)


def bootstrap_similarity_grids(
    acts_a: Mapping[str, Any],
    acts_b: Mapping[str, Any],
    measures: Sequence[str],
    *,
    n_boot: int,
    seed: int,
    conv_mode: str = "gap",
    params: Mapping[str, Any] | None = None,
    dtype: str = "float64",
    device: torch.device | str | None = None,
    same_model: bool | None = None,
    reverse: bool = False,
    path: str = "auto",
    chunk: int | None = None,
    token_mode: str | None = None,
) -> BootstrapGrids:
    """Bootstrap replicates of every measure on every layer pair, from ``n_boot`` shared resamples.

    Arguments mirror :func:`repmatch.similarity.similarity_grids` (same conv handling, parameters
    and orientation conventions). ``path``: ``auto`` (weighted when every measure and layer allows
    it), ``weighted`` or ``gather``. ``chunk``: resamples processed at once (memory bound).
    """
    n = _check_inputs(acts_a, acts_b, conv_mode, "nan")
    resolved = check_measures(measures)
    names = [m.name for m in resolved]
    if dtype not in _DTYPES:
        raise SimilarityInputError(f"precision must be one of {sorted(_DTYPES)}, got {dtype!r}")
    if path not in ("auto", "weighted", "gather"):
        raise SimilarityInputError(f"path must be auto, weighted or gather, got {path!r}")
    same = (acts_a is acts_b) if same_model is None else same_model
    dev = torch.device(device) if device is not None else torch.device("cpu")
    idx = bootstrap_indices(n, n_boot, seed)
    asym = [m.name for m in resolved if reverse and not m.symmetric]

    shapes = [tuple(np.shape(v)) for v in list(acts_a.values()) + list(acts_b.values())]
    views = {pair_views(sa, sb, conv_mode, token_mode) for sa in shapes for sb in shapes}
    widths = [_width(s, next(iter(views))[0]) for s in shapes]
    weighted_ok = (
        conv_mode in ("gap", "flatten") and len(views) == 1 and set(names) <= WEIGHTED_MEASURES
        and max(widths) <= min(n, MAX_WEIGHTED_WIDTH) and n >= 4
    )
    if path == "weighted" and not weighted_ok:
        raise SimilarityInputError("the weighted bootstrap needs conv_mode gap/flatten, layers no wider than the probe set "
                                   f"(and <= {MAX_WEIGHTED_WIDTH}), n >= 4 and measures among {sorted(WEIGHTED_MEASURES)}")
    use_weighted = weighted_ok if path == "auto" else path == "weighted"
    if not use_weighted:
        fwd, bwd = _gather_path(acts_a, acts_b, names, idx, conv_mode, params, dtype, dev, same, reverse, token_mode)
        return BootstrapGrids(names, fwd, {k: bwd[k] for k in asym}, idx, seed, "gather")
    view = next(iter(views))[0]
    xa, raw_a = zip(*[_centred(acts_a[k], view, dev, _DTYPES[dtype]) for k in acts_a])
    xb, raw_b = (xa, raw_a) if same else zip(*[_centred(acts_b[k], view, dev, _DTYPES[dtype]) for k in acts_b])
    eps_a = [_source_eps(v) for v in acts_a.values()]
    eps_b = eps_a if same else [_source_eps(v) for v in acts_b.values()]
    fwd, bwd = _weighted_path(list(xa), list(xb), eps_a, eps_b, names, asym, idx, dict(params or {}), same, chunk)
    _mask_zero_variance(fwd, bwd, list(xa), list(xb), list(raw_a), list(raw_b), eps_a, eps_b, idx)
    return BootstrapGrids(names, fwd, bwd, idx, seed, "weighted")


def _width(shape: tuple[int, ...], view: Any) -> int:
    """Features per sample of a layer under ``view``: channels (D for tokens), or all of them when flattened."""
    if len(shape) == 2:
        return int(shape[1])
    if view.kind == "flat":
        return int(np.prod(shape[1:]))
    return int(shape[2]) if len(shape) == 3 else int(shape[1])


def _centred(arr: Any, view: Any, dev: torch.device, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer centred on the probe-set mean, and its uncentred squared row norms (the zero-variance scale)."""
    x = to_matrix(arr, view, dev, dt)
    return x - x.mean(dim=0, keepdim=True), x.square().sum(1)


def _mask_zero_variance(fwd, bwd, xa, xb, raw_a, raw_b, eps_a, eps_b, idx) -> None:
    """NaN for a layer with zero variance on a resample, by the engine's rule (centred norm at the
    rounding level of the stored data): every measure is undefined there."""
    n = xa[0].shape[0]
    w = torch.as_tensor(bootstrap_counts(idx, n), dtype=xa[0].dtype, device=xa[0].device)

    def bad(xs, raws, eps):
        cols = []
        for x, raw, e in zip(xs, raws, eps):
            m = (w @ x) / n
            tr = w @ x.square().sum(1) - n * m.square().sum(1)
            cols.append(tr.clamp_min(0).sqrt() <= 4 * e * (w @ raw).sqrt())
        return torch.stack(cols, 1).cpu().numpy()

    ba = bad(xa, raw_a, eps_a)
    bb = ba if xa is xb else bad(xb, raw_b, eps_b)
    if not (ba.any() or bb.any()):
        return
    cell = ba[:, :, None] | bb[:, None, :]
    for grids, mask in ((fwd, cell), (bwd, cell.transpose(0, 2, 1))):
        for g in grids.values():
            g[mask] = np.nan


# --- gather path (reference) ---------------------------------------------------------------------


def _take(arr: Any, rows: np.ndarray) -> Any:
    if isinstance(arr, torch.Tensor):
        return arr[torch.as_tensor(rows, device=arr.device)]
    return np.asarray(arr)[rows]


def _gather_path(acts_a, acts_b, names, idx, conv_mode, params, dtype, dev, same, reverse, token_mode=None):
    b = idx.shape[0]
    fwd = {m: np.full((b, len(acts_a), len(acts_b)), np.nan) for m in names}
    bwd = {m: np.full((b, len(acts_b), len(acts_a)), np.nan) for m in names}
    for k, rows in enumerate(idx):
        ga = {name: _take(v, rows) for name, v in acts_a.items()}
        gb = ga if same else {name: _take(v, rows) for name, v in acts_b.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f, r = similarity_grids(ga, gb, names, conv_mode, dev, params, "nan", dtype, same_model=same, reverse=reverse,
                                    token_mode=token_mode)
        for m in names:
            fwd[m][k] = f[m]
            if m in r:
                bwd[m][k] = r[m]
    return fwd, bwd


# --- weighted path -------------------------------------------------------------------------------


def _segments(widths: list[int], dt: torch.dtype, dev: torch.device) -> tuple[torch.Tensor, list[slice]]:
    spans, start = [], 0
    for w in widths:
        spans.append(slice(start, start + w))
        start += w
    seg = torch.zeros(len(widths), start, dtype=dt, device=dev)
    for k, sl in enumerate(spans):
        seg[k, sl] = 1
    return seg, spans


@dataclass
class _Layer:
    """One layer's per-resample quantities (leading axis: resamples of the chunk)."""

    cov: torch.Tensor  # (c, d, d)
    trace: torch.Tensor  # (c,)
    frob: torch.Tensor  # (c,) ||C||_F
    eps: float
    n: int
    _white: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def whitening(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W (c, d, d) with zero columns beyond the rank, rank (c,), eigenvalues descending (c, d))."""
        if self._white is None:
            lam, vec = torch.linalg.eigh(self.cov)
            lam, vec = lam.flip(-1), vec.flip(-1)  # descending
            s = lam.clamp_min(0).sqrt()
            d = lam.shape[-1]
            # The engine's rank tolerance on singular values; eigh of a covariance cannot resolve
            # singular values below ~sqrt(eps64) * s_max, so that is the floor.
            tol = s[:, :1] * max(max(self.n, d) * self.eps, d * float(np.sqrt(np.finfo(np.float64).eps)))
            keep = (s > tol) & (s[:, :1] > 0)
            inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
            self._white = (vec * inv[:, None, :], keep.sum(-1), torch.where(keep, lam, torch.zeros_like(lam)))
        return self._white

    def svcca_rank(self, variance: float) -> torch.Tensor:
        """SVCCA's k per resample: leading directions holding ``variance`` of the variance (at most the rank)."""
        _, rank, lam = self.whitening()
        cum = torch.cumsum(lam, -1) / lam.sum(-1, keepdim=True)
        target = torch.full((cum.shape[0], 1), variance - 1e-12, dtype=cum.dtype, device=cum.device)
        return (torch.searchsorted(cum.contiguous(), target).squeeze(1) + 1).minimum(rank)


def _sum_top_sqrt(gram: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Sum of the top-k singular values of T from G = T T^T (or T^T T): sqrt of its top-k eigenvalues."""
    lam = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt()
    pos = torch.arange(lam.shape[-1], device=lam.device)[None, :]
    return (lam * (pos < k[:, None])).sum(-1)


def _pwcca_side(t: torch.Tensor, proj: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """PWCCA with the canonical variates of the side whose rows index ``t`` (t: (c, p, q), proj: (c, p, d))."""
    lam, u = torch.linalg.eigh(t @ t.transpose(1, 2))
    lam, u = lam.flip(-1), u.flip(-1)
    rho = lam.clamp_min(0).sqrt()
    alpha = (u.transpose(1, 2) @ proj).abs().sum(-1)
    pos = torch.arange(lam.shape[-1], device=lam.device)[None, :]
    alpha = alpha * (pos < k[:, None])
    return (alpha * rho).sum(-1) / alpha.sum(-1)


def _weighted_path(xa, xb, eps_a, eps_b, names, asym, idx, params, same, chunk):
    n = xa[0].shape[0]
    dev, dt = xa[0].device, xa[0].dtype
    b_total = idx.shape[0]
    la, lb = len(xa), len(xb)
    fwd = {m: np.full((b_total, la, lb), np.nan) for m in names}
    bwd = {m: np.full((b_total, lb, la), np.nan) for m in asym}
    wa = [x.shape[1] for x in xa]
    wb = [x.shape[1] for x in xb]
    big_a = torch.cat(xa, dim=1)
    big_b = big_a if same else torch.cat(xb, dim=1)
    seg_a, span_a = _segments(wa, dt, dev)
    seg_b, span_b = (seg_a, span_a) if same else _segments(wb, dt, dev)
    need_cov = bool(set(names) - {"rbf_cka"})
    mb_size = int(params.get("minibatch_size") or 100) if "minibatch_cka" in names else None
    if mb_size is not None and mb_size < 4:
        raise SimilarityInputError(f"minibatch_cka: the unbiased HSIC estimator needs at least 4 rows per batch (batch={mb_size})")
    counts_all = bootstrap_counts(idx, n)
    if chunk is None:
        per = 8 * n * (big_a.shape[1] + (0 if same else big_b.shape[1])) * 3 + 8 * big_a.shape[1] * big_b.shape[1] * 2
        chunk = max(1, min(b_total, int(256e6 // max(per, 1))))
    rbf = _RbfLayers(xa, xb, same, float(params.get("rbf_sigma") or 0.8)) if "rbf_cka" in names else None
    for start in range(0, b_total, chunk):
        sl = slice(start, min(start + chunk, b_total))
        rows = torch.as_tensor(idx[sl], device=dev)
        w = torch.as_tensor(counts_all[sl], device=dev, dtype=dt)
        out: dict[str, torch.Tensor] = {}
        back: dict[str, torch.Tensor] = {}
        if need_cov:
            _cov_measures(big_a, big_b, same, rows, w, seg_a, seg_b, span_a, span_b, eps_a, eps_b, names, asym, params,
                          mb_size, out, back)
        if rbf is not None:
            out["rbf_cka"] = rbf.grid(w)
        for m in names:
            fwd[m][sl] = out[m].cpu().numpy()
        for m in asym:
            bwd[m][sl] = back[m].cpu().numpy()
    return fwd, bwd


def _cov_measures(big_a, big_b, same, rows, w, seg_a, seg_b, span_a, span_b, eps_a, eps_b, names, asym, params, mb_size,
                  out, back):
    c, n = rows.shape
    nan = float("nan")
    mean_a = (w @ big_a) / n
    fa = big_a[rows] - mean_a[:, None, :]  # (c, n, Da): the resampled rows, centred on the resample
    if same:
        mean_b, fb = mean_a, fa
    else:
        mean_b = (w @ big_b) / n
        fb = big_b[rows] - mean_b[:, None, :]
    # Cross-covariances of all layer pairs; with minibatch CKA, summed from the per-minibatch products.
    cross = torch.zeros(c, fa.shape[2], fb.shape[2], dtype=fa.dtype, device=fa.device)
    if mb_size is not None:
        mb_num = torch.zeros(c, seg_a.shape[0], seg_b.shape[0], dtype=fa.dtype, device=fa.device)
        mb_self_a = torch.zeros(c, seg_a.shape[0], dtype=fa.dtype, device=fa.device)
        mb_self_b = mb_self_a if same else torch.zeros(c, seg_b.shape[0], dtype=fa.dtype, device=fa.device)
        for bsl in _batches(n, mb_size):
            m = bsl.stop - bsl.start
            pa, pb = fa[:, bsl], fb[:, bsl]
            prod = pa.transpose(1, 2) @ pb
            cross += prod
            ta = _hsic_terms(pa, seg_a)
            tb = ta if same else _hsic_terms(pb, seg_b)
            csq = seg_a @ prod.square() @ seg_b.T
            self_sq_a = _block_diag_sq(prod, seg_a) if same else _self_sq(pa, span_a)
            self_sq_b = self_sq_a if same else _self_sq(pb, span_b)
            num, sa_, sb_ = _hsic1(csq, ta, tb, self_sq_a, self_sq_b, m)
            mb_num += num
            mb_self_a += sa_
            if not same:
                mb_self_b += sb_
        out["minibatch_cka"] = _cka_ratio(mb_num, mb_self_a, mb_self_b)
    else:
        cross = fa.transpose(1, 2) @ fb
    layers_a = [_layer(cross if same else None, fa, s, e, n) for s, e in zip(span_a, eps_a)]
    layers_b = layers_a if same else [_layer(None, fb, s, e, n) for s, e in zip(span_b, eps_b)]
    la, lb = len(layers_a), len(layers_b)
    blocks = [[cross[:, sa, sb] for sb in span_b] for sa in span_a]
    fro_a = torch.stack([x.frob for x in layers_a], 1)
    fro_b = torch.stack([x.frob for x in layers_b], 1)
    tr_a = torch.stack([x.trace for x in layers_a], 1)
    tr_b = torch.stack([x.trace for x in layers_b], 1)
    csq = seg_a @ cross.square() @ seg_b.T
    if "linear_cka" in names:
        out["linear_cka"] = csq / (fro_a[:, :, None] * fro_b[:, None, :])
    if "debiased_cka" in names:
        ta = _centred_hsic_terms(fa, seg_a)
        tb = ta if same else _centred_hsic_terms(fb, seg_b)
        num, sa_, sb_ = _hsic1(csq, ta, tb, fro_a.square(), fro_b.square(), n)
        out["debiased_cka"] = _cka_ratio(num, sa_, sb_)
    if "procrustes" in names or "procrustes_distance" in names:
        nuc = torch.empty(c, la, lb, dtype=cross.dtype, device=cross.device)
        for i in range(la):
            for j in range(lb):
                blk = blocks[i][j]
                g = blk @ blk.transpose(1, 2) if blk.shape[1] <= blk.shape[2] else blk.transpose(1, 2) @ blk
                nuc[:, i, j] = _sum_top_sqrt(g, torch.full((c,), g.shape[1], device=g.device))
        proc = nuc / (tr_a[:, :, None] * tr_b[:, None, :]).sqrt()
        if "procrustes" in names:
            out["procrustes"] = proc
        if "procrustes_distance" in names:
            out["procrustes_distance"] = 2.0 - 2.0 * proc
    if {"mean_cca", "svcca", "pwcca", "linear_regression"} & set(names):
        whites_a = [x.whitening() for x in layers_a]
        whites_b = whites_a if same else [x.whitening() for x in layers_b]
        # T_ij = W_i^T C_ij W_j (canonical correlations = its singular values), once per pair;
        # SVCCA's reduced layers are the leading columns of the same whitening (eigenvalues descending).
        tmat = [[whites_a[i][0].transpose(1, 2) @ blocks[i][j] @ whites_b[j][0] for j in range(lb)] for i in range(la)]
        variants = []
        if "mean_cca" in names:
            variants.append(("mean_cca", [r for _, r, _ in whites_a], [r for _, r, _ in whites_b]))
        if "svcca" in names:
            v = float(params.get("svcca_variance") or 0.99)
            ka = [x.svcca_rank(v) for x in layers_a]
            variants.append(("svcca", ka, ka if same else [x.svcca_rank(v) for x in layers_b]))
        for name, ka_, kb_ in variants:
            res = torch.full((c, la, lb), nan, dtype=cross.dtype, device=cross.device)
            for i in range(la):
                for j in range(lb):
                    t = tmat[i][j]
                    if name == "svcca":
                        t = t * (_leading(ka_[i], t.shape[1])[:, :, None] & _leading(kb_[j], t.shape[2])[:, None, :]).to(t.dtype)
                    g = t @ t.transpose(1, 2) if t.shape[1] <= t.shape[2] else t.transpose(1, 2) @ t
                    k = torch.minimum(ka_[i], kb_[j])
                    val = _sum_top_sqrt(g, k) / k
                    ok = (ka_[i] + kb_[j] <= n - 1) & (k > 0)
                    res[:, i, j] = torch.where(ok, val, torch.full_like(val, nan))
            out[name] = res
        if "pwcca" in names:
            proj_a = [wh[0].transpose(1, 2) @ x.cov for wh, x in zip(whites_a, layers_a)]
            proj_b = proj_a if same else [wh[0].transpose(1, 2) @ x.cov for wh, x in zip(whites_b, layers_b)]
            res = torch.full((c, la, lb), nan, dtype=cross.dtype, device=cross.device)
            res_b = torch.full((c, lb, la), nan, dtype=cross.dtype, device=cross.device)
            want_back = "pwcca" in asym
            for i in range(la):
                for j in range(lb):
                    ra, rb = whites_a[i][1], whites_b[j][1]
                    t = tmat[i][j]
                    ok = (ra + rb <= n - 1) & (ra > 0) & (rb > 0)
                    side_a = ra <= rb  # forward: variates of a when r_a <= r_b (the engine's rule)
                    side_b_back = rb <= ra  # backward value(b_j, a_i): variates of b when r_b <= r_a
                    need_a = bool(side_a.any()) or (want_back and bool((~side_b_back).any()))
                    need_b = bool((~side_a).any()) or (want_back and bool(side_b_back.any()))
                    val_a = _pwcca_side(t, proj_a[i], ra) if need_a else None
                    val_b = _pwcca_side(t.transpose(1, 2), proj_b[j], rb) if need_b else None
                    fwd_v = torch.where(side_a, _or(val_a, val_b), _or(val_b, val_a))
                    res[:, i, j] = torch.where(ok, fwd_v, torch.full_like(fwd_v, nan))
                    if want_back:
                        back_v = torch.where(side_b_back, _or(val_b, val_a), _or(val_a, val_b))
                        res_b[:, j, i] = torch.where(ok, back_v, torch.full_like(back_v, nan))
            out["pwcca"] = res
            if want_back:
                back["pwcca"] = res_b
        if "linear_regression" in names:
            res = torch.full((c, la, lb), nan, dtype=cross.dtype, device=cross.device)
            res_b = torch.full((c, lb, la), nan, dtype=cross.dtype, device=cross.device)
            for i in range(la):
                for j in range(lb):
                    blk = blocks[i][j]
                    fw = (whites_a[i][0].transpose(1, 2) @ blk).square().sum((1, 2)) / tr_b[:, j]
                    res[:, i, j] = torch.where(whites_a[i][1] >= n - 1, torch.full_like(fw, nan), fw)
                    if "linear_regression" in asym:
                        bw = (blk @ whites_b[j][0]).square().sum((1, 2)) / tr_a[:, i]
                        res_b[:, j, i] = torch.where(whites_b[j][1] >= n - 1, torch.full_like(bw, nan), bw)
            out["linear_regression"] = res
            if "linear_regression" in asym:
                back["linear_regression"] = res_b


def _leading(k: torch.Tensor, size: int) -> torch.Tensor:
    """(c, size) mask of the first k[c] positions."""
    return torch.arange(size, device=k.device)[None, :] < k[:, None]


def _or(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
    out = x if x is not None else y
    assert out is not None
    return out


def _layer(cross_same: torch.Tensor | None, f: torch.Tensor, span: slice, eps: float, n: int) -> _Layer:
    if cross_same is not None:
        cov = cross_same[:, span, span]
    else:
        x = f[:, :, span]
        cov = x.transpose(1, 2) @ x
    return _Layer(cov=cov, trace=torch.diagonal(cov, dim1=1, dim2=2).sum(-1), frob=torch.linalg.matrix_norm(cov), eps=eps, n=n)


def _block_diag_sq(prod: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """||block_kk||_F^2 of a (c, D, D) product for each layer k (c, L)."""
    return torch.diagonal(seg @ prod.square() @ seg.T, dim1=1, dim2=2)


def _self_sq(f: torch.Tensor, spans: list[slice]) -> torch.Tensor:
    """||F_k^T F_k||_F^2 per layer k from per-layer products only (not the whole D x D product)."""
    return torch.stack([(f[:, :, sl].transpose(1, 2) @ f[:, :, sl]).square().sum((1, 2)) for sl in spans], 1)


def _hsic_terms(f: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-layer HSIC_1 pieces for rows f (c, m, D): a = row norms^2 (c, L, m), u = K~1 (c, L, m), 1'K~1 (c, L)."""
    a = (f.square() @ seg.T).transpose(1, 2)
    s = f.sum(dim=1)  # (c, D)
    u = ((f * s[:, None, :]) @ seg.T).transpose(1, 2) - a
    ones = s.square() @ seg.T - a.sum(-1)
    return a, u, ones


def _centred_hsic_terms(f: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`_hsic_terms` for rows centred on their own mean: F^T 1 = 0, so u = -a and 1'K~1 = -sum(a)."""
    a = (f.square() @ seg.T).transpose(1, 2)
    return a, -a, -a.sum(-1)


def _hsic1(csq, ta, tb, self_sq_a, self_sq_b, m):
    """HSIC_1 numerators for all pairs and both self terms, one minibatch of m rows (Song et al. 2012)."""
    a_a, u_a, o_a = ta
    a_b, u_b, o_b = tb
    c1, c2, c3 = 1.0 / ((m - 1) * (m - 2)), 2.0 / (m - 2), 1.0 / (m * (m - 3))
    num = c3 * (csq - a_a @ a_b.transpose(1, 2) + c1 * o_a[:, :, None] * o_b[:, None, :] - c2 * (u_a @ u_b.transpose(1, 2)))
    self_a = c3 * (self_sq_a - a_a.square().sum(-1) + c1 * o_a.square() - c2 * u_a.square().sum(-1))
    self_b = c3 * (self_sq_b - a_b.square().sum(-1) + c1 * o_b.square() - c2 * u_b.square().sum(-1))
    return num, self_a, self_b


def _cka_ratio(num: torch.Tensor, self_a: torch.Tensor, self_b: torch.Tensor) -> torch.Tensor:
    nan = torch.tensor(float("nan"), dtype=num.dtype, device=num.device)
    sa = torch.where(self_a > 0, self_a, nan).sqrt()
    sb = torch.where(self_b > 0, self_b, nan).sqrt()
    return num / (sa[:, :, None] * sb[:, None, :])


class _RbfLayers:
    """RBF CKA per resample from each layer's original squared distances (sorted once).

    With multiplicities w and K the kernel on the original rows, the resample's centred kernel
    is Kc = K - k 1' - 1 k' + kappa (k = K w / n, kappa = w'K w / n^2), and because the
    weighted row sums of Lc vanish, <Kc, Lc>_w = <K, L>_w - 2 n sum_p w_p k_p l_p + n^2 kappa lambda,
    with <K, L>_w = sum_pq w_p w_q K_pq L_pq: one matmul of the weighted kernels of all layers,
    restricted to the rows the resample contains.
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


def interval_table(res: BootstrapGrids, model_a: str, model_b: str, layers_a: Sequence[str], layers_b: Sequence[str],
                   *, level: float = 0.95, layer_index_a: Mapping[str, int] | None = None,
                   layer_index_b: Mapping[str, int] | None = None) -> Any:
    """Tidy rows ``model_a, layer_a, index_a, model_b, layer_b, index_b, method, ci_low, ci_high, n_boot``
    for every cell of ``res`` (backward grids as swapped rows, like ``similarity_table``), to merge
    on the key columns with the point-estimate table."""
    import pandas as pd

    idx_a = dict(layer_index_a) if layer_index_a is not None else {k: i for i, k in enumerate(layers_a)}
    idx_b = dict(layer_index_b) if layer_index_b is not None else {k: i for i, k in enumerate(layers_b)}

    def frame(reps: np.ndarray, ma: str, na: Sequence[str], ia: Mapping[str, int], mb: str, nb: Sequence[str],
              ib: Mapping[str, int], method: str) -> pd.DataFrame:
        lo, hi, nv = percentile_interval(reps, level=level)
        ga, gb = np.meshgrid(np.arange(len(na)), np.arange(len(nb)), indexing="ij")
        la = [na[k] for k in ga.ravel()]
        lb = [nb[k] for k in gb.ravel()]
        return pd.DataFrame({
            "model_a": ma, "layer_a": la, "index_a": np.array([ia[x] for x in la], dtype=np.int64),
            "model_b": mb, "layer_b": lb, "index_b": np.array([ib[x] for x in lb], dtype=np.int64),
            "method": method, "ci_low": lo.ravel(), "ci_high": hi.ravel(), "n_boot": nv.ravel().astype(np.int64),
        })

    frames = [frame(r, model_a, layers_a, idx_a, model_b, layers_b, idx_b, m) for m, r in res.replicates.items()]
    frames += [frame(r, model_b, layers_b, idx_b, model_a, layers_a, idx_a, m) for m, r in res.backward.items()]
    return pd.concat(frames, ignore_index=True)


def counterpart_pvalues(replicates: np.ndarray, layers_a: Sequence[str], layers_b: Sequence[str], *,
                        larger_is_similar: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paired-bootstrap p-values of "cell (i, j) beats its counterpart", per cell of one grid.

    ``replicates``: (B, L_a, L_b) values of one measure on shared resamples (rows: layers of A,
    columns: layers of B). The counterpart of column j is the cell (c, j) with A's layer c named
    like B's layer j (``p_column``); the counterpart of row i is (i, k) with B's layer k named like
    A's layer i (``p_row``). Each p-value tests H0 "value(i, j) is not more similar than the
    counterpart" one-sided (direction from ``larger_is_similar``) with
    :func:`~repmatch.uncertainty.significance.paired_bootstrap_pvalue`; NaN where the layer has no
    counterpart, on the counterpart itself, and where no resample is finite. Why per cell and
    uncorrected: the sanity module chooses the family of candidates and corrects within it.
    """
    from .significance import paired_bootstrap_pvalue

    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim != 3 or reps.shape[1:] != (len(layers_a), len(layers_b)):
        raise ValueError(f"need (B, {len(layers_a)}, {len(layers_b)}) replicates, got {reps.shape}")
    s = 1.0 if larger_is_similar else -1.0
    pos_a = {name: i for i, name in enumerate(layers_a)}
    pos_b = {name: j for j, name in enumerate(layers_b)}
    p_col = np.full(reps.shape[1:], np.nan)
    p_row = np.full(reps.shape[1:], np.nan)
    for j, name in enumerate(layers_b):
        c = pos_a.get(name)
        if c is not None:
            p_col[:, j] = paired_bootstrap_pvalue(s * reps[:, :, j], s * reps[:, c, j][:, None], "greater")
            p_col[c, j] = np.nan
    for i, name in enumerate(layers_a):
        k = pos_b.get(name)
        if k is not None:
            p_row[i, :] = paired_bootstrap_pvalue(s * reps[:, i, :], s * reps[:, i, k][:, None], "greater")
            p_row[i, k] = np.nan
    return p_col, p_row


def uncertainty_table(res: BootstrapGrids, model_a: str, model_b: str, layers_a: Sequence[str], layers_b: Sequence[str],
                      *, level: float, larger_is_similar: Mapping[str, bool]) -> Any:
    """:func:`interval_table` plus ``p_column, p_row`` (:func:`counterpart_pvalues`) for every cell.

    Rows follow ``similarity_table``'s orientations (backward grids of asymmetric measures as
    swapped rows, whose p-values are computed on the backward replicates), so the result merges
    one-to-one on the key columns and ``method``.
    """
    table = interval_table(res, model_a, model_b, layers_a, layers_b, level=level)
    cols, rows = [], []
    for grids, na, nb in ((res.replicates, layers_a, layers_b), (res.backward, layers_b, layers_a)):
        for m, reps in grids.items():
            pc, pr = counterpart_pvalues(reps, na, nb, larger_is_similar=larger_is_similar[m])
            cols.append(pc.ravel())
            rows.append(pr.ravel())
    table["p_column"] = np.concatenate(cols) if cols else np.zeros(0)
    table["p_row"] = np.concatenate(rows) if rows else np.zeros(0)
    return table
