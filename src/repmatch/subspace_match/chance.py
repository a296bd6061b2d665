"""Chance level of the maximum match: what two *unrelated* layers of the same shape score.

Why a chance level. The maximum-match similarity depends on more than how alike two networks
are: a random vector is at distance ≈ √(1 − k/D) from a random k-dimensional subspace of
R^D, so with few coordinates (D = 500 probe inputs for a 64-neuron flat layer: ≈ 0.93) every
neuron "matches" at an ε above that, whatever the networks learnt. ReLU outputs are also
non-negative, so all neuron vectors share a large component along the all-positive directions
and are closer to each other than random Gaussian vectors. A similarity is only informative
when it is above what unrelated layers with the same D, neuron counts, spectra and
non-negativity give.

How. Layer A's neurons against a copy of layer B whose *coordinates* (rows of the D × d_B
neuron matrix, i.e. probe inputs or sampled (input, position) pairs) are permuted, the same
permutation for every B neuron. That keeps B's Gram matrix (so its spectrum, norms, dead
neurons and rank), its non-negativity and sparsity, and A untouched, but destroys the
correspondence "row k of A and row k of B are the same input". The maximum match of A and
ΠB over the ε sweep, averaged over a few permutations, is the chance level; the spread over
permutations says how sharp it is.

Cost. The maximum-match sweep already has orthonormal bases Q_A (D × r_A) and Q_B of the two
live layers and every neuron's coefficients in its own basis. The permuted layer's basis is
ΠQ_B with the *same* coefficients, so A's coordinates in ΠB's frame are (Q_Aᵀ ΠQ_B)ᵀ times A's
own coefficients, and ΠB's in A's frame are Q_Aᵀ ΠQ_B times B's: one D × r_A × r_B matmul per
permutation builds the reduced problem, and the rest of the sweep runs on r-dimensional
vectors. The sweep itself needs two reductions (a CholeskyQR2 per side, two projections); the
benchmark (``benchmarks/bench_subspace.py``) prints the ratio.

Precision. Residuals are taken as ‖z‖² − ‖coefficients‖² only where they are large; columns
within 1e-3 of the span are recomputed explicitly in D dimensions (as in
:func:`repmatch.subspace_match.linalg.project_out`), from z = Q·coefficients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .linalg import SMALL_RESIDUAL
from .maximum import MatchProblem, Sweep, check_eps, maximum_match_sweep, sweep_reduced


@dataclass(frozen=True)
class ChanceLevel:
    """Maximum-match similarity of A against coordinate-permuted copies of B.

    ``similarity[p, i]`` is the similarity at ``eps[i]`` for permutation p;
    ``whole_layer_eps[p]`` the whole-layer ε of that permutation.
    """

    eps: tuple[float, ...]
    similarity: np.ndarray
    whole_layer_eps: np.ndarray

    @property
    def permutations(self) -> int:
        return int(self.similarity.shape[0])

    @property
    def mean(self) -> dict[float, float]:
        """Chance similarity per ε, averaged over permutations."""
        return {e: float(m) for e, m in zip(self.eps, self.similarity.mean(axis=0))}

    @property
    def std(self) -> dict[float, float]:
        """Spread (population standard deviation) of the chance similarity over permutations."""
        return {e: float(s) for e, s in zip(self.eps, self.similarity.std(axis=0))}


def coordinate_permutations(n_coords: int, permutations: int, seed: int) -> list[np.ndarray]:
    """``permutations`` independent random permutations of range(n_coords), reproducible."""
    if permutations < 1:
        raise ValueError(f"need at least one permutation, got {permutations}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    return [rng.permutation(n_coords) for _ in range(permutations)]


def _cross(coef: Tensor, norm2: Tensor, basis_self: Tensor, basis_other: Tensor, overlap: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinates of neurons (given by ``coef`` in ``basis_self``) in ``basis_other``, and the
    squared norm of their part outside it. ``overlap`` = basis_otherᵀ · basis_self."""
    inside = overlap @ coef
    res2 = norm2 - (inside * inside).sum(dim=0)
    close = torch.nonzero(res2 < SMALL_RESIDUAL * norm2).flatten()
    if close.numel():
        z = basis_self @ coef[:, close]
        rest = z - basis_other @ (basis_other.T @ z)
        res2 = res2.index_copy(0, close, (rest * rest).sum(dim=0))
    return inside, res2


def permuted_problem(reduced: MatchProblem, qa: Tensor, qb: Tensor, perm: Tensor) -> MatchProblem:
    """The reduced problem of A against ΠB (rows of B permuted by ``perm``), from A's and B's
    bases: exact up to round-off, one D × r_A × r_B matmul (plus explicit residuals for
    columns very close to the other span)."""
    qb_perm = qb[perm]
    overlap = qa.T @ qb_perm  # (r_A, r_B)
    b_in_a, b_out2 = _cross(reduced.b_self, reduced.b_norm2, qb_perm, qa, overlap)
    a_in_b, a_out2 = _cross(reduced.a_self, reduced.a_norm2, qa, qb_perm, overlap.T)
    return MatchProblem(
        a_self=reduced.a_self, a_in_b=a_in_b, a_out2=a_out2, a_norm2=reduced.a_norm2, a_ids=reduced.a_ids,
        b_self=reduced.b_self, b_in_a=b_in_a, b_out2=b_out2, b_norm2=reduced.b_norm2, b_ids=reduced.b_ids,
        d_a=reduced.d_a, d_b=reduced.d_b,
    )  # fmt: skip


def chance_from_sweep(sweep: Sweep, eps_values: Sequence[float], *, permutations: int = 4, seed: int = 0) -> ChanceLevel:
    """Chance level for the layer pair of ``sweep`` (made with ``keep_frames=True``).

    Each permutation is one matmul plus a reduced-coordinate sweep; see the module docstring.
    """
    if sweep.frames is None:
        raise ValueError("the sweep carries no frames: call maximum_match_sweep(..., keep_frames=True)")
    eps_list = tuple(sorted({check_eps(e) for e in eps_values}))
    qa, qb = sweep.frames
    reduced = sweep.problem
    n_coords = int(qa.shape[0])
    sims = np.zeros((permutations, len(eps_list)))
    whole = np.zeros(permutations)
    for p, perm in enumerate(coordinate_permutations(n_coords, permutations, seed)):
        perm_t = torch.as_tensor(perm, device=qa.device)
        chance = sweep_reduced(permuted_problem(reduced, qa, qb, perm_t), eps_list)
        sims[p] = [chance.matches[e].similarity for e in eps_list]
        whole[p] = chance.whole_layer_eps
    return ChanceLevel(eps=eps_list, similarity=sims, whole_layer_eps=whole)


def chance_level(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    eps_values: Sequence[float],
    *,
    permutations: int = 4,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> ChanceLevel:
    """Chance level of the maximum match of neuron vectors ``a`` (D, d_a) and ``b`` (D, d_b):
    the similarity of ``a`` against ``b`` with its D coordinates permuted (jointly for all of
    b's neurons), per ε, over ``permutations`` random permutations drawn from ``seed``.

    Standalone entry point (it reduces the problem itself); alongside a sweep use
    :func:`chance_from_sweep`, which reuses the sweep's bases.
    """
    sweep = maximum_match_sweep(a, b, [], device, dtype, keep_frames=True)
    return chance_from_sweep(sweep, eps_values, permutations=permutations, seed=seed)
