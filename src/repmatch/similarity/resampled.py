"""Per-resample quantities shared by the measures' resampled forms (the bootstrap's analogue of :mod:`.stats`).

A bootstrap resample is a vector of row multiplicities w (sum n) over the n probe rows. Most
measures are functions of the resample's centred second moments, so B resamples of every layer
pair come from a few batched matmuls instead of B runs of the grid engine. This module holds what
several measures read, computed once per chunk of resamples and cached like
:class:`~repmatch.similarity.stats.LayerStats`:

* :class:`ResampleSet` (once per run): every layer centred on the probe-set mean, concatenated
  along features (all layers in one matmul), and a memo for per-run preparations (e.g. RBF CKA's
  sorted pairwise distances);
* :class:`ResampleChunk` (per chunk of c resamples): the resampled rows centred on the resample's
  own mean, the cross-covariances C_ij of all layer pairs, each layer's covariance, trace and
  Frobenius norm, the whitening of every layer, and a memo for family-specific products (e.g. the
  CCA family's whitened cross blocks).

A measure's resampled form (:class:`ResampledForm`, declared with :func:`resampled_form` in the
measure's own module next to its grid function, and named by ``Measure.resampled_ref``) receives
a chunk and returns its (c, L_a, L_b) replicates, and the (c, L_b, L_a) ones of the other
orientation when asked (asymmetric measures share their per-pair decompositions between the two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .context import GridContext
from .memo import Memo

#: A resampled form's computation: (chunk, ctx, backward) -> (forward (c, L_a, L_b), backward (c, L_b, L_a) or None).
ResampledFn = Callable[["ResampleChunk", GridContext, bool], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass(frozen=True)
class ResampledForm:
    """How one measure is computed on a chunk of resamples at once.

    ``row_blocks`` names the measure parameter giving the size of the contiguous row blocks the
    measure works over (minibatch CKA: ``minibatch_size``); the chunk then forms the
    cross-products block by block, and every measure of the run reads their sum (one set of
    products for all of them). None for measures of the whole resample.
    """

    compute: ResampledFn
    row_blocks: str | None = None

    def __call__(self, chunk: ResampleChunk, ctx: GridContext, backward: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.compute(chunk, ctx, backward)


def resampled_form(row_blocks: str | None = None) -> Callable[[ResampledFn], ResampledForm]:
    """Decorator declaring a function ``(chunk, ctx, backward) -> (forward, backward | None)`` a resampled form."""

    def wrap(fn: ResampledFn) -> ResampledForm:
        return ResampledForm(fn, row_blocks)

    return wrap


def row_blocks(n: int, size: int | None) -> list[slice]:
    """Contiguous blocks of at least ``size`` rows (all rows when ``size`` is None or >= n)."""
    if size is None or size >= n:
        return [slice(0, n)]
    k = n // size
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def segments(widths: list[int], dt: torch.dtype, dev: torch.device) -> tuple[torch.Tensor, list[slice]]:
    """(L, D) 0/1 matrix mapping concatenated features to their layer, and each layer's feature span."""
    spans, start = [], 0
    for w in widths:
        spans.append(slice(start, start + w))
        start += w
    seg = torch.zeros(len(widths), start, dtype=dt, device=dev)
    for k, sl in enumerate(spans):
        seg[k, sl] = 1
    return seg, spans


class ResampleSet(Memo):
    """The layers of both models, centred on the probe-set mean, shared by every chunk of a run.

    ``xa``, ``xb``: (n, d) float tensors (``xb is xa`` for a model against itself); ``eps_a``,
    ``eps_b``: machine epsilon of the stored data (the engine's rank tolerance); ``mean_a``,
    ``mean_b``: each layer's (1, d) probe-set mean (measures on the rows as stored, e.g. cosine k-NN,
    add it back; zero when not given).
    """

    def __init__(self, xa: list[torch.Tensor], xb: list[torch.Tensor], eps_a: list[float], eps_b: list[float],
                 same: bool, mean_a: list[torch.Tensor] | None = None, mean_b: list[torch.Tensor] | None = None) -> None:  # fmt: skip
        self.xa, self.xb, self.eps_a, self.eps_b, self.same = xa, xb, eps_a, eps_b, same
        self.mean_a = mean_a if mean_a is not None else [torch.zeros_like(x[:1]) for x in xa]
        self.mean_b = self.mean_a if same else (mean_b if mean_b is not None else [torch.zeros_like(x[:1]) for x in xb])
        self.n = int(xa[0].shape[0])
        self.device, self.dtype = xa[0].device, xa[0].dtype
        self.big_a = torch.cat(xa, dim=1)
        self.big_b = self.big_a if same else torch.cat(xb, dim=1)
        self.seg_a, self.span_a = segments([x.shape[1] for x in xa], self.dtype, self.device)
        self.seg_b, self.span_b = (self.seg_a, self.span_a) if same else segments([x.shape[1] for x in xb], self.dtype, self.device)


@dataclass
class LayerMoments:
    """One layer's second moments per resample (leading axis: resamples of the chunk)."""

    cov: torch.Tensor  # (c, d, d)
    trace: torch.Tensor  # (c,)
    frob: torch.Tensor  # (c,) ||C||_F
    eps: float
    n: int
    _white: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def whitening(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W (c, d, d) with zero columns beyond the rank, rank (c,), eigenvalues descending (c, d)).

        C = V diag(s^2) V^T, W = V_r diag(1 / s_r): canonical correlations of two layers are the
        singular values of W_i^T C_ij W_j, and W_i^T C_ij is layer j regressed on layer i.
        """
        if self._white is None:
            lam, vec = torch.linalg.eigh(self.cov)
            lam, vec = lam.flip(-1), vec.flip(-1)  # descending
            s = lam.clamp_min(0).sqrt()
            d = lam.shape[-1]
            # The engine's rank tolerance on singular values; eigh of a covariance cannot resolve
            # singular values below ~sqrt(eps64) * s_max, so that is the floor.
            tol = s[:, :1] * max(max(self.n, d) * self.eps, d * float(np.sqrt(np.finfo(np.float64).eps)))
            keep = (s > tol) & (s[:, :1] > 0)
            inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
            self._white = (vec * inv[:, None, :], keep.sum(-1), torch.where(keep, lam, torch.zeros_like(lam)))
        return self._white


def sum_top_sqrt(gram: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Sum of the top-k singular values of T from G = T T^T (or T^T T): sqrt of its top-k eigenvalues.

    ``eigvalsh`` of the smaller Gram agrees with an SVD to ~1e-8 relative and is ~2x faster batched.
    """
    lam = torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt()
    pos = torch.arange(lam.shape[-1], device=lam.device)[None, :]
    return (lam * (pos < k[:, None])).sum(-1)


def smaller_gram(t: torch.Tensor) -> torch.Tensor:
    """T T^T or T^T T of a (c, p, q) stack, whichever is smaller (same nonzero eigenvalues)."""
    return t @ t.transpose(1, 2) if t.shape[1] <= t.shape[2] else t.transpose(1, 2) @ t


class ResampleChunk(Memo):
    """Quantities of c resamples shared by the measures (computed on first use, then cached).

    ``rows``: (c, n) resampled row indices (sorted); ``w``: (c, n) multiplicities;
    ``blocks``: the contiguous row blocks the cross-products are formed over (one block unless a
    measure of the run works block-wise, :class:`ResampledForm`).
    """

    def __init__(self, rs: ResampleSet, rows: torch.Tensor, w: torch.Tensor, blocks: list[slice]) -> None:
        self.set, self.rows, self.w, self.blocks = rs, rows, w, blocks
        self.c, self.n = int(rows.shape[0]), rs.n
        self.same = rs.same

    @cached_property
    def centred(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(fa, fb): the resampled rows (c, n, D) of all layers, centred on each resample's own mean."""
        rs = self.set
        fa = rs.big_a[self.rows] - ((self.w @ rs.big_a) / self.n)[:, None, :]
        fb = fa if self.same else rs.big_b[self.rows] - ((self.w @ rs.big_b) / self.n)[:, None, :]
        return fa, fb

    @cached_property
    def _products(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fa, fb = self.centred
        if len(self.blocks) == 1:
            return fa.transpose(1, 2) @ fb, []
        cross = torch.zeros(self.c, fa.shape[2], fb.shape[2], dtype=fa.dtype, device=fa.device)
        block_sq = []
        for bsl in self.blocks:
            prod = fa[:, bsl].transpose(1, 2) @ fb[:, bsl]
            cross += prod
            block_sq.append(self.set.seg_a @ prod.square() @ self.set.seg_b.T)
        return cross, block_sq

    @property
    def cross(self) -> torch.Tensor:
        """(c, D_a, D_b) cross-covariances (unnormalised: sums over the resample's rows) of all features."""
        return self._products[0]

    @property
    def block_cross_sq(self) -> list[torch.Tensor]:
        """Per row block: (c, L_a, L_b) squared Frobenius norms of each layer pair's block cross-product."""
        return self._products[1] or [self.cross_sq]

    @cached_property
    def blocks_ab(self) -> list[list[torch.Tensor]]:
        """C_ij (c, d_i, d_j) for every layer pair (views into :attr:`cross`)."""
        return [[self.cross[:, sa, sb] for sb in self.set.span_b] for sa in self.set.span_a]

    @cached_property
    def cross_sq(self) -> torch.Tensor:
        """(c, L_a, L_b) ||C_ij||_F^2."""
        return self.set.seg_a @ self.cross.square() @ self.set.seg_b.T

    def _moments(self, f: torch.Tensor, span: slice, eps: float, shared: bool) -> LayerMoments:
        if shared:  # a model against itself: the layer's covariance is a diagonal block of the cross products
            cov = self.cross[:, span, span]
        else:
            x = f[:, :, span]
            cov = x.transpose(1, 2) @ x
        return LayerMoments(cov=cov, trace=torch.diagonal(cov, dim1=1, dim2=2).sum(-1), frob=torch.linalg.matrix_norm(cov),
                            eps=eps, n=self.n)  # fmt: skip

    @cached_property
    def layers_a(self) -> list[LayerMoments]:
        fa, _ = self.centred
        return [self._moments(fa, s, e, self.same) for s, e in zip(self.set.span_a, self.set.eps_a)]

    @cached_property
    def layers_b(self) -> list[LayerMoments]:
        if self.same:
            return self.layers_a
        _, fb = self.centred
        return [self._moments(fb, s, e, False) for s, e in zip(self.set.span_b, self.set.eps_b)]

    @cached_property
    def frob_a(self) -> torch.Tensor:
        return torch.stack([x.frob for x in self.layers_a], 1)

    @cached_property
    def frob_b(self) -> torch.Tensor:
        return torch.stack([x.frob for x in self.layers_b], 1)

    @cached_property
    def trace_a(self) -> torch.Tensor:
        return torch.stack([x.trace for x in self.layers_a], 1)

    @cached_property
    def trace_b(self) -> torch.Tensor:
        return torch.stack([x.trace for x in self.layers_b], 1)

    @cached_property
    def whitening_a(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [x.whitening() for x in self.layers_a]

    @cached_property
    def whitening_b(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return self.whitening_a if self.same else [x.whitening() for x in self.layers_b]

    def nan_grid(self, backward: bool = False) -> torch.Tensor:
        """(c, L_a, L_b) (or (c, L_b, L_a)) of NaN, to fill cell by cell."""
        la, lb = len(self.set.span_a), len(self.set.span_b)
        shape = (self.c, lb, la) if backward else (self.c, la, lb)
        return torch.full(shape, float("nan"), dtype=self.set.dtype, device=self.set.device)
