"""Batched cross products between the layers of two models.

Why: a grid of L_a x L_b layer pairs needs A_i^T B_j for every pair. Concatenating all layers of
a model column-wise turns the L_a * L_b small products into one large matmul (or a few, when the
concatenation would not fit: layers are packed into chunks of at most ``max_cols`` columns), which
is what BLAS and GPUs are fast at. The per-pair results are then read off as blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: Upper bound on the columns of one concatenated chunk (a chunk product is at most
#: MAX_COLS^2 float64 numbers = 128 MiB).
MAX_COLS = 4096


@dataclass(frozen=True)
class Chunk:
    """Consecutive layers ``members`` concatenated column-wise into ``mat``; ``offsets[k]`` is where member k starts."""

    members: list[int]
    mat: torch.Tensor
    offsets: list[int]

    def span(self, k: int) -> slice:
        return slice(self.offsets[k], self.offsets[k + 1])


def chunks(mats: Sequence[torch.Tensor], max_cols: int | None = None) -> list[Chunk]:
    """Pack layer matrices (same rows) into column-concatenated chunks of at most ``max_cols``
    (default :data:`MAX_COLS`) columns. A single layer wider than that gets a chunk of its own.
    """
    max_cols = max_cols or MAX_COLS
    out: list[Chunk] = []
    group: list[int] = []
    width = 0
    for i, m in enumerate(mats):
        if group and width + m.shape[1] > max_cols:
            out.append(_make_chunk(mats, group))
            group, width = [], 0
        group.append(i)
        width += m.shape[1]
    if group:
        out.append(_make_chunk(mats, group))
    return out


def _make_chunk(mats: Sequence[torch.Tensor], members: list[int]) -> Chunk:
    offsets = [0]
    for i in members:
        offsets.append(offsets[-1] + mats[i].shape[1])
    mat = mats[members[0]] if len(members) == 1 else torch.cat([mats[i] for i in members], dim=1)
    return Chunk(members, mat, offsets)


def _segment_matrix(chunk: Chunk, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Indicator matrix (members x columns): row k is 1 on member k's columns."""
    ind = torch.zeros(len(chunk.members), chunk.offsets[-1], dtype=dtype, device=device)
    for k in range(len(chunk.members)):
        ind[k, chunk.span(k)] = 1
    return ind


def cross_sq_grid(mats_a: Sequence[torch.Tensor], mats_b: Sequence[torch.Tensor], max_cols: int | None = None) -> torch.Tensor:
    """Grid G[i, j] = ||A_i^T B_j||_F^2 for all layer pairs, from a few large matmuls.

    Each chunk product C = A^T B is squared elementwise and summed block-wise by two small
    indicator matmuls (S_a C^2 S_b^T), so no Python loop runs over layer pairs.
    """
    ref = mats_a[0]
    grid = torch.zeros(len(mats_a), len(mats_b), dtype=ref.dtype, device=ref.device)
    chunks_b = chunks(mats_b, max_cols)
    seg_b = [_segment_matrix(cb, ref.dtype, ref.device) for cb in chunks_b]
    for ca in chunks(mats_a, max_cols):
        seg_a = _segment_matrix(ca, ref.dtype, ref.device)
        for cb, sb in zip(chunks_b, seg_b):
            prod = ca.mat.T @ cb.mat
            grid[ca.members[0] : ca.members[-1] + 1, cb.members[0] : cb.members[-1] + 1] = seg_a @ prod.square_() @ sb.T
    return grid


BlockFn = Callable[[torch.Tensor, list[tuple[int, int]]], torch.Tensor]


def blockwise_grid(
    mats_a: Sequence[torch.Tensor], mats_b: Sequence[torch.Tensor], fn: BlockFn, max_cols: int | None = None,
    pairs: set[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Grid G[i, j] = fn(A_i^T B_j) where ``fn`` reduces a *batch* of equally shaped blocks.

    The cross products come from chunked large matmuls; the blocks of one chunk product are then
    grouped by shape and handed to ``fn`` as one (batch, p, q) tensor together with their (i, j)
    indices, so e.g. singular values are computed by one batched SVD call per shape. ``pairs``
    restricts the work to those (i, j); other cells are NaN.
    """
    ref = mats_a[0]
    grid = torch.full((len(mats_a), len(mats_b)), float("nan"), dtype=ref.dtype, device=ref.device)
    chunks_b = chunks(mats_b, max_cols)
    for ca in chunks(mats_a, max_cols):
        for cb in chunks_b:
            prod = ca.mat.T @ cb.mat
            by_shape: dict[tuple[int, int], list[tuple[int, int, torch.Tensor]]] = {}
            for ka, i in enumerate(ca.members):
                for kb, j in enumerate(cb.members):
                    if pairs is not None and (i, j) not in pairs:
                        continue
                    block = prod[ca.span(ka), cb.span(kb)]
                    by_shape.setdefault(tuple(block.shape), []).append((i, j, block))
            for items in by_shape.values():
                idx = [(i, j) for i, j, _ in items]
                values = fn(torch.stack([b for _, _, b in items]), idx)
                rows = torch.tensor([i for i, _ in idx], device=ref.device)
                cols = torch.tensor([j for _, j in idx], device=ref.device)
                grid[rows, cols] = values.to(grid.dtype)
    return grid
