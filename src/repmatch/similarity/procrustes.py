"""Orthogonal Procrustes similarity and distance (Ding, Denain & Steinhardt 2021; Schoenemann 1966).

With both layers centred and scaled to unit Frobenius norm,
  min_{R orthogonal} ||X R - Y||_F^2 = 2 - 2 ||X^T Y||_*,
so the similarity ||X^T Y||_* lies in [0, 1] (1 iff Y is a rotation of X) and the distance is
2 - 2 * similarity. X = U S V^T gives ||X^T Y||_* = ||(U S)^T (U_b S_b)||_*, so the grid needs
only the per-layer factors U S (at most n columns) and batched SVDs of their cross blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .linalg import blockwise_grid
from .resampled import ResampleChunk, resampled_form, smaller_gram, sum_top_sqrt
from .stats import LayerStats


def _unit_factor(s: LayerStats) -> torch.Tensor:
    u, sv = s.svd
    return (u * sv[None, :]) / s.frob


def procrustes_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Procrustes similarity ||X^T Y||_* of the centred, unit-norm layers."""
    fa = [_unit_factor(s) for s in sa]
    fb = fa if sa is sb else [_unit_factor(s) for s in sb]

    def nuclear(blocks: torch.Tensor, idx: list[tuple[int, int]]) -> torch.Tensor:
        return torch.linalg.svdvals(blocks).sum(dim=1)

    return blockwise_grid(fa, fb, nuclear).cpu().numpy()


def procrustes_distance_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """Squared orthogonal Procrustes distance of the centred, unit-norm layers: 2 - 2 ||X^T Y||_*."""
    return 2.0 - 2.0 * procrustes_grid(sa, sb, ctx)


# --- resampled forms (the bootstrap: c resamples at once, from :class:`~.resampled.ResampleChunk`) ---------------


def _procrustes_resampled(ch: ResampleChunk) -> torch.Tensor:
    """||C_ij||_* / sqrt(tr C_ii tr C_jj) per resample (the unit-norm scaling folded into the traces)."""
    def compute() -> torch.Tensor:
        blocks = ch.blocks_ab
        nuc = torch.empty(ch.c, len(blocks), len(blocks[0]), dtype=ch.cross.dtype, device=ch.cross.device)
        for i, row in enumerate(blocks):
            for j, blk in enumerate(row):
                g = smaller_gram(blk)
                nuc[:, i, j] = sum_top_sqrt(g, torch.full((ch.c,), g.shape[1], device=g.device))
        return nuc / (ch.trace_a[:, :, None] * ch.trace_b[:, None, :]).sqrt()

    return ch.memo("procrustes", compute)


@resampled_form()
def procrustes_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """Procrustes similarity per resample."""
    return _procrustes_resampled(ch), None


@resampled_form()
def procrustes_distance_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """2 - 2 x the Procrustes similarity per resample (one decomposition for both measures)."""
    return 2.0 - 2.0 * _procrustes_resampled(ch), None
