"""A layer's low-rank basis and the DM map from its rank-r representation, from one pass of moments.

Both sensitivity tests fit DM from a rank-r layer: within one network onto the same layer at full
rank (:mod:`.within_network`), across networks onto B's layer (:mod:`.cross_network`). Both take
the float64 moments of :class:`repmatch.stitching.direct.NormalEquations` from one pass over the
training split (inputs: A's rows; target ``"y"``: the rows DM maps onto). Those moments give A's
principal directions and every rank's DM map, so neither the basis nor each rank needs a pass of
its own.

Why DM is fitted in principal coordinates: the rank-r rows span only r of C dimensions, so their
covariance is singular and float32 round-off in the C - r empty directions is at the
pseudo-inverse's cut-off. The map is therefore fitted from the r principal coefficients
z = V_r^T (x - mu) (full rank, well conditioned) and then written as a stitch on x_r:
W = W_z V_r^T, b = b_z - W_z V_r^T mu (exact, since V_r^T (x_r - mu) = z). The ridge
(``stitching.dm.ridge``) is relative to the mean variance of the r coefficients.
"""

from __future__ import annotations

from typing import Any

import torch

from .lowrank import LowRankBasis, basis_from_moments


def basis_from_equations(ne: Any) -> LowRankBasis:
    """A's low-rank basis from the input moments of a ``NormalEquations`` (population covariance)."""
    return basis_from_moments(*ne.moments(), n_rows=ne.n)


def dm_from_equations(ne: Any, basis: LowRankBasis, rank: int, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The DM map from the rank-``rank`` representation, (W (C_B, C_A), b (C_B,)) float64, from the moments.

    Least squares of the target rows (``"y"``) on the top-r principal coefficients z (covariance
    V_r^T C_xx V_r, cross-covariance V_r^T C_xy, solved by :func:`repmatch.stitching.direct.solve_psd`:
    the same pseudo-inverse and ridge rule as every DM), rewritten on the rank-r representation
    (module docstring). z has mean 0 (the basis mean is the input mean), so b_z = mean of the targets.
    """
    from ..stitching.direct import solve_psd

    mean_x, cov_x = ne.moments()
    mx = ne.sx / ne.n
    my = ne.sy["y"] / ne.n
    cross = ne.sxy["y"] / ne.n - torch.outer(mx, my)
    v = basis.directions[:, :rank].to(cov_x)
    cov_z = v.T @ cov_x @ v
    w_z = solve_psd(0.5 * (cov_z + cov_z.T), v.T @ cross, ridge).T
    w = w_z @ v.T
    mean_y = my + ne.shift_y["y"]
    return w, mean_y - w @ basis.mean.to(w)
