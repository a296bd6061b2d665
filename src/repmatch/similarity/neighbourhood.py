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
the computed ties are the true ones. In a bootstrap resample (``GridContext.sample_ids``), the
copies of a sample are not its neighbours (they would be at distance 0 in every layer): a copy is
treated like the sample itself. Its resampled form (:class:`KnnDistances`) gives the same values.

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
from .resampled import ResampleChunk, ResampledForm, ResampleSet, resampled_form
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


#: Candidates beyond k that :func:`knn_lists` takes from ``topk`` to settle ties at the k-th distance
#: (a bootstrap resample's repeated rows tie often); rows whose tie runs past them are fully sorted.
TIE_MARGIN = 8


def knn_lists(d: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (rows x k) of the k smallest entries of each row of ``d``, ordered by (value, index).

    The sample itself must already be excluded (its own entry +inf). Deterministic under ties:
    see the module docstring. The k + :data:`TIE_MARGIN` smallest candidates are ordered by
    (value, index); they hold every entry tied with the k-th unless the last candidate ties with
    it too, and only such rows are sorted whole.
    """
    kk = min(d.shape[1], k + TIE_MARGIN)
    vals, idx = torch.topk(d, kk, dim=1, largest=False, sorted=True)
    by_index = torch.argsort(idx, dim=1)
    idx, vals = idx.gather(1, by_index), vals.gather(1, by_index)
    order = torch.sort(vals, dim=1, stable=True).indices
    idx, vals = idx.gather(1, order), vals.gather(1, order)
    if kk < d.shape[1]:
        open_tie = vals[:, -1] <= vals[:, k - 1]
        if bool(open_tie.any()):
            rows = open_tie.nonzero().squeeze(1)
            idx[rows] = torch.sort(d[rows], dim=1, stable=True).indices[:, :kk]
    return idx[:, :k].contiguous()


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


def _layer_block(s: LayerStats, rows: slice, distance: str, unit: torch.Tensor | None, k: int,
                 ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(distances block x n with the sample itself at +inf, neighbour lists block x k) of one layer.

    Kept on the layer (``LayerStats.memo``) when the probe set is small (n <= :data:`MEMO_ROWS`), so
    the four measures of a grid and every partner layer share one distance matrix per layer.
    """
    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        d = exclude_copies(distance_rows(s, rows, distance, unit), rows, ids)
        return d, knn_lists(d, k)

    if s.n > MEMO_ROWS:
        return compute()
    return s.memo(("knn", distance, k, rows.start, rows.stop), compute)


def _at(rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """G[i, j, p, u] = rows[j, p, idx[i, p, u]]: layer j's row entries at layer i's neighbours."""
    li, lj = idx.shape[0], rows.shape[0]
    return torch.gather(rows[None].expand(li, *rows.shape), 3, idx[:, None].expand(li, lj, *idx.shape[1:]))


MEASURE_NAMES = ("mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine")


def exclude_copies(d: torch.Tensor, rows: slice, ids: torch.Tensor | None) -> torch.Tensor:
    """Set to +inf, in place, each row's distances to itself and (``ids`` given) to the copies of its sample."""
    if ids is None:
        local = torch.arange(rows.stop - rows.start, device=d.device)
        d[local, local + rows.start] = float("inf")
    else:
        d.masked_fill_(ids[rows, None] == ids[None, :], float("inf"))
    return d


def _sample_ids(ctx: GridContext, n: int, device: torch.device) -> torch.Tensor | None:
    """The context's sample ids as a tensor when they describe these n rows (one row per sample), else None."""
    ids = ctx.sample_ids
    if ids is None or len(ids) != n:
        return None
    return torch.as_tensor(np.asarray(ids), device=device)


class PairScores:
    """Running sums over samples of the four per-sample neighbourhood scores, for every layer pair.

    Fed with blocks of rows of every layer's distances (sample's own copies at +inf) and neighbour
    lists; shared by the grid (row blocks of one set of rows) and the resampled form (one block
    per resample), so both compute the same numbers.
    """

    def __init__(self, la: int, lb: int, n: int, k: int, dtype: torch.dtype, device: torch.device) -> None:
        self.n, self.k = n, k
        self.sums = {m: torch.zeros(la, lb, dtype=dtype, device=device) for m in MEASURE_NAMES}
        self.second_undefined = torch.zeros(la, lb, dtype=torch.long, device=device)
        self.too_few = False
        self.harmonic = torch.cat([torch.zeros(1, dtype=dtype, device=device),
                                   torch.cumsum(1.0 / torch.arange(1, k + 1, dtype=dtype, device=device), 0)])
        self.rank_a = torch.arange(1, k + 1, dtype=dtype, device=device)

    def add(self, dist_a: torch.Tensor, idx_a: torch.Tensor, dist_b: torch.Tensor, idx_b: torch.Tensor) -> None:
        """One block: distances (La, m, n) / (Lb, m, n), neighbour lists (La, m, k) / (Lb, m, k)."""
        n, k, dt = self.n, self.k, self.sums["mutual_knn"].dtype
        ranks_b = torch.zeros(idx_b.shape[0], idx_b.shape[1], n, dtype=torch.long, device=idx_b.device)
        ranks_b.scatter_(2, idx_b, torch.arange(1, k + 1, device=idx_b.device).expand_as(idx_b))  # (Lb, m, n)
        rb = _at(ranks_b, idx_a).to(dt)  # (La, Lb, m, k): b's rank of a's u-th neighbour, 0 if absent
        shared = rb > 0
        both = shared.sum(dim=3)  # (La, Lb, m)
        self.sums["mutual_knn"] += both.sum(dim=2).to(dt) / k
        self.sums["jaccard_knn"] += (both.to(dt) / (2 * k - both).to(dt)).sum(dim=2)
        terms = torch.where(shared, 2.0 / ((1.0 + (self.rank_a - rb).abs()) * (self.rank_a + rb)), 0.0).sum(dim=3)
        self.sums["rank_similarity"] += torch.where(both > 0, terms / self.harmonic[both], 0.0).sum(dim=2)
        # Second order: sums over the union N_a | N_b = sums over N_a + over N_b - over N_a & N_b.
        own_a = dist_a.gather(2, idx_a)[:, None]  # (La, 1, m, k) a's distances to its own neighbours
        own_b = dist_b.gather(2, idx_b)[None]  # (1, Lb, m, k)
        if bool(torch.isinf(own_a).any()) or bool(torch.isinf(own_b).any()):
            self.too_few = True  # fewer than k other samples: the k-th neighbour does not exist
            return
        b_at_a = _at(dist_b, idx_a)  # (La, Lb, m, k)
        a_at_b = _at(dist_a, idx_b).transpose(0, 1)  # (Lb, La, m, k) -> (La, Lb, m, k)
        dot = (own_a * b_at_a).sum(3) + (a_at_b * own_b).sum(3) - (shared * own_a * b_at_a).sum(3)
        sq_a = own_a.square().sum(3) + a_at_b.square().sum(3) - (shared * own_a.square()).sum(3)
        sq_b = b_at_a.square().sum(3) + own_b.square().sum(3) - (shared * b_at_a.square()).sum(3)
        denom = (sq_a * sq_b).sqrt()
        self.second_undefined += (denom == 0).sum(dim=2)
        self.sums["second_order_cosine"] += torch.where(denom > 0, dot / denom, 0.0).sum(dim=2)

    def values(self, ctx: GridContext, name: str) -> dict[str, torch.Tensor]:
        """Mean over samples of each score (La, Lb); NaN, reported, where undefined."""
        nan = float("nan")
        if self.too_few:
            ctx.degenerate(f"{name}: a sample has fewer than knn_k = {self.k} other samples (copies of itself excluded)")
            return {m: torch.full_like(t, nan) for m, t in self.sums.items()}
        out = {m: t / self.n for m, t in self.sums.items()}
        bad = self.second_undefined > 0
        if bool(bad.any()):
            out["second_order_cosine"] = out["second_order_cosine"].masked_fill(bad, nan)
            ctx.degenerate(f"{name}: second_order_cosine: some samples have zero distance to every neighbour (duplicated rows)")
        return out


def neighbourhood_grids(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext, name: str) -> dict[str, np.ndarray]:
    """Every neighbourhood measure for every layer pair (the per-sample scores averaged over samples).

    Returns ``{"mutual_knn", "jaccard_knn", "rank_similarity", "second_order_cosine"}`` grids; a
    layer whose cosine distances are undefined (all-zero rows) gives NaN rows / columns. With
    ``ctx.sample_ids`` (a bootstrap resample's rows), copies of a sample are not its neighbours.
    """
    n = sa[0].n
    k, distance = _params(ctx, n, name)
    same = sa is sb
    ua = [unit_rows(s, ctx, name) if distance == "cosine" else None for s in sa]
    ub = ua if same else [unit_rows(s, ctx, name) if distance == "cosine" else None for s in sb]
    ok_a = [i for i, s in enumerate(sa) if distance != "cosine" or ua[i] is not None]
    ok_b = [j for j, s in enumerate(sb) if distance != "cosine" or ub[j] is not None]
    out = {m: np.full((len(sa), len(sb)), np.nan) for m in MEASURE_NAMES}
    if not ok_a or not ok_b:
        return out
    ref = sa[0].xc
    ids = _sample_ids(ctx, n, ref.device)
    scores = PairScores(len(ok_a), len(ok_b), n, k, ref.dtype, ref.device)
    for rows in _blocks(n, len(ok_a) + len(ok_b)):
        da, ia = zip(*[_layer_block(sa[i], rows, distance, ua[i], k, ids) for i in ok_a])
        db, ib = (da, ia) if same else zip(*[_layer_block(sb[j], rows, distance, ub[j], k, ids) for j in ok_b])
        scores.add(torch.stack(da), torch.stack(ia), torch.stack(db), torch.stack(ib))
    cells = np.ix_(ok_a, ok_b)
    for m, value in scores.values(ctx, name).items():
        out[m][cells] = value.cpu().numpy()
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


# --- resampled forms (the bootstrap: every resample from each layer's distances, computed once per run) ---------


class KnnDistances:
    """Each layer's n x n distances on the original probe rows (once per run, :class:`~.resampled.ResampleSet` memo).

    A resample's distances are these gathered at its rows (a distance depends on its two rows
    only), copies of a sample then set to +inf like the sample itself (:func:`exclude_copies`).
    Cosine: 1 - cos of the rows as stored (the centred rows plus the probe mean); Euclidean: of the
    centred rows. ``zero``: (L, n) rows whose cosine distance is undefined (all-zero rows).
    """

    def __init__(self, rs: ResampleSet, distance: str) -> None:
        self.a = self._prep(rs.xa, rs.mean_a, distance)
        self.b = self.a if rs.same else self._prep(rs.xb, rs.mean_b, distance)

    @staticmethod
    def _prep(xs: list[torch.Tensor], means: list[torch.Tensor], distance: str) -> tuple[torch.Tensor, torch.Tensor]:
        dists, zeros = [], []
        for x, mean in zip(xs, means):
            if distance == "cosine":
                raw = x + mean
                norms = torch.linalg.vector_norm(raw, dim=1)
                zero = norms == 0
                unit = raw / torch.where(zero, torch.ones_like(norms), norms)[:, None]
                dists.append(1.0 - unit @ unit.T)
            else:
                sq = x.square().sum(dim=1)
                zero = torch.zeros_like(sq, dtype=torch.bool)
                dists.append((sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0).sqrt_())
            zeros.append(zero)
        return torch.stack(dists), torch.stack(zeros)

    @staticmethod
    def lists(dist: torch.Tensor, rows: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(L, n, n) distances of one resample (copies excluded) and its (L, n, k) neighbour lists."""
        d = dist[:, rows[:, None], rows[None, :]]
        d.masked_fill_((rows[:, None] == rows[None, :])[None], float("inf"))
        return d, knn_lists(d.reshape(-1, d.shape[2]), k).reshape(d.shape[0], d.shape[1], k)

    def grids(self, ch: ResampleChunk, ctx: GridContext) -> dict[str, torch.Tensor]:
        """Every neighbourhood measure on each resample of the chunk: (c, L_a, L_b) per measure."""
        k = int(ctx.param("knn_k"))
        (da, za), (db, zb) = self.a, self.b
        out = {m: ch.nan_grid() for m in MEASURE_NAMES}
        for r in range(ch.c):
            rows = ch.rows[r]
            ok_a = (~za[:, rows].any(dim=1)).nonzero().squeeze(1)
            ok_b = ok_a if ch.same else (~zb[:, rows].any(dim=1)).nonzero().squeeze(1)
            if not len(ok_a) or not len(ok_b):
                continue
            dist_a, idx_a = self.lists(da[ok_a], rows, k)
            dist_b, idx_b = (dist_a, idx_a) if ch.same else self.lists(db[ok_b], rows, k)
            scores = PairScores(len(ok_a), len(ok_b), ch.n, k, dist_a.dtype, dist_a.device)
            scores.add(dist_a, idx_a, dist_b, idx_b)
            for m, value in scores.values(ctx, "knn bootstrap").items():
                out[m][r, ok_a[:, None], ok_b[None, :]] = value
        return out


def _knn_resampled(measure: str) -> ResampledForm:
    @resampled_form()
    def form(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
        k, distance = _params(ctx, ch.n, measure)
        dist = ch.set.memo(("knn_distances", distance), lambda: KnnDistances(ch.set, distance))
        return ch.memo(("knn", k, distance), lambda: dist.grids(ch, ctx))[measure], None

    return form


mutual_knn_resampled = _knn_resampled("mutual_knn")
jaccard_knn_resampled = _knn_resampled("jaccard_knn")
rank_similarity_resampled = _knn_resampled("rank_similarity")
second_order_cosine_resampled = _knn_resampled("second_order_cosine")
