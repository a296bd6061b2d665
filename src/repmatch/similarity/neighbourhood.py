"""Neighbourhood measures: do the two layers give each probe sample the same nearest neighbours?

Measures (k nearest neighbours of each sample, the sample itself excluded; ``knn_k``, and
``knn_distance`` cosine | euclidean):

* ``mutual_knn`` (Huh et al. 2024, "The Platonic Representation Hypothesis"): mean over samples of
  |N_a(p) & N_b(p)| / k;
* ``jaccard_knn`` (ReSi, Klabunde et al. 2024): mean of |N_a(p) & N_b(p)| / |N_a(p) | N_b(p)|;
* ``rank_similarity`` (ReSi; Wang et al. 2020): for the shared neighbours j, with r_a, r_b their
  ranks (1..k) in each list, mean over samples of
  sum_j 2 / ((1 + |r_a - r_b|)(r_a + r_b)) / sum_{i=1..K} 1/i   (K = number of shared neighbours; 0 if none);
* ``second_order_cosine`` (ReSi; Hamilton et al. 2016): for each sample, the cosine similarity of
  its distances to the union N_a(p) | N_b(p) in layer a and in layer b; mean over samples.

Distances: ``cosine`` = 1 - cos(x_p, x_q) on the rows as stored (not centred: the published
definitions, so these measures are not translation invariant), ``euclidean`` = ||x_p - x_q|| of
the centred rows (then they are translation invariant). Both are invariant to orthogonal maps
and isotropic scaling.

Ties (equal computed distances) are broken deterministically: neighbours are ordered by
(distance, sample index), so among equidistant candidates the lower probe index wins, and the rank
order inside a list follows the same rule. ``torch.topk`` alone leaves that choice unspecified;
rows with a tie at the k-th distance are re-selected with a stable sort, and the k found are
re-ordered by (distance, index). Distances that are equal in exact arithmetic but round
differently (Euclidean distances from inner products, cosines of normalised rows) are ordered by
their computed values; with exactly representable data (e.g. integer activations, dyadic means)
the computed ties are the true ones. A bootstrap resample's duplicated rows are at distance 0 from
each other, so each copy counts the other as its nearest neighbour in both layers.

How: rows are processed in blocks; for a block, every layer's distances to all n samples are one
matmul, its neighbour lists one ``topk``; every layer pair's overlap, ranks and second-order
sums are gathers of b's rank / distance rows at a's neighbour indices (and vice versa), batched
over all layer pairs: O(L_a L_b n k) per grid on top of the distance matrices, no loop over samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .stats import LayerStats

DISTANCES = ("cosine", "euclidean")
#: Floats held per block (layers x rows x n distances): bounds the memory of one block to ~256 MiB.
BLOCK_FLOATS = 32 * 2**20
#: Up to this many probe samples a layer's distance matrix is cached on its LayerStats (32 MiB in float64).
MEMO_ROWS = 2048


def view_rows(s: LayerStats) -> torch.Tensor:
    """The layer's rows as the view stores them (centring undone; ``paper`` mode's unit-norm rows stay centred)."""
    return s.xc if s.normalised else s.xc + s.mean


def unit_rows(s: LayerStats, ctx: GridContext, name: str) -> torch.Tensor | None:
    """Rows scaled to unit norm (for cosine distances); None, with a degenerate report, when a row is zero."""
    x = view_rows(s)
    norms = torch.linalg.vector_norm(x, dim=1)
    zero = int((norms == 0).sum())
    if zero:
        ctx.degenerate(f"{name}: layer {s.name!r} has {zero} all-zero rows: their cosine distances are undefined "
                       "(use knn_distance / rsa_rdm euclidean)")
        return None
    return x / norms[:, None]


def squared_norms(s: LayerStats) -> torch.Tensor:
    """||x_p - mean||^2 per row (the diagonal of the centred Gram matrix)."""
    return s.xc.square().sum(dim=1)


def distance_rows(s: LayerStats, rows: slice, distance: str, unit: torch.Tensor | None) -> torch.Tensor:
    """Distances from the samples in ``rows`` to all n samples (block x n), in the stats' precision.

    Euclidean distances come from centred inner products, d^2 = |x_p|^2 + |x_q|^2 - 2 x_p.x_q; a
    value that rounding pushes below 0 (identical rows) is a zero distance, so it is set to 0.
    """
    if distance == "cosine":
        assert unit is not None
        return 1.0 - unit[rows] @ unit.T
    g = s.gram[rows] if s.wide else s.xc[rows] @ s.xc.T
    sq = squared_norms(s)
    d2 = sq[rows, None] + sq[None, :] - 2.0 * g
    return d2.clamp_min_(0.0).sqrt_()


def knn_lists(d: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (rows x k) of the k smallest entries of each row of ``d``, ordered by (value, index).

    The sample itself must already be excluded (its own entry +inf). Deterministic under ties:
    see the module docstring.
    """
    vals, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
    boundary_tie = (d <= vals[:, -1:]).sum(dim=1) > k
    if bool(boundary_tie.any()):
        rows = boundary_tie.nonzero().squeeze(1)
        idx[rows] = torch.sort(d[rows], dim=1, stable=True).indices[:, :k]
        vals[rows] = d[rows].gather(1, idx[rows])
    by_index = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_index), vals.gather(1, by_index)
    return idx.gather(1, torch.sort(vals, dim=1, stable=True).indices)


def _check_k(k: int, n: int, name: str) -> None:
    if not 1 <= k <= n - 2:
        raise SimilarityInputError(f"{name}: similarity.knn_k = {k} must lie in [1, n - 2] = [1, {n - 2}] for {n} probe samples")


def _params(ctx: GridContext, n: int, name: str) -> tuple[int, str]:
    k, distance = int(ctx.param("knn_k")), str(ctx.param("knn_distance"))
    _check_k(k, n, name)
    if distance not in DISTANCES:
        raise SimilarityInputError(f"similarity.knn_distance must be one of {list(DISTANCES)}, got {distance!r}")
    return k, distance


def _blocks(n: int, layers: int) -> list[slice]:
    size = max(1, min(n, BLOCK_FLOATS // max(1, layers * n)))
    return [slice(lo, min(n, lo + size)) for lo in range(0, n, size)]


def _layer_block(s: LayerStats, rows: slice, distance: str, unit: torch.Tensor | None, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances block x n with the sample itself at +inf, neighbour lists block x k) of one layer.

    Kept on the layer (``LayerStats.memo``) when the probe set is small (n <= :data:`MEMO_ROWS`), so
    the four measures of a grid and every partner layer share one distance matrix per layer.
    """
    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        d = distance_rows(s, rows, distance, unit)
        local = torch.arange(rows.stop - rows.start, device=d.device)
        d[local, local + rows.start] = float("inf")
        return d, knn_lists(d, k)

    if s.n > MEMO_ROWS:
        return compute()
    return s.memo(("knn", distance, k, rows.start, rows.stop), compute)


def _ranks(idx: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """(block x n) rank of each sample in the neighbour list (1..k), 0 when it is not a neighbour."""
    r = torch.zeros(idx.shape[0], n, dtype=torch.long, device=idx.device)
    return r.scatter_(1, idx, torch.arange(1, k + 1, device=idx.device).expand_as(idx))


def _at(rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """G[i, j, p, u] = rows[j, p, idx[i, p, u]]: layer j's row entries at layer i's neighbours."""
    li, lj = idx.shape[0], rows.shape[0]
    return torch.gather(rows[None].expand(li, *rows.shape), 3, idx[:, None].expand(li, lj, *idx.shape[1:]))


def neighbourhood_grids(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext, name: str) -> dict[str, np.ndarray]:
    """Every neighbourhood measure for every layer pair (the per-sample scores averaged over samples).

    Returns ``{"mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine"}`` grids; a
    layer whose cosine distances are undefined (all-zero rows) gives NaN rows / columns.
    """
    n = sa[0].n
    k, distance = _params(ctx, n, name)
    same = sa is sb
    ua = [unit_rows(s, ctx, name) if distance == "cosine" else None for s in sa]
    ub = ua if same else [unit_rows(s, ctx, name) if distance == "cosine" else None for s in sb]
    ok_a = [i for i, s in enumerate(sa) if distance != "cosine" or ua[i] is not None]
    ok_b = [j for j, s in enumerate(sb) if distance != "cosine" or ub[j] is not None]
    out = {m: np.full((len(sa), len(sb)), np.nan) for m in ("mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine")}
    if not ok_a or not ok_b:
        return out
    ref = sa[0].xc
    sums = {m: torch.zeros(len(ok_a), len(ok_b), dtype=ref.dtype, device=ref.device) for m in out}
    second_undefined = torch.zeros(len(ok_a), len(ok_b), dtype=torch.long, device=ref.device)
    harmonic = torch.cat([torch.zeros(1, dtype=ref.dtype, device=ref.device),
                          torch.cumsum(1.0 / torch.arange(1, k + 1, dtype=ref.dtype, device=ref.device), 0)])
    rank_a = torch.arange(1, k + 1, dtype=ref.dtype, device=ref.device)
    for rows in _blocks(n, len(ok_a) + len(ok_b)):
        da, ia = zip(*[_layer_block(sa[i], rows, distance, ua[i], k) for i in ok_a])
        db, ib = (da, ia) if same else zip(*[_layer_block(sb[j], rows, distance, ub[j], k) for j in ok_b])
        dist_a, idx_a = torch.stack(da), torch.stack(ia)  # (La, m, n), (La, m, k)
        dist_b, idx_b = torch.stack(db), torch.stack(ib)
        ranks_b = torch.stack([_ranks(i, n, k) for i in ib])  # (Lb, m, n)
        rb = _at(ranks_b, idx_a).to(ref.dtype)  # (La, Lb, m, k): b's rank of a's u-th neighbour, 0 if absent
        shared = rb > 0
        both = shared.sum(dim=3)  # (La, Lb, m)
        sums["mutual_knn"] += both.sum(dim=2).to(ref.dtype) / k
        sums["jaccard_knn"] += (both.to(ref.dtype) / (2 * k - both).to(ref.dtype)).sum(dim=2)
        terms = torch.where(shared, 2.0 / ((1.0 + (rank_a - rb).abs()) * (rank_a + rb)), 0.0).sum(dim=3)
        sums["rank_similarity"] += torch.where(both > 0, terms / harmonic[both], 0.0).sum(dim=2)
        # Second order: sums over the union N_a | N_b = sums over N_a + over N_b - over N_a & N_b.
        own_a = dist_a.gather(2, idx_a)[:, None]  # (La, 1, m, k) a's distances to its own neighbours
        b_at_a = _at(dist_b, idx_a)  # (La, Lb, m, k)
        a_at_b = _at(dist_a, idx_b).transpose(0, 1)  # (Lb, La, m, k) -> (La, Lb, m, k)
        own_b = dist_b.gather(2, idx_b)[None]  # (1, Lb, m, k)
        dot = (own_a * b_at_a).sum(3) + (a_at_b * own_b).sum(3) - (shared * own_a * b_at_a).sum(3)
        sq_a = own_a.square().sum(3) + a_at_b.square().sum(3) - (shared * own_a.square()).sum(3)
        sq_b = b_at_a.square().sum(3) + own_b.square().sum(3) - (shared * b_at_a.square()).sum(3)
        denom = (sq_a * sq_b).sqrt()
        second_undefined += (denom == 0).sum(dim=2)
        sums["second_order_cosine"] += torch.where(denom > 0, dot / denom, 0.0).sum(dim=2)
    cells = np.ix_(ok_a, ok_b)
    for m, total in sums.items():
        out[m][cells] = (total / n).cpu().numpy()
    bad = second_undefined.cpu().numpy()
    if bad.any():
        sub = out["second_order_cosine"][cells]
        sub[bad > 0] = np.nan
        out["second_order_cosine"][cells] = sub
        ctx.degenerate(f"{name}: second_order_cosine: some samples have zero distance to every neighbour (duplicated rows)")
    return out


def _one(measure: str):  # noqa: ANN202  (a grid function per measure; they share the work above)
    def grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
        return neighbourhood_grids(sa, sb, ctx, measure)[measure]

    grid.__name__ = f"{measure}_grid"
    grid.__doc__ = f"The ``{measure}`` grid (:func:`neighbourhood_grids`)."
    return grid


mutual_knn_grid = _one("mutual_knn")
jaccard_knn_grid = _one("jaccard_knn")
rank_similarity_grid = _one("rank_similarity")
second_order_cosine_grid = _one("second_order_cosine")
