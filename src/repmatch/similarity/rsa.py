"""Representational similarity analysis (Kriegeskorte et al. 2008): compare the two layers'
representational dissimilarity matrices (RDMs) over the probe samples.

RDM distance (``rsa_rdm``): ``correlation`` (1 - Pearson correlation of two samples' activation
vectors, each row centred across its features: the classic RSA choice and ReSi's default),
``euclidean`` (||x_p - x_q||, not squared) or ``cosine`` (1 - cos(x_p, x_q), rows as stored).
Comparison of the two RDMs' upper triangles (``rsa_compare``): ``spearman`` (Pearson correlation
of the ranks, ties given their average rank), ``pearson``, or ``kendall_tau_a`` (Kendall's tau-a,
(concordant - discordant) / (m (m - 1) / 2) over the m = n (n - 1) / 2 entries: tied pairs count
as neither, as rsatoolbox recommends for RDMs with ties).

Invariances follow from the RDM: correlation distance is invariant to isotropic scaling only
(and to adding the same constant to every feature, which the row centring removes); Euclidean
to orthogonal maps, isotropic scaling and translation; cosine to orthogonal maps and scaling.

How: each layer's RDM is built once (one n x n product), its upper triangle ranked / standardised
once; Spearman and Pearson grids are then one matmul of the stacked, standardised RDM vectors.
Kendall's tau-a needs an O(m log m) count per layer pair (scipy's merge-sort count of tau-b,
converted to tau-a with the tie counts), so it is the slow option.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.stats
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .neighbourhood import distance_rows, unit_rows, view_rows
from .stats import LayerStats

RDM_DISTANCES = ("correlation", "euclidean", "cosine")
COMPARISONS = ("spearman", "pearson", "kendall_tau_a")


def rdm_vector(s: LayerStats, distance: str, ctx: GridContext, name: str) -> torch.Tensor | None:
    """Upper triangle (p < q, row-major) of the layer's RDM; None (reported) when undefined."""
    n = s.n
    if distance == "correlation":
        x = view_rows(s)
        r = x - x.mean(dim=1, keepdim=True)
        norms = torch.linalg.vector_norm(r, dim=1)
        flat = int((norms == 0).sum())
        if flat:
            ctx.degenerate(f"{name}: layer {s.name!r} has {flat} rows with equal features: their correlation distance is undefined")
            return None
        r = r / norms[:, None]
        d = 1.0 - r @ r.T
    elif distance == "cosine":
        unit = unit_rows(s, ctx, name)
        if unit is None:
            return None
        d = distance_rows(s, slice(0, n), "cosine", unit)
    else:
        d = distance_rows(s, slice(0, n), "euclidean", None)
    iu = torch.triu_indices(n, n, offset=1, device=d.device)
    return d[iu[0], iu[1]]


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..m of ``v``, tied values sharing their average rank (scipy.stats.rankdata 'average')."""
    order = torch.argsort(v, stable=True)
    sv = v[order]
    m = v.numel()
    new = torch.ones(m, dtype=torch.bool, device=v.device)
    new[1:] = sv[1:] != sv[:-1]
    group = torch.cumsum(new.long(), 0) - 1
    pos = torch.arange(1, m + 1, dtype=v.dtype, device=v.device)
    first = torch.zeros(int(group[-1]) + 1, dtype=v.dtype, device=v.device).scatter_reduce_(0, group, pos, "amin", include_self=False)
    last = torch.zeros_like(first).scatter_reduce_(0, group, pos, "amax", include_self=False)
    ranks = torch.empty_like(v)
    ranks[order] = ((first + last) / 2)[group]
    return ranks


def _standardised(v: torch.Tensor) -> torch.Tensor | None:
    c = v - v.mean()
    norm = torch.linalg.vector_norm(c)
    return None if float(norm) == 0.0 else c / norm


def _tau_a(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-a from scipy's tau-b: (C - D) = tau_b sqrt((m0 - t_x)(m0 - t_y)), tau_a = (C - D) / m0."""
    m = x.size
    m0 = m * (m - 1) / 2

    def tied_pairs(z: np.ndarray) -> float:
        counts = np.unique(z, return_counts=True)[1].astype(np.float64)
        return float((counts * (counts - 1) / 2).sum())

    tb = scipy.stats.kendalltau(x, y, variant="b").statistic
    return float(tb * np.sqrt((m0 - tied_pairs(x)) * (m0 - tied_pairs(y))) / m0)


def rsa_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """RSA for every layer pair: the ``rsa_compare`` correlation of the two ``rsa_rdm`` RDMs."""
    distance, compare = str(ctx.param("rsa_rdm")), str(ctx.param("rsa_compare"))
    if distance not in RDM_DISTANCES:
        raise SimilarityInputError(f"similarity.rsa_rdm must be one of {list(RDM_DISTANCES)}, got {distance!r}")
    if compare not in COMPARISONS:
        raise SimilarityInputError(f"similarity.rsa_compare must be one of {list(COMPARISONS)}, got {compare!r}")
    if sa[0].n < 3:
        raise SimilarityInputError(f"rsa: an RDM needs at least 3 samples to be compared, got {sa[0].n}")
    same = sa is sb

    def prepared(s: LayerStats) -> torch.Tensor | None:
        def compute() -> torch.Tensor | None:
            v = rdm_vector(s, distance, ctx, "rsa")
            if v is None or compare == "kendall_tau_a":
                return v
            z = _standardised(average_ranks(v) if compare == "spearman" else v)
            if z is None:
                ctx.degenerate(f"rsa: layer {s.name!r}: every entry of its RDM is equal, so no correlation is defined")
            return z

        return s.memo(("rsa", distance, compare), compute)

    va = [prepared(s) for s in sa]
    vb = va if same else [prepared(s) for s in sb]
    out = np.full((len(sa), len(sb)), np.nan)
    ia = [i for i, v in enumerate(va) if v is not None]
    ib = [j for j, v in enumerate(vb) if v is not None]
    if not ia or not ib:
        return out
    if compare == "kendall_tau_a":
        na = [va[i].cpu().numpy() for i in ia]  # type: ignore[union-attr]
        nb = na if same else [vb[j].cpu().numpy() for j in ib]  # type: ignore[union-attr]
        for p, i in enumerate(ia):
            for q, j in enumerate(ib):
                if same and q < p:
                    out[i, j] = out[j, i]
                    continue
                if np.ptp(na[p]) == 0 or np.ptp(nb[q]) == 0:
                    ctx.degenerate("rsa: a layer's RDM has all entries equal, so Kendall's tau is undefined")
                    continue
                out[i, j] = _tau_a(na[p], nb[q])
        return out
    stack_a = torch.stack([va[i] for i in ia])  # type: ignore[misc]
    stack_b = stack_a if same else torch.stack([vb[j] for j in ib])  # type: ignore[misc]
    out[np.ix_(ia, ib)] = (stack_a @ stack_b.T).cpu().numpy()
    return out
