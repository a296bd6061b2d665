"""Maximum ε-approximate subspace match between two layers (Wang et al., NeurIPS 2018).

Definitions (as in the authors' code, MeckyWu/subspace-match). A neuron's vector is its
activation over the probe coordinates, *not centred*. The distance of a vector z to a neuron
set Y is the relative residual ``‖z − P_span(Y) z‖ / ‖z‖`` (the sine of the angle, in [0, 1]).
(X, Y) is an ε-match when every x ∈ X is within ε of span(Y) and every y ∈ Y within ε of
span(X). Matches are closed under union, so the *maximum match* (union of all matches) is
unique; it is the greatest fixed point of "drop from each side the neurons farther than ε from
the span of the other side's remaining neurons", reached from the full layers. Dead neurons
(zero vectors) cannot be matched and are dropped first, but still count in the similarity
denominator ``(|X*| + |Y*|) / (d_A + d_B)``.

Speed. Every neuron of a side is tested against the other side's span in one batched
projection (one QR, two matmuls), on the GPU when there is one. Moreover all the work after the
first step happens in *reduced coordinates*: every later span is a subspace of the span of the
starting sets, so each neuron can be stored as (its coordinates in the other side's starting
span, the squared norm of its part outside it). Distances to any subset's span are then
exact sums ``out² + in-frame residual²`` computed on k-dimensional vectors (k ≤ neurons)
instead of D-dimensional ones. This is what makes the ε sweep, the fixed-point iterations and
the many maximum-match calls of the simple-match search cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .linalg import basis_and_coefficients, orthonormal_basis, project_out

DEAD_NORM = 1e-16  # neurons whose vector norm is at or below this are dead (the reference's _ZERO)


@dataclass(frozen=True)
class MatchProblem:
    """Two layers' live neurons in reduced coordinates (exact for any subsets of them).

    A side's "frame" is an orthonormal coordinate system for the span of that side's neurons.
    ``a_self`` holds A's neurons in A's frame, ``a_in_b`` their coordinates in B's frame and
    ``a_out2`` the squared norm of their part outside B's frame (same for B). ``a_ids`` maps
    local columns to neuron indices of the original layer (ascending); ``d_a`` counts all
    neurons of the layer, dead ones included.
    """

    a_self: Tensor
    a_in_b: Tensor
    a_out2: Tensor
    a_norm2: Tensor
    a_ids: Tensor
    b_self: Tensor
    b_in_a: Tensor
    b_out2: Tensor
    b_norm2: Tensor
    b_ids: Tensor
    d_a: int
    d_b: int

    @property
    def n_a(self) -> int:
        return int(self.a_ids.numel())

    @property
    def n_b(self) -> int:
        return int(self.b_ids.numel())

    @property
    def device(self) -> torch.device:
        return self.a_self.device

    def to(self, device: torch.device | str) -> MatchProblem:
        """The same problem on another device (reduced problems are small; see simple.py)."""
        moved = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return MatchProblem(**moved)

    @staticmethod
    def from_vectors(
        a: Tensor | np.ndarray,
        b: Tensor | np.ndarray,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> MatchProblem:
        """Full-coordinate problem from neuron vectors ``a`` (D, d_a) and ``b`` (D, d_b).

        Columns are neurons, rows the D shared coordinates (probe inputs, or sampled
        (input, position) pairs for conv channels). Dead columns are dropped here.
        """
        a_t, b_t = check_neuron_vectors(a, b, device, dtype)
        a_norm2 = (a_t * a_t).sum(dim=0)
        b_norm2 = (b_t * b_t).sum(dim=0)
        a_ids = torch.nonzero(a_norm2 > DEAD_NORM**2).flatten()
        b_ids = torch.nonzero(b_norm2 > DEAD_NORM**2).flatten()
        a_live = a_t[:, a_ids] if a_ids.numel() < a_t.shape[1] else a_t
        b_live = b_t[:, b_ids] if b_ids.numel() < b_t.shape[1] else b_t
        zeros_a = a_t.new_zeros(a_ids.numel())
        zeros_b = b_t.new_zeros(b_ids.numel())
        return MatchProblem(
            a_self=a_live, a_in_b=a_live, a_out2=zeros_a, a_norm2=a_norm2[a_ids], a_ids=a_ids,
            b_self=b_live, b_in_a=b_live, b_out2=zeros_b, b_norm2=b_norm2[b_ids], b_ids=b_ids,
            d_a=int(a_t.shape[1]), d_b=int(b_t.shape[1]),
        )  # fmt: skip

    def restrict(self, ia: Tensor, ib: Tensor) -> MatchProblem:
        """Reduce to the neurons ``ia`` / ``ib`` (local indices), with frames spanning just them.

        Exact for every later question about subsets of (ia, ib): a span of a subset lies in
        the new frame, so out-of-frame parts only add up (``out2`` accumulates).
        """
        return self.restrict_with_frames(ia, ib)[0]

    def restrict_with_frames(self, ia: Tensor, ib: Tensor) -> tuple[MatchProblem, Tensor, Tensor]:
        """:meth:`restrict`, also returning the new frames Q_A, Q_B in this problem's coordinates.

        On a full-coordinate problem these are D-dimensional orthonormal bases of the two live
        layers; the chance level (:mod:`.chance`) reuses them, so that comparing A with a
        coordinate-permuted B costs one matmul instead of a new reduction.
        """
        qa, a_self = basis_and_coefficients(_columns(self.a_self, ia))
        qb, b_self = basis_and_coefficients(_columns(self.b_self, ib))
        b_in_a, b_rest2 = project_out(_columns(self.b_in_a, ib), qa)
        a_in_b, a_rest2 = project_out(_columns(self.a_in_b, ia), qb)
        reduced = MatchProblem(
            a_self=a_self, a_in_b=a_in_b, a_out2=self.a_out2[ia] + a_rest2,
            a_norm2=self.a_norm2[ia], a_ids=self.a_ids[ia],
            b_self=b_self, b_in_a=b_in_a, b_out2=self.b_out2[ib] + b_rest2,
            b_norm2=self.b_norm2[ib], b_ids=self.b_ids[ib],
            d_a=self.d_a, d_b=self.d_b,
        )  # fmt: skip
        return reduced, qa, qb

    def all_a(self) -> Tensor:
        return torch.arange(self.n_a, device=self.device)

    def all_b(self) -> Tensor:
        return torch.arange(self.n_b, device=self.device)

    def distances_a(self, ia: Tensor, ib: Tensor) -> Tensor:
        """Relative distance of each A neuron ``ia`` to span(B neurons ``ib``), batched."""
        _, res2 = project_out(self.a_in_b[:, ia], orthonormal_basis(self.b_self[:, ib]))
        return torch.sqrt((self.a_out2[ia] + res2) / self.a_norm2[ia])

    def distances_b(self, ia: Tensor, ib: Tensor) -> Tensor:
        """Relative distance of each B neuron ``ib`` to span(A neurons ``ia``), batched."""
        _, res2 = project_out(self.b_in_a[:, ib], orthonormal_basis(self.a_self[:, ia]))
        return torch.sqrt((self.b_out2[ib] + res2) / self.b_norm2[ib])


def _columns(x: Tensor, idx: Tensor) -> Tensor:
    """x[:, idx] without copying when idx selects every column in order (the full-size case)."""
    return x if idx.numel() == x.shape[1] and bool((idx == torch.arange(x.shape[1], device=idx.device)).all()) else x[:, idx]


def check_neuron_vectors(
    a: Tensor | np.ndarray, b: Tensor | np.ndarray, device: torch.device | str | None, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Validate two neuron-vector matrices (D, d) and move them to ``device`` in ``dtype``."""
    a_t = torch.as_tensor(np.asarray(a) if not isinstance(a, Tensor) else a)
    b_t = torch.as_tensor(np.asarray(b) if not isinstance(b, Tensor) else b)
    for name, t in (("A", a_t), ("B", b_t)):
        if t.ndim != 2:
            raise ValueError(f"layer {name}: neuron vectors must be a 2-D (coordinates, neurons) array, got shape {tuple(t.shape)}")
    if a_t.shape[0] != b_t.shape[0]:
        raise ValueError(
            f"layers A and B have neuron vectors over different coordinates ({a_t.shape[0]} vs {b_t.shape[0]}): "
            "both must be measured on the same probe inputs (and positions)"
        )
    a_t = a_t.to(device=device or a_t.device, dtype=dtype)
    b_t = b_t.to(device=device or b_t.device, dtype=dtype)
    for name, t in (("A", a_t), ("B", b_t)):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"layer {name}: neuron vectors contain NaN or Inf values")
    return a_t, b_t


def check_eps(eps: float) -> float:
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"ε must be a finite number ≥ 0, got {eps}")
    return eps


def fixed_point(
    problem: MatchProblem, ia: Tensor, ib: Tensor, eps: float, check_a: bool = True, check_b: bool = True
) -> tuple[Tensor, Tensor]:
    """Maximum match contained in (ia, ib): prune both sides until nothing changes.

    ``check_a=False`` says the caller knows every neuron of ``ia`` is already within ε of
    span(ib) (e.g. only A neurons were removed from a match), which saves one projection.
    Returns local indices (ascending). ε ≥ 1 keeps every live neuron, since distances are
    sines and never exceed 1; that limit is decided exactly rather than left to round-off.
    """
    if eps >= 1.0:
        return ia, ib
    while check_a or check_b:
        if check_a:
            keep = problem.distances_a(ia, ib) <= eps if ib.numel() else torch.zeros_like(ia, dtype=torch.bool)
            check_a = False
            if not bool(keep.all()):
                ia = ia[keep]
                check_b = True
        if check_b:
            keep = problem.distances_b(ia, ib) <= eps if ia.numel() else torch.zeros_like(ib, dtype=torch.bool)
            check_b = False
            if not bool(keep.all()):
                ib = ib[keep]
                check_a = True
    return ia, ib


@dataclass(frozen=True)
class MaximumMatch:
    """The maximum ε-match of two layers: neuron indices of the original layers and similarity."""

    eps: float
    a: np.ndarray
    b: np.ndarray
    d_a: int
    d_b: int

    @property
    def similarity(self) -> float:
        """(|X*| + |Y*|) / (d_A + d_B), dead neurons counted in the denominator."""
        total = self.d_a + self.d_b
        return (len(self.a) + len(self.b)) / total if total else float("nan")


@dataclass
class Sweep:
    """Maximum matches of one layer pair over an ε sweep, plus the whole-layer ε.

    ``frames`` (only with ``keep_frames=True``) holds the D-dimensional orthonormal bases
    (Q_A, Q_B) of the live neurons, in the coordinates of ``problem``'s columns.
    """

    whole_layer_eps: float
    matches: dict[float, MaximumMatch]
    problem: MatchProblem = field(repr=False)
    local: dict[float, tuple[Tensor, Tensor]] = field(repr=False, default_factory=dict)
    frames: tuple[Tensor, Tensor] | None = field(repr=False, default=None)


def _result(problem: MatchProblem, ia: Tensor, ib: Tensor, eps: float) -> MaximumMatch:
    return MaximumMatch(
        eps=eps,
        a=problem.a_ids[ia].cpu().numpy(),
        b=problem.b_ids[ib].cpu().numpy(),
        d_a=problem.d_a,
        d_b=problem.d_b,
    )


def whole_layer_eps_of(reduced: MatchProblem) -> float:
    """Whole-layer ε of a problem reduced to all its live neurons (``out2`` = residual to the
    other side's whole span). See :func:`whole_layer_epsilon` for the dead-layer conventions."""
    if reduced.n_a and reduced.n_b:
        return float(torch.sqrt(torch.cat([reduced.a_out2 / reduced.a_norm2, reduced.b_out2 / reduced.b_norm2]).max()))
    if reduced.n_a or reduced.n_b:
        return 1.0  # live neurons facing a dead layer are at distance 1 from the empty span
    return float("nan")  # no live neuron on either side: nothing to match, no ε to report


def sweep_reduced(reduced: MatchProblem, eps_values: Iterable[float]) -> Sweep:
    """ε sweep on a problem already reduced to all its live neurons (``out2`` = residual to the
    other whole layer): warm-started fixed points, largest ε first.

    A match at ε is a match at every larger ε, so the maximum match shrinks as ε decreases; we
    visit ε in decreasing order and start each fixed point from the previous result.
    """
    eps_sorted = sorted({check_eps(e) for e in eps_values}, reverse=True)
    ia, ib = reduced.all_a(), reduced.all_b()
    matches: dict[float, MaximumMatch] = {}
    local: dict[float, tuple[Tensor, Tensor]] = {}
    for n, eps in enumerate(eps_sorted):
        if n == 0 and eps < 1.0:
            # First step for free: distances to the other *whole* layer are sqrt(out2 / norm2).
            # A neuron too far from the whole layer is too far from any part of it.
            keep_a = torch.sqrt(reduced.a_out2 / reduced.a_norm2) <= eps
            keep_b = torch.sqrt(reduced.b_out2 / reduced.b_norm2) <= eps
            ia, ib = ia[keep_a], ib[keep_b]
            ia, ib = fixed_point(reduced, ia, ib, eps, check_a=not bool(keep_b.all()), check_b=not bool(keep_a.all()))
        else:
            ia, ib = fixed_point(reduced, ia, ib, eps)
        matches[eps] = _result(reduced, ia, ib, eps)
        local[eps] = (ia, ib)
    return Sweep(whole_layer_eps=whole_layer_eps_of(reduced), matches=matches, problem=reduced, local=local)


def sweep_problem(problem: MatchProblem, eps_values: Iterable[float], keep_frames: bool = False) -> Sweep:
    """ε sweep on a full-coordinate problem: one reduction to the live neurons, then warm starts."""
    reduced, qa, qb = problem.restrict_with_frames(problem.all_a(), problem.all_b())
    sweep = sweep_reduced(reduced, eps_values)
    if keep_frames:
        sweep.frames = (qa, qb)
    return sweep


def maximum_match_sweep(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    eps_values: Sequence[float],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    keep_frames: bool = False,
) -> Sweep:
    """Maximum matches of neuron vectors ``a`` (D, d_a) and ``b`` (D, d_b) for every ε.

    ``keep_frames`` keeps the two D-dimensional bases on the result, for
    :func:`repmatch.subspace_match.chance.chance_from_sweep`.
    """
    return sweep_problem(MatchProblem.from_vectors(a, b, device, dtype), eps_values, keep_frames)


def maximum_match(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    eps: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> MaximumMatch:
    """The maximum ε-match of neuron vectors ``a`` (D, d_a) and ``b`` (D, d_b)."""
    eps = check_eps(eps)
    return maximum_match_sweep(a, b, [eps], device, dtype).matches[eps]


def whole_layer_epsilon(
    a: Tensor | np.ndarray, b: Tensor | np.ndarray, device: torch.device | str | None = None, dtype: torch.dtype = torch.float64
) -> float:
    """Smallest ε at which all live neurons of both layers form one match.

    That is the largest distance of any live neuron to the whole other layer's span (the
    reference's ``find_maximal_epsilon``); for every ε at or above it the maximum match is the
    whole (live) layers.

    Dead layers (decided here, and where this differs from the authors' code):

    * one side entirely dead, the other not: **1.0**. The other side's live neurons are at
      distance ‖z − 0‖/‖z‖ = 1 from the span of no neurons, so the live layers form a match
      only at ε ≥ 1, which is also where :func:`maximum_match` first returns them (distances
      are sines, never above 1). The reference's ``find_maximal_epsilon`` returns 0 here, but
      only because its running maximum starts at 0 and skips the case; 0 would report a dead
      layer as matching a live one *perfectly*, the best value of the column, while its
      maximum match is empty at every ε < 1.
    * both sides entirely dead: **NaN**. There is no live neuron to match and no distance to
      take a maximum of (the vacuous answer 0 would again read as a perfect match).
    """
    return maximum_match_sweep(a, b, [], device, dtype).whole_layer_eps
