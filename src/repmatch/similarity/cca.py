"""The CCA family: mean canonical correlation, SVCCA and PWCCA.

Canonical correlations between two centred layers are the singular values of Q_a^T Q_b, where
Q is an orthonormal basis of each layer's column space (Kornblith et al. 2019, Table 1). Each
layer's basis comes from one SVD (cached in :class:`LayerStats`); the grid is one chunked matmul
of all bases plus batched SVDs of the small blocks.

Degeneracy: with r_a + r_b > n - 1 (ranks of the centred layers, n rows) the two column spaces
must intersect inside the (n - 1)-dimensional centred space, so some correlations are 1 whatever
the data: the value is meaningless and the cell is NaN (with a warning) instead of a number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .linalg import blockwise_grid
from .resampled import ResampleChunk, resampled_form, smaller_gram, sum_top_sqrt
from .stats import LayerStats


def _valid_pairs(qa: Sequence[torch.Tensor], qb: Sequence[torch.Tensor], sa: Sequence[LayerStats], sb: Sequence[LayerStats],
                 ctx: GridContext, name: str) -> set[tuple[int, int]]:
    n = sa[0].n
    ok: set[tuple[int, int]] = set()
    for i, a in enumerate(qa):
        for j, b in enumerate(qb):
            if a.shape[1] + b.shape[1] > n - 1:
                ctx.degenerate(
                    f"{name}: {sa[i].name!r} (rank {a.shape[1]}) vs {sb[j].name!r} (rank {b.shape[1]}) with {n} rows: "
                    "ranks sum to more than n - 1, so canonical correlations are forced to 1; use more probe samples "
                    "or fewer features (conv_mode gap, svcca)"
                )
            else:
                ok.add((i, j))
    return ok


def _mean_cca(qa: Sequence[torch.Tensor], qb: Sequence[torch.Tensor], sa: Sequence[LayerStats], sb: Sequence[LayerStats],
              ctx: GridContext, name: str) -> np.ndarray:
    pairs = _valid_pairs(qa, qb, sa, sb, ctx, name)
    if not pairs:
        return np.full((len(qa), len(qb)), np.nan)

    def mean_rho(blocks: torch.Tensor, idx: list[tuple[int, int]]) -> torch.Tensor:
        return torch.linalg.svdvals(blocks).mean(dim=1)

    return blockwise_grid(qa, qb, mean_rho, pairs=pairs).cpu().numpy()


def mean_cca_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Mean canonical correlation rho-bar = ||Q_a^T Q_b||_* / min(r_a, r_b)."""
    return _mean_cca([s.basis for s in sa], [s.basis for s in sb], sa, sb, ctx, "mean_cca")


def svcca_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """SVCCA (Raghu et al. 2017): keep the top singular directions holding ``svcca_variance`` of the
    variance of each layer, then the mean canonical correlation of the reduced layers."""
    v = float(ctx.param("svcca_variance"))
    qa = [s.svcca_basis(v) for s in sa]
    qb = qa if sa is sb else [s.svcca_basis(v) for s in sb]
    return _mean_cca(qa, qb, sa, sb, ctx, "svcca")


def pwcca_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Projection-weighted CCA (Morcos et al. 2018): sum_i alpha_i rho_i / sum_i alpha_i.

    alpha_i = sum_j |<h_i, x_j>| over the (centred) neurons x_j of one layer, h_i its i-th canonical
    variate. As in the reference implementation the weights come from the layer of lower rank
    (layer a on ties), so the measure is not symmetric, and, because it looks at individual
    neurons, not invariant to rotations of the feature space.
    """
    qa = [s.basis for s in sa]
    qb = [s.basis for s in sb]
    pairs = _valid_pairs(qa, qb, sa, sb, ctx, "pwcca")
    if not pairs:
        return np.full((len(sa), len(sb)), np.nan)

    def pw(blocks: torch.Tensor, idx: list[tuple[int, int]]) -> torch.Tensor:
        u, rho, vh = torch.linalg.svd(blocks, full_matrices=False)
        out = torch.empty(len(idx), dtype=blocks.dtype, device=blocks.device)
        for k, (i, j) in enumerate(idx):
            ra, rb = qa[i].shape[1], qb[j].shape[1]
            if ra <= rb:  # canonical variates of a: Q_a U; weights against a's neurons
                w = (u[k].T @ sa[i].neuron_projections).abs().sum(dim=1)
            else:
                w = (vh[k] @ sb[j].neuron_projections).abs().sum(dim=1)
            out[k] = (w * rho[k]).sum() / w.sum()
        return out

    return blockwise_grid(qa, qb, pw, pairs=pairs).cpu().numpy()


# --- resampled forms (the bootstrap: c resamples at once, from :class:`~.resampled.ResampleChunk`) ---------------
# Whitening each layer's resampled covariance, C_ii = V diag(s^2) V^T, W_i = V_r diag(1 / s_r) (rank r
# with the engine's tolerance), makes the canonical correlations the singular values of
# T_ij = W_i^T C_ij W_j; SVCCA's reduced layers are the leading columns of the same whitening
# (eigenvalues descending), and PWCCA's neurons in the canonical basis are W_i^T C_ii.


def _whitened_cross(ch: ResampleChunk) -> list[list[torch.Tensor]]:
    """T_ij = W_i^T C_ij W_j (c, d_i, d_j) for every layer pair, once per chunk for the whole family."""
    def compute() -> list[list[torch.Tensor]]:
        wa, wb, blocks = ch.whitening_a, ch.whitening_b, ch.blocks_ab
        return [[wa[i][0].transpose(1, 2) @ blocks[i][j] @ wb[j][0] for j in range(len(wb))] for i in range(len(wa))]

    return ch.memo("cca_whitened_cross", compute)


def _leading(k: torch.Tensor, size: int) -> torch.Tensor:
    """(c, size) mask of the first k[c] positions."""
    return torch.arange(size, device=k.device)[None, :] < k[:, None]


def _svcca_rank(white: tuple[torch.Tensor, torch.Tensor, torch.Tensor], variance: float) -> torch.Tensor:
    """SVCCA's k per resample: leading directions holding ``variance`` of the variance (at most the rank)."""
    _, rank, lam = white
    cum = torch.cumsum(lam, -1) / lam.sum(-1, keepdim=True)
    target = torch.full((cum.shape[0], 1), variance - 1e-12, dtype=cum.dtype, device=cum.device)
    return (torch.searchsorted(cum.contiguous(), target).squeeze(1) + 1).minimum(rank)


def _mean_cca_resampled(ch: ResampleChunk, ka: list[torch.Tensor], kb: list[torch.Tensor], truncate: bool) -> torch.Tensor:
    """Mean of the top-min(k_a, k_b) canonical correlations per cell; NaN where k_a + k_b > n - 1 (forced to 1)."""
    tmat = _whitened_cross(ch)
    res = ch.nan_grid()
    for i in range(len(ka)):
        for j in range(len(kb)):
            t = tmat[i][j]
            if truncate:
                t = t * (_leading(ka[i], t.shape[1])[:, :, None] & _leading(kb[j], t.shape[2])[:, None, :]).to(t.dtype)
            k = torch.minimum(ka[i], kb[j])
            val = sum_top_sqrt(smaller_gram(t), k) / k
            ok = (ka[i] + kb[j] <= ch.n - 1) & (k > 0)
            res[:, i, j] = torch.where(ok, val, torch.full_like(val, float("nan")))
    return res


@resampled_form()
def mean_cca_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """Mean canonical correlation per resample, from the singular values of W_i^T C_ij W_j."""
    return _mean_cca_resampled(ch, [r for _, r, _ in ch.whitening_a], [r for _, r, _ in ch.whitening_b], False), None


@resampled_form()
def svcca_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """SVCCA per resample: the whitened cross blocks cut to each layer's leading ``svcca_variance`` directions."""
    v = float(ctx.param("svcca_variance"))
    ka = [_svcca_rank(w, v) for w in ch.whitening_a]
    return _mean_cca_resampled(ch, ka, ka if ch.same else [_svcca_rank(w, v) for w in ch.whitening_b], True), None


def _pwcca_side(t: torch.Tensor, proj: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """PWCCA with the canonical variates of the side whose rows index ``t`` (t: (c, p, q), proj: (c, p, d))."""
    lam, u = torch.linalg.eigh(t @ t.transpose(1, 2))
    lam, u = lam.flip(-1), u.flip(-1)
    rho = lam.clamp_min(0).sqrt()
    alpha = (u.transpose(1, 2) @ proj).abs().sum(-1)
    pos = torch.arange(lam.shape[-1], device=lam.device)[None, :]
    alpha = alpha * (pos < k[:, None])
    return (alpha * rho).sum(-1) / alpha.sum(-1)


def _either(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
    out = x if x is not None else y
    assert out is not None
    return out


@resampled_form()
def pwcca_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PWCCA per resample; weights from the side of lower rank per resample (layer a on ties), as the grid.

    Both orientations share each pair's eigendecompositions: value(b_j, a_i) takes the variates
    of b when r_b <= r_a, i.e. the side value(a_i, b_j) does not take (except on ties).
    """
    wa, wb, tmat = ch.whitening_a, ch.whitening_b, _whitened_cross(ch)
    proj_a = [w[0].transpose(1, 2) @ x.cov for w, x in zip(wa, ch.layers_a)]
    proj_b = proj_a if ch.same else [w[0].transpose(1, 2) @ x.cov for w, x in zip(wb, ch.layers_b)]
    nan = float("nan")
    res, res_b = ch.nan_grid(), ch.nan_grid(backward=True)
    for i in range(len(wa)):
        for j in range(len(wb)):
            ra, rb = wa[i][1], wb[j][1]
            t = tmat[i][j]
            ok = (ra + rb <= ch.n - 1) & (ra > 0) & (rb > 0)
            side_a = ra <= rb  # forward: variates of a when r_a <= r_b (the engine's rule)
            side_b_back = rb <= ra  # backward value(b_j, a_i): variates of b when r_b <= r_a
            need_a = bool(side_a.any()) or (backward and bool((~side_b_back).any()))
            need_b = bool((~side_a).any()) or (backward and bool(side_b_back.any()))
            val_a = _pwcca_side(t, proj_a[i], ra) if need_a else None
            val_b = _pwcca_side(t.transpose(1, 2), proj_b[j], rb) if need_b else None
            fwd_v = torch.where(side_a, _either(val_a, val_b), _either(val_b, val_a))
            res[:, i, j] = torch.where(ok, fwd_v, torch.full_like(fwd_v, nan))
            if backward:
                back_v = torch.where(side_b_back, _either(val_b, val_a), _either(val_a, val_b))
                res_b[:, j, i] = torch.where(ok, back_v, torch.full_like(back_v, nan))
    return res, (res_b if backward else None)
