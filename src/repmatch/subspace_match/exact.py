"""Every simple match, not only one v-minimal match per neuron (exact mode).

Definitions. Matches are closed under union. A match is *simple* when it is not the union of
strictly smaller matches (Wang et al. 2018); every match is then a union of simple matches. For
a neuron v, a *v-minimal* match contains v and no strictly smaller match contains v.

* Every v-minimal match is simple: were it a union of smaller matches, one of them would
  contain v.
* Every simple match M is v-minimal for some v: the union U of the strictly smaller matches
  inside M is not M, so pick v ∈ M ∖ U; no strictly smaller match contains v.

So the simple matches are exactly the v-minimal matches over all v of the maximum match. The
authors' procedure (:mod:`.simple`, ``mode="greedy"``) finds *one* v-minimal match per v, the
one its deletion order leads to; when neurons are redundant (two different neuron sets explain
the same direction) a neuron has several v-minimal matches and the others are missed. Note a
simple match need not be a *minimal* non-empty match: it may contain a smaller match, as long
as it also holds a neuron that no smaller match does.

How every v-minimal match is enumerated (a grow-and-exclude search, per v):

* State: a set S ∋ v that must be inside the match, and the allowed set C = MM(everything
  not excluded) ⊇ S, where MM is the maximum-match fixed point (a match inside a set lies
  inside its maximum match, so C bounds every candidate).
* If S is itself a match, it is the only v-minimal candidate here (any v-minimal M ⊇ S equals
  S), and it is kept when it passes the minimality test: v ∉ MM(S ∖ {w}) for every w ≠ v (were
  v in MM(S ∖ {w}), that would be a smaller match containing v).
* Otherwise, pruning with the fixed point: if v ∈ MM(S), MM(S) is a v-match inside S, so the
  only possible v-minimal M ⊇ S would be S itself, which is not a match: prune.
* Otherwise some neuron of S is farther than ε from the span of S's other side, so every match
  containing S holds at least one more neuron of that side, from C ∖ S. Branch on the first
  such neuron y_i in a fixed order: branch i adds y_i and excludes y_1 … y_{i-1} (C becomes
  MM(C ∖ {y_1 … y_{i-1}}), computed incrementally, and the loop stops when that loses a
  neuron of S). The branches partition the matches containing S, so nothing is missed and
  nothing is visited twice. The candidates are ordered by how much of the violated neurons'
  residual they explain (cosine of the residual with the candidate's part outside the current
  span), so the relevant neurons come first and excluding them soon empties C of v, which
  prunes the unrelated branches.

Budget. The search is exponential in the worst case (many redundant neurons). It counts the
maximum-match fixed points it computes (memoised ones are free) and stops at ``budget``; the
caller (:func:`repmatch.subspace_match.simple.simple_matches_in`) shares the budget fairly
between the neurons v, reports ``complete=False`` when any v ran out, and then adds the greedy
matches (genuine simple matches), so exact mode never returns fewer simple matches than greedy
mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .linalg import orthonormal_basis
from .maximum import MatchProblem, fixed_point

Mask = tuple[np.ndarray, np.ndarray]


class BudgetReached(Exception):
    """Raised inside the search when the fixed-point budget is spent."""


@dataclass
class ExactSearch:
    """All v-minimal matches inside a problem whose live neurons form a match (e.g. restricted
    to a maximum match). Sets are boolean masks over the problem's A and B neurons."""

    problem: MatchProblem
    eps: float
    budget: int | None = None
    fixed_points: int = 0
    cache: dict = field(default_factory=dict, repr=False)

    def _idx(self, mask: np.ndarray) -> Tensor:
        return torch.as_tensor(np.flatnonzero(mask), device=self.problem.device)

    def _masks(self, ta: Tensor, tb: Tensor) -> Mask:
        ma = np.zeros(self.problem.n_a, dtype=bool)
        mb = np.zeros(self.problem.n_b, dtype=bool)
        ma[ta.cpu().numpy()] = True
        mb[tb.cpu().numpy()] = True
        return ma, mb

    def mm(self, s: Mask, check_a: bool = True, check_b: bool = True) -> Mask:
        """Maximum match inside ``s`` (one budgeted fixed point, memoised: the searches of
        different v, and the minimality tests, meet the same sets again and again)."""
        key = ("mm", s[0].tobytes(), s[1].tobytes())
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if self.budget is not None and self.fixed_points >= self.budget:
            raise BudgetReached
        self.fixed_points += 1
        out = self._masks(*fixed_point(self.problem, self._idx(s[0]), self._idx(s[1]), self.eps, check_a, check_b))
        self.cache[key] = out
        return out

    def _distances(self, s: Mask) -> tuple[np.ndarray, np.ndarray]:
        """Distance of each neuron of s to the span of s's other side (1 when that side is empty)."""
        key = ("dist", s[0].tobytes(), s[1].tobytes())
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        ia, ib = self._idx(s[0]), self._idx(s[1])
        da = self.problem.distances_a(ia, ib).cpu().numpy() if ib.numel() else np.ones(ia.numel())
        db = self.problem.distances_b(ia, ib).cpu().numpy() if ia.numel() else np.ones(ib.numel())
        self.cache[key] = (da, db)
        return da, db

    def _order(self, s: Mask, side: int, violated: np.ndarray, cands: np.ndarray) -> np.ndarray:
        """Candidates (local indices on ``side``) sorted by the largest cosine between their part
        outside span(s's ``side`` neurons) and a violated other-side neuron's residual there."""
        p = self.problem
        own = p.a_self if side == 0 else p.b_self  # candidates in their own side's frame
        others = p.b_in_a if side == 0 else p.a_in_b  # violated neurons in that frame
        r = others[:, self._idx(violated)]
        c = own[:, torch.as_tensor(cands, device=p.device)]
        if s[side].any():
            q = orthonormal_basis(own[:, self._idx(s[side])])
            r = r - q @ (q.T @ r)
            c = c - q @ (q.T @ c)
        rn = torch.linalg.vector_norm(r, dim=0).clamp_min(torch.finfo(r.dtype).tiny)
        cn = torch.linalg.vector_norm(c, dim=0).clamp_min(torch.finfo(c.dtype).tiny)
        score = ((c.T @ r).abs() / cn[:, None] / rn[None, :]).amax(dim=1).cpu().numpy()
        return cands[np.argsort(-score, kind="stable")]

    def v_minimal_all(self, side: int, v: int, found: list[Mask] | None = None) -> list[Mask]:
        """Every v-minimal match of local neuron ``v`` on ``side`` (0 = A, 1 = B), appended to
        ``found`` as they come (so a caller catching :class:`BudgetReached` keeps them)."""
        start = (np.zeros(self.problem.n_a, dtype=bool), np.zeros(self.problem.n_b, dtype=bool))
        start[side][v] = True
        everything = (np.ones(self.problem.n_a, dtype=bool), np.ones(self.problem.n_b, dtype=bool))
        found = [] if found is None else found
        self._grow(side, v, start, everything, found)
        return found

    def _is_v_minimal(self, side: int, v: int, s: Mask) -> bool:
        for t in (0, 1):
            for w in np.flatnonzero(s[t]):
                if t == side and w == v:
                    continue
                trial = (s[0].copy(), s[1].copy())
                trial[t][w] = False
                if self.mm(trial, check_a=t == 1, check_b=t == 0)[side][v]:
                    return False
        return True

    def _grow(self, side: int, v: int, s: Mask, allowed: Mask, found: list[Mask]) -> None:
        da, db = self._distances(s)
        bad_a = np.zeros_like(s[0])
        bad_b = np.zeros_like(s[1])
        bad_a[np.flatnonzero(s[0])[da > self.eps]] = True
        bad_b[np.flatnonzero(s[1])[db > self.eps]] = True
        if not bad_a.any() and not bad_b.any():  # s is a match
            if self._is_v_minimal(side, v, s):
                found.append(s)
            return
        inner = self.mm((s[0] & ~bad_a, s[1] & ~bad_b), check_a=bool(bad_b.any()), check_b=bool(bad_a.any()))
        if inner[side][v]:
            return  # a smaller v-match lies inside s, which is not a match itself
        # violated A neurons need more B neurons and vice versa: branch on the side with fewer options
        options = []
        if bad_a.any():
            options.append((1, bad_a, np.flatnonzero(allowed[1] & ~s[1])))
        if bad_b.any():
            options.append((0, bad_b, np.flatnonzero(allowed[0] & ~s[0])))
        if any(len(c) == 0 for _, _, c in options):
            return
        grow_side, violated, cands = min(options, key=lambda o: len(o[2]))
        order = self._order(s, grow_side, violated, cands)
        cur = allowed
        for i, y in enumerate(order):
            if i:
                prev = order[i - 1]
                if cur[grow_side][prev]:
                    excl = (cur[0].copy(), cur[1].copy())
                    excl[grow_side][prev] = False
                    cur = self.mm(excl, check_a=grow_side == 1, check_b=grow_side == 0)
                    if (s[0] & ~cur[0]).any() or (s[1] & ~cur[1]).any():
                        return  # every later branch has a smaller allowed set: none can hold s
            if not cur[grow_side][y]:
                continue
            nxt = (s[0].copy(), s[1].copy())
            nxt[grow_side][y] = True
            self._grow(side, v, nxt, cur, found)
