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
