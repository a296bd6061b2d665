"""Linear regression fit R^2 (Kornblith et al. 2019, Table 1): how much of layer b's variance a
least-squares linear map from layer a explains,
  R^2(a -> b) = 1 - min_W ||Y - X W||_F^2 / ||Y||_F^2 = ||Q_a^T Y||_F^2 / ||Y||_F^2
for centred X (layer a), Y (layer b), Q_a an orthonormal basis of X's columns. Asymmetric;
invariant to any invertible linear map of the predictor a. In-sample fit: with rank(X) >= n - 1
every Y is fitted exactly, so such cells are NaN with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .linalg import kernel_cross_grid
from .resampled import ResampleChunk, resampled_form
from .stats import LayerStats


def linear_regression_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """R^2 of predicting each layer of b from each layer of a (row i = predictor a_i)."""
    n = sa[0].n
    # ||Q_a^T Y||_F^2 = <Q_a Q_a^T, Y Y^T>: a wide target enters through its Gram matrix.
    cross = kernel_cross_grid([(s.basis, False) for s in sa], [s.kernel_operand() for s in sb])
    total = torch.tensor([s.frob**2 for s in sb], dtype=cross.dtype, device=cross.device)
    out = (cross / total[None, :]).cpu().numpy()
    for i, s in enumerate(sa):
        if s.rank >= n - 1:
            ctx.degenerate(
                f"linear_regression: predictor layer {s.name!r} has rank {s.rank} >= n - 1 = {n - 1}: "
                "it fits any target exactly; use more probe samples or fewer features"
            )
            out[i, :] = np.nan
    return out


# --- resampled form (the bootstrap: c resamples at once, from :class:`~.resampled.ResampleChunk`) ----------------


@resampled_form()
def linear_regression_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """R^2 = ||W_i^T C_ij||_F^2 / tr C_jj per resample (W_i: the whitening of predictor i); NaN where the
    predictor's rank is >= n - 1. ``backward``: predictor b_j, target a_i, from the same blocks."""
    nan = float("nan")
    res, res_b = ch.nan_grid(), ch.nan_grid(backward=True)
    for i, row in enumerate(ch.blocks_ab):
        for j, blk in enumerate(row):
            fw = (ch.whitening_a[i][0].transpose(1, 2) @ blk).square().sum((1, 2)) / ch.trace_b[:, j]
            res[:, i, j] = torch.where(ch.whitening_a[i][1] >= ch.n - 1, torch.full_like(fw, nan), fw)
            if backward:
                bw = (blk @ ch.whitening_b[j][0]).square().sum((1, 2)) / ch.trace_a[:, i]
                res_b[:, j, i] = torch.where(ch.whitening_b[j][1] >= ch.n - 1, torch.full_like(bw, nan), bw)
    return res, (res_b if backward else None)
