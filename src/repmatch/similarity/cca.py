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
