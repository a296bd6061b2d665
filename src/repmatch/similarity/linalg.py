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


#: Byte budget for stacking flattened n x n Gram matrices into one matmul (above it: one dot per pair).
GRAM_STACK_BYTES = 256 * 2**20


def kernel_cross_grid(
    ops_a: Sequence[tuple[torch.Tensor, bool]], ops_b: Sequence[tuple[torch.Tensor, bool]], max_cols: int | None = None,
) -> torch.Tensor:
    """Grid G[i, j] = <K_i, L_j>_F of linear kernels K_i = A_i A_i^T, each layer given either by
    its (n x d) features ``(A, False)`` or by its n x n Gram matrix ``(K, True)``.

    Why: for a wide layer (d > n) the Gram matrix is the cheaper operand. Each pair type takes its
    cheapest exact form: feature x feature ||A^T B||_F^2 (chunked matmuls, :func:`cross_sq_grid`);
    Gram x Gram the flattened inner product (one matmul of the stacked Grams); Gram x feature
    ||A^T B||_F^2 = sum((K B) * B) (2 n^2 d_b flops instead of 2 n d_a d_b).
    """
    ref = ops_a[0][0]
    grid = torch.zeros(len(ops_a), len(ops_b), dtype=ref.dtype, device=ref.device)
    fa = [i for i, (_, g) in enumerate(ops_a) if not g]
    ga = [i for i, (_, g) in enumerate(ops_a) if g]
    same = ops_a is ops_b
    fb = fa if same else [j for j, (_, g) in enumerate(ops_b) if not g]
    gb = ga if same else [j for j, (_, g) in enumerate(ops_b) if g]
    if fa and fb:
        grid[torch.tensor(fa)[:, None], torch.tensor(fb)[None, :]] = cross_sq_grid(
            [ops_a[i][0] for i in fa], [ops_b[j][0] for j in fb], max_cols)
    if ga and gb:
        grid[torch.tensor(ga)[:, None], torch.tensor(gb)[None, :]] = _gram_gram(
            [ops_a[i][0] for i in ga], [ops_b[j][0] for j in gb])
    if ga and fb:
        grid[torch.tensor(ga)[:, None], torch.tensor(fb)[None, :]] = _gram_feat([ops_a[i][0] for i in ga], [ops_b[j][0] for j in fb], max_cols)
    if fa and gb:
        grid[torch.tensor(fa)[:, None], torch.tensor(gb)[None, :]] = _gram_feat([ops_b[j][0] for j in gb], [ops_a[i][0] for i in fa], max_cols).T
    return grid


def _gram_gram(grams_a: Sequence[torch.Tensor], grams_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """<K_i, L_j>_F for n x n Gram matrices: one matmul of the stacked, flattened Grams when they
    fit :data:`GRAM_STACK_BYTES`, else one dot product per pair (no copies)."""
    ref = grams_a[0]
    if (len(grams_a) + len(grams_b)) * ref.numel() * ref.element_size() <= GRAM_STACK_BYTES:
        sa = torch.stack([g.reshape(-1) for g in grams_a])
        sb = sa if grams_a is grams_b else torch.stack([g.reshape(-1) for g in grams_b])
        return sa @ sb.T
    out = torch.empty(len(grams_a), len(grams_b), dtype=ref.dtype, device=ref.device)
    for i, ka in enumerate(grams_a):
        for j, lb in enumerate(grams_b):
            out[i, j] = torch.dot(ka.reshape(-1), lb.reshape(-1))
    return out


def _gram_feat(grams: Sequence[torch.Tensor], mats: Sequence[torch.Tensor], max_cols: int | None) -> torch.Tensor:
    """||A_j^T B||_F^2 = sum((K_i B_j) * B_j) for Gram matrices K_i = A_i A_i^T and feature blocks B_j,
    feature layers concatenated into chunks so each Gram meets them in one matmul."""
    ref = grams[0]
    out = torch.empty(len(grams), len(mats), dtype=ref.dtype, device=ref.device)
    for cb in chunks(mats, max_cols):
        seg = _segment_matrix(cb, ref.dtype, ref.device)
        for i, k in enumerate(grams):
            colsum = ((k @ cb.mat) * cb.mat).sum(dim=0)
            out[i, cb.members[0] : cb.members[-1] + 1] = seg @ colsum
    return out
