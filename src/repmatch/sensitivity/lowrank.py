"""Low-rank representations of a layer (Ding, Denain & Steinhardt 2021, the sensitivity test).

A layer's output is treated as a set of channel vectors, one per (sample, position): an (N, C, H, W)
conv output gives N·H·W rows of C channels, an (N, T, C) token output N·T rows, a flat (N, C)
layer N rows (H = W = 1). The rank-r representation keeps, at every position, only the component
of the centred channel vector inside the top-r principal directions, then adds the mean back:

    x_r = mu + P_r (x - mu),   P_r = V_r V_r^T,  V_r = top-r eigenvectors of Cov(x).

Why fit once: the directions and the mean are fitted on the *training* split and then applied
unchanged to every batch of every split. The authors' public code takes the SVD of each batch,
which makes a sample's rank-r representation depend on which other samples share its batch (and
on the batch size); here it does not. The C x C covariance is accumulated in float64 over batches
(sums of x and of x x^T), so the fit is also independent of the batch size used to stream it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch


def channel_rows(x: torch.Tensor) -> torch.Tensor:
    """The (rows, C) matrix of per-position channel vectors of one batch.

    (N, C) -> itself; (N, C, H, W) -> (N·H·W, C); (N, T, C) tokens -> (N·T, C).
    """
    if x.ndim == 2:
        return x
    if x.ndim == 4:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    if x.ndim == 3:
        return x.reshape(-1, x.shape[2])
    raise ValueError(f"a layer output must be (N, C), (N, T, C) or (N, C, H, W); got shape {tuple(x.shape)}")


def from_channel_rows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`channel_rows`: rows back to the layout of ``like``."""
    if like.ndim == 2:
        return rows.reshape(like.shape)
    if like.ndim == 4:
        n, c, h, w = like.shape
        return rows.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
    return rows.reshape(like.shape)


class CovarianceAccumulator:
    """Streaming float64 sums (count, sum x, sum x x^T) of channel vectors over batches.

    Why sums and not per-batch covariances: the total is exact whatever the batch boundaries, so
    the fitted directions do not depend on the batch size (up to float64 rounding).
    """

    def __init__(self) -> None:
        self.count = 0
        self.sum: torch.Tensor | None = None
        self.outer: torch.Tensor | None = None

    def update(self, x: torch.Tensor) -> None:
        """Add one batch (any layout accepted by :func:`channel_rows`)."""
        rows = channel_rows(x.detach()).to(dtype=torch.float64, device="cpu")
        if self.sum is None:
            c = rows.shape[1]
            self.sum = torch.zeros(c, dtype=torch.float64)
            self.outer = torch.zeros(c, c, dtype=torch.float64)
        elif rows.shape[1] != self.sum.shape[0]:
            raise ValueError(f"batch has {rows.shape[1]} channels, earlier batches had {self.sum.shape[0]}")
        assert self.outer is not None
        self.count += rows.shape[0]
        self.sum += rows.sum(dim=0)
        self.outer += rows.T @ rows

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, covariance) in float64; the covariance divides by the row count (population)."""
        if self.sum is None or self.count == 0:
            raise ValueError("no rows were accumulated")
        assert self.outer is not None
        mu = self.sum / self.count
        cov = self.outer / self.count - torch.outer(mu, mu)
        return mu, 0.5 * (cov + cov.T)


@dataclass(frozen=True)
class LowRankBasis:
    """A layer's principal directions, fitted once: ``directions`` (C, C) columns sorted by
    decreasing ``variances`` (C,), and the channel ``mean`` (C,), all float64 on the CPU."""

    mean: torch.Tensor
    directions: torch.Tensor
    variances: torch.Tensor
    n_rows: int

    @property
    def full_rank(self) -> int:
        """The number of channels C (rank C reproduces the input)."""
        return int(self.mean.shape[0])

    def variance_kept(self, rank: int) -> float:
        """The fraction of the layer's (training) variance in the top-``rank`` directions (NaN for a constant layer).

        Eigenvalues are clipped at 0 in the sums: a PSD covariance's zero eigenvalues come out of
        ``eigh`` as round-off of either sign, and a negative one would make the fraction exceed 1."""
        v = self.variances.clamp_min(0)
        total = float(v.sum())
        return float(v[:rank].sum()) / total if total > 0 else float("nan")

    def projector(self, rank: int) -> torch.Tensor:
        """The (C, C) orthogonal projector onto the top-``rank`` directions (float64)."""
        v = self.directions[:, : _check_rank(rank, self.full_rank)]
        return v @ v.T

    def apply(self, x: torch.Tensor, rank: int) -> torch.Tensor:
        """The rank-``rank`` representation of a batch ``x``, same shape, dtype and device as ``x``.

        Computed in float64: ``mean + (x - mean) V_r V_r^T`` per position; rank = C returns
        the input (the directions form an orthonormal basis).
        """
        r = _check_rank(rank, self.full_rank)
        rows = channel_rows(x).to(torch.float64)
        mu = self.mean.to(rows.device)
        v = self.directions[:, :r].to(rows.device)
        out = mu + ((rows - mu) @ v) @ v.T
        return from_channel_rows(out, x).to(dtype=x.dtype)


def _check_rank(rank: int, full: int) -> int:
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank <= full:
        raise ValueError(f"rank must be an integer in [0, {full}], got {rank!r}")
    return rank


def fit_lowrank(batches: Iterable[torch.Tensor]) -> LowRankBasis:
    """Fit the principal directions of a layer from its training-split outputs, streamed by batch.

    The eigendecomposition (``torch.linalg.eigh`` of the float64 covariance) orders directions by
    decreasing variance; ties and the sign of each direction are arbitrary, but every projector
    onto a set of directions separated from the rest by a variance gap is unique.
    """
    acc = CovarianceAccumulator()
    for b in batches:
        acc.update(b)
    return basis_from_moments(*acc.mean_cov(), n_rows=acc.count)


def basis_from_moments(mean: torch.Tensor, cov: torch.Tensor, *, n_rows: int) -> LowRankBasis:
    """The basis from a float64 mean and covariance (eigenvectors by decreasing eigenvalue)."""
    evals, evecs = torch.linalg.eigh(cov.to(torch.float64))
    order = torch.argsort(evals, descending=True)
    return LowRankBasis(mean=mean.to(torch.float64), directions=evecs[:, order].contiguous(), variances=evals[order],
                        n_rows=int(n_rows))


def halving_ranks(full_rank: int) -> list[int]:
    """The default ranks: full, full//2, full//4, ..., 1 (each once, decreasing)."""
    if full_rank < 1:
        raise ValueError(f"full_rank must be >= 1, got {full_rank}")
    out, r = [], full_rank
    while r >= 1:
        out.append(r)
        r //= 2
    return out
