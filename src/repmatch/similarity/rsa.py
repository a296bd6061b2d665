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
import torch

from .context import GridContext
from .errors import SimilarityInputError
from .neighbourhood import distance_rows, unit_rows, view_rows
from .resampled import ResampleChunk, ResampleSet, resampled_form
from .stats import LayerStats

RDM_DISTANCES = ("correlation", "euclidean", "cosine")
COMPARISONS = ("spearman", "pearson", "kendall_tau_a")


def correlation_rdm(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """1 - Pearson correlation of every two rows (n x n), and the number of rows with equal features (undefined)."""
    r = x - x.mean(dim=1, keepdim=True)
    norms = torch.linalg.vector_norm(r, dim=1)
    flat = norms == 0
    r = r / torch.where(flat, torch.ones_like(norms), norms)[:, None]
    return 1.0 - r @ r.T, int(flat.sum())


def rdm_vector(s: LayerStats, distance: str, ctx: GridContext, name: str) -> torch.Tensor | None:
    """Upper triangle (p < q, row-major) of the layer's RDM; None (reported) when undefined.

    With ``ctx.sample_ids`` (a bootstrap resample's rows), the entries between two copies of one
    sample are left out: they are 0 in every layer by construction, not a measured dissimilarity
    (as rsatoolbox's bootstrap over stimuli).
    """
    n = s.n
    if distance == "correlation":
        d, flat = correlation_rdm(view_rows(s))
        if flat:
            ctx.degenerate(f"{name}: layer {s.name!r} has {flat} rows with equal features: their correlation distance is undefined")
            return None
    elif distance == "cosine":
        unit = unit_rows(s, ctx, name)
        if unit is None:
            return None
        d = distance_rows(s, slice(0, n), "cosine", unit)
    else:
        d = distance_rows(s, slice(0, n), "euclidean", None)
    iu = torch.triu_indices(n, n, offset=1, device=d.device)
    ids = ctx.sample_ids
    if ids is not None and len(ids) == n:
        ids = torch.as_tensor(np.asarray(ids), device=d.device)
        iu = iu[:, ids[iu[0]] != ids[iu[1]]]
    return d[iu[0], iu[1]]


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..m along the last axis of ``v`` (any leading batch axes), tied values sharing their
    average rank (scipy.stats.rankdata 'average'); +inf entries rank last, after every finite one."""
    m = v.shape[-1]
    sv, order = torch.sort(v, dim=-1, stable=True)
    pos = torch.arange(1, m + 1, dtype=v.dtype, device=v.device).expand_as(sv)
    starts = torch.ones_like(sv, dtype=torch.bool)
    starts[..., 1:] = sv[..., 1:] != sv[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.cummax(torch.where(starts, pos, 0.0), dim=-1).values
    last = torch.cummin(torch.where(ends, pos, m + 1.0).flip(-1), dim=-1).values.flip(-1)
    return torch.empty_like(v).scatter_(-1, order, (first + last) / 2)


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

    import scipy.stats  # only for tau-a; importing it costs ~0.7 s per job

    tb = scipy.stats.kendalltau(x, y, variant="b").statistic
    return float(tb * np.sqrt((m0 - tied_pairs(x)) * (m0 - tied_pairs(y))) / m0)


def _settings(ctx: GridContext) -> tuple[str, str]:
    distance, compare = str(ctx.param("rsa_rdm")), str(ctx.param("rsa_compare"))
    if distance not in RDM_DISTANCES:
        raise SimilarityInputError(f"similarity.rsa_rdm must be one of {list(RDM_DISTANCES)}, got {distance!r}")
    if compare not in COMPARISONS:
        raise SimilarityInputError(f"similarity.rsa_compare must be one of {list(COMPARISONS)}, got {compare!r}")
    return distance, compare


def rsa_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """RSA for every layer pair: the ``rsa_compare`` correlation of the two ``rsa_rdm`` RDMs."""
    distance, compare = _settings(ctx)
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


# --- resampled form (the bootstrap: every resample from each layer's RDM, computed once per run) ---------------


def _first_groups(starts: torch.Tensor) -> torch.Tensor:
    """Per tie group (numbered across rows, in order), whether it is the first group of its row."""
    first = torch.zeros_like(starts)
    first[:, 0] = True
    return first.flatten()[starts.flatten()]


class ResampledRdms:
    """RSA per resample from each layer's RDM on the original probe rows (once per run, a
    :class:`~.resampled.ResampleSet` memo), without gathering or re-ranking resampled RDMs.

    A resample's RDM entries off its copies are the original entries (p < q) each held
    w_p w_q times (w the multiplicities); entries between two copies of one sample are left out,
    as in the grid with ``sample_ids``. So Pearson is the correlation of the original entries with
    weights w_p w_q, and Spearman that of their ranks in the resample, which follow from one sort
    per layer per run: an entry's average rank is (weight of the smaller entries) + (weight of
    its tie group + 1) / 2, a cumulative sum of the weights in sorted order. O(m) per resample
    and layer (m = n (n - 1) / 2) instead of a sort. ``undefined``: (L, n) rows whose presence
    makes the layer's RDM undefined (correlation / cosine distance of a flat or zero row).
    """

    def __init__(self, rs: ResampleSet, distance: str, compare: str) -> None:
        n = rs.n
        self.iu = torch.triu_indices(n, n, offset=1, device=rs.device)
        self.compare = compare
        self.a = self._prep(rs.xa, rs.mean_a, distance)
        self.b = self.a if rs.same else self._prep(rs.xb, rs.mean_b, distance)

    def _prep(self, xs: list[torch.Tensor], means: list[torch.Tensor], distance: str) -> dict[str, torch.Tensor]:
        vecs, bad = [], []
        for x, mean in zip(xs, means):
            raw = x + mean
            if distance == "correlation":
                d, _ = correlation_rdm(raw)
                r = raw - raw.mean(dim=1, keepdim=True)
                flat = torch.linalg.vector_norm(r, dim=1) == 0
            elif distance == "cosine":
                norms = torch.linalg.vector_norm(raw, dim=1)
                flat = norms == 0
                unit = raw / torch.where(flat, torch.ones_like(norms), norms)[:, None]
                d = 1.0 - unit @ unit.T
            else:
                sq = x.square().sum(dim=1)
                flat = torch.zeros_like(sq, dtype=torch.bool)
                d = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0).sqrt_()
            v = d[self.iu[0], self.iu[1]]
            vecs.append(v)
            bad.append(flat)
        raw = torch.stack(vecs)
        # centred once (the weighted moments then lose no digits); Kendall's tau reads the entries as they are
        out = {"values": raw - raw.mean(dim=1, keepdim=True), "raw": raw, "undefined": torch.stack(bad)}
        if self.compare == "spearman":
            out.update(self.tie_groups(out["values"]))
        return out

    @staticmethod
    def tie_groups(values: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per run, what :meth:`ranks` needs of the (L, m) entries: each row's sort ``order`` and its
        inverse, each sorted position's tie ``group`` (numbered across rows), each group's ``end``
        (flat sorted position of its last entry) and whether it is its row's ``first`` group."""
        sv, order = torch.sort(values, dim=1, stable=True)
        starts = torch.ones_like(sv, dtype=torch.bool)
        starts[:, 1:] = sv[:, 1:] != sv[:, :-1]
        group = torch.cumsum(starts.flatten(), 0).view_as(sv) - 1
        ends = torch.ones_like(starts)
        ends[:, :-1] = starts[:, 1:]
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(sv.shape[1], device=sv.device).expand_as(order))
        return {"order": order, "inverse": inverse, "group": group, "end": ends.flatten().nonzero().squeeze(1),
                "first": _first_groups(starts)}

    @staticmethod
    def ranks(side: dict[str, torch.Tensor], omega: torch.Tensor) -> torch.Tensor:
        """(L, m) average rank of each original entry among the resample's entries (weights ``omega``):
        (weight before its tie group) + (weight of the group + 1) / 2."""
        # torch.take / index_select: several times faster than advanced indexing on CPU
        cum = torch.cumsum(torch.take(omega, side["order"]), dim=1).flatten()  # weights in each row's sorted order, summed
        upto = cum.index_select(0, side["end"])  # per group: weight up to its end
        before = torch.cat([upto.new_zeros(1), upto[:-1]]).masked_fill_(side["first"], 0.0)
        rank_of_group = before + (upto - before + 1.0) / 2.0
        return torch.take(rank_of_group, side["group"]).gather(1, side["inverse"])

    @staticmethod
    def _standardised(v: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """(L, m) entries centred on their omega-weighted mean, scaled so that sum omega z^2 = 1 (NaN: constant)."""
        c = v - (v @ omega / omega.sum())[:, None]
        norm = (c.square() @ omega).sqrt()[:, None]
        return c / torch.where(norm == 0, float("nan"), norm)

    def grid(self, ch: ResampleChunk) -> torch.Tensor:
        """RSA on each resample of the chunk (c, L_a, L_b); NaN where a layer's resampled RDM is undefined."""
        a, b = self.a, self.b
        out = ch.nan_grid()
        for r in range(ch.c):
            w = ch.w[r]
            omega = w.index_select(0, self.iu[0]) * w.index_select(0, self.iu[1])
            present = w > 0
            ok_a = ~(a["undefined"] & present).any(dim=1)
            ok_b = ok_a if ch.same else ~(b["undefined"] & present).any(dim=1)
            if self.compare == "kendall_tau_a":
                rows = ch.rows[r]
                p, q = rows[self.iu[0]], rows[self.iu[1]]
                keep = p != q
                entries = self._pair_index(p[keep], q[keep], ch.n)
                ga = a["raw"][:, entries]
                gb = ga if ch.same else b["raw"][:, entries]
                out[r] = self._kendall(ga, gb, ok_a, ok_b, ch.same)
                continue
            if self.compare == "spearman":
                za = self._standardised(self.ranks(a, omega), omega)
                zb = za if ch.same else self._standardised(self.ranks(b, omega), omega)
            else:
                za = self._standardised(a["values"], omega)
                zb = za if ch.same else self._standardised(b["values"], omega)
            grid = (za * omega) @ zb.T
            out[r] = grid.masked_fill(~(ok_a[:, None] & ok_b[None, :]), float("nan"))
        return out

    @staticmethod
    def _pair_index(p: torch.Tensor, q: torch.Tensor, n: int) -> torch.Tensor:
        """Position of the original entry {p, q} (p != q) in the row-major upper triangle."""
        lo, hi = torch.minimum(p, q), torch.maximum(p, q)
        return lo * n - lo * (lo + 1) // 2 + (hi - lo - 1)

    @staticmethod
    def _kendall(va: torch.Tensor, vb: torch.Tensor, ok_a: torch.Tensor, ok_b: torch.Tensor, same: bool) -> torch.Tensor:
        """Kendall's tau-a of every layer pair on the kept entries (scipy per pair: the slow option, as in the grid)."""
        na, nb = va.cpu().numpy(), vb.cpu().numpy()
        out = np.full((na.shape[0], nb.shape[0]), np.nan)
        for i in range(na.shape[0]):
            for j in range(nb.shape[0]):
                if same and j < i:
                    out[i, j] = out[j, i]
                elif bool(ok_a[i]) and bool(ok_b[j]) and np.ptp(na[i]) > 0 and np.ptp(nb[j]) > 0:
                    out[i, j] = _tau_a(na[i], nb[j])
        return torch.as_tensor(out, dtype=va.dtype, device=va.device)


@resampled_form()
def rsa_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """RSA per resample, from each layer's RDM gathered at the resample's rows (pairs of copies left out)."""
    distance, compare = _settings(ctx)
    rdms = ch.set.memo(("rsa_rdms", distance, compare), lambda: ResampledRdms(ch.set, distance, compare))
    return rdms.grid(ch), None
