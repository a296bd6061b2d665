"""Simple matches: the finest ε-matches, found as v-minimal matches (Wang et al. 2018, Alg. 2).

Two modes. ``greedy`` (the default, the authors' procedure, described below) finds one
v-minimal match per neuron v; ``exact`` (:mod:`.exact`) finds every v-minimal match, hence every
simple match, within a budget of fixed-point computations.

For a neuron v of the maximum match, the v-minimal match is found greedily, as in the authors'
code: starting from the maximum match, try deleting every other neuron in turn (A side in index
order, then B side); keep a deletion when v survives in the maximum match of what is left. The
result is a match that contains v and no smaller match inside it contains v. The distinct
v-minimal matches over all v are reported as the simple matches.

Why it is fast (the naive version needs O(n²) full maximum-match computations):

* Reduced coordinates: everything runs on the maximum match restricted into its own k-dim
  frames (:meth:`MatchProblem.restrict`), so each projection costs O(k²·m) instead of
  O(D·k·m), and every recomputation is warm-started from the current sets (removals only
  shrink the maximum match).
* Block deletions (galloping): deleting a block of consecutive candidates at once is accepted
  exactly when sequential deletion would accept every one of them, and then lands in the same
  state. Proof sketch: if v ∈ MM(C∖B), each sequential state Cᵢ = MM(Cᵢ₋₁∖uᵢ) contains the
  match MM(C∖B) (a match inside a set lies inside its maximum match), so v survives every step,
  and the last state is a match inside C∖B containing MM(C∖B), hence equal to it. A rejected
  single candidate stays needed for good (later states are subsets). So we try blocks whose
  size doubles after an acceptance and halves after a rejection: O(s·log n) maximum-match calls
  for a v-minimal match of size s, with the same answer as the one-at-a-time loop.
* The reduced problems are tiny (k ≤ a few hundred), so this sequential search runs on the
  CPU, single-threaded: kernel launch and synchronisation latency would dominate on a GPU, and
  thread fork/join overhead dominates on a multi-threaded CPU (a 48 × 48 QR took 3.1 ms with 2
  threads on a busy 2-core machine, 85 µs with 1).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .exact import BudgetReached, ExactSearch
from .maximum import MatchProblem, check_eps, fixed_point

SIDES = ("a", "b")
MODES = ("greedy", "exact")
DEFAULT_BUDGET = 20_000  # fixed points per exact search (~1 min of CPU on a 64 + 64 layer pair)


@dataclass(frozen=True)
class SimpleMatch:
    """A simple match: neuron indices of the original layers, and how many v led to it."""

    a: tuple[int, ...]
    b: tuple[int, ...]
    found_from: int = 1

    @property
    def size(self) -> int:
        return len(self.a) + len(self.b)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch CPU ops on one thread inside the block (restored afterwards)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _indices(mask: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.flatnonzero(mask), device=device)


def v_minimal_local(problem: MatchProblem, side: str, v: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """v-minimal match inside ``problem`` (all its live neurons must form a match, e.g. a
    problem restricted to a maximum match). ``v`` is a local index on ``side`` ('a' or 'b').

    Returns boolean masks over the problem's A and B neurons.
    """
    if side not in SIDES:
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    device = problem.device
    cur = [np.ones(problem.n_a, dtype=bool), np.ones(problem.n_b, dtype=bool)]
    s_v = SIDES.index(side)
    cands = [(0, i) for i in range(problem.n_a) if not (s_v == 0 and i == v)]
    cands += [(1, j) for j in range(problem.n_b) if not (s_v == 1 and j == v)]
    pos, size = 0, 1
    while True:
        block: list[tuple[int, int]] = []
        p = pos
        while p < len(cands) and len(block) < size:
            s, i = cands[p]
            p += 1
            if cur[s][i]:
                block.append((s, i))
        if not block:
            break
        trial = [cur[0].copy(), cur[1].copy()]
        for s, i in block:
            trial[s][i] = False
        removed_a = any(s == 0 for s, _ in block)
        removed_b = any(s == 1 for s, _ in block)
        ta, tb = fixed_point(
            problem, _indices(trial[0], device), _indices(trial[1], device), eps, check_a=removed_b, check_b=removed_a
        )
        survivors = ta if s_v == 0 else tb
        if bool((survivors == v).any()):
            cur = [np.zeros(problem.n_a, dtype=bool), np.zeros(problem.n_b, dtype=bool)]
            cur[0][ta.cpu().numpy()] = True
            cur[1][tb.cpu().numpy()] = True
            pos, size = p, size * 2
        elif len(block) == 1:
            pos, size = p, 1  # this neuron is needed by v, now and in every later (smaller) state
        else:
            size = max(1, len(block) // 2)
    return cur[0], cur[1]


def _restricted_to_match(problem: MatchProblem, ia: Tensor, ib: Tensor) -> MatchProblem:
    return problem.restrict(ia, ib).to("cpu")


class SimpleMatches(list):
    """The simple matches found (a list of :class:`SimpleMatch`, smallest first) plus how.

    ``complete`` is False when exact mode stopped at its budget (then the list holds what the
    search found plus the greedy matches, all genuine simple matches, but maybe not all of
    them); ``fixed_points`` counts the maximum-match fixed points the exact search computed.
    Greedy mode is complete by its own definition (one v-minimal match per v).
    """

    def __init__(self, items=(), mode: str = "greedy", complete: bool = True, fixed_points: int = 0):
        super().__init__(items)
        self.mode = mode
        self.complete = complete
        self.fixed_points = fixed_points


def _sorted(found: dict[tuple[tuple[int, ...], tuple[int, ...]], int]) -> list[SimpleMatch]:
    return [SimpleMatch(a, b, count) for (a, b), count in sorted(found.items(), key=lambda kv: (len(kv[0][0]) + len(kv[0][1]), kv[0]))]


def _greedy(small: MatchProblem, eps: float) -> dict[tuple[tuple[int, ...], tuple[int, ...]], int]:
    found: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    a_ids, b_ids = small.a_ids.numpy(), small.b_ids.numpy()
    for side, n in (("a", small.n_a), ("b", small.n_b)):
        for v in range(n):
            ma, mb = v_minimal_local(small, side, v, eps)
            key = (tuple(int(x) for x in a_ids[ma]), tuple(int(x) for x in b_ids[mb]))
            found[key] = found.get(key, 0) + 1
    return found


def _exact(small: MatchProblem, eps: float, budget: int | None) -> tuple[dict, bool, int]:
    """Every v-minimal match for every v; ``found_from`` counts the v it is v-minimal for.

    The budget is shared fairly: in each pass every unfinished v may use an equal part of what
    is left (what one v leaves unused goes to the later ones), so one hard neuron (many
    redundant alternatives) cannot starve all the others. Passes repeat over the unfinished v
    while budget is left; a rerun is cheap up to where it stopped, as fixed points are
    memoised. The result is incomplete when some v never finished.
    """
    search = ExactSearch(small, eps, None)
    a_ids, b_ids = small.a_ids.numpy(), small.b_ids.numpy()
    per_v: dict[tuple[int, int], list] = {}
    todo = [(0, v) for v in range(small.n_a)] + [(1, v) for v in range(small.n_b)]
    while todo:
        unfinished: list[tuple[int, int]] = []
        spent_before = search.fixed_points
        for n, (side, v) in enumerate(todo):
            if budget is not None:
                share = (budget - search.fixed_points) // (len(todo) - n)
                if share < 1:
                    unfinished.extend(todo[n:])
                    break
                search.budget = search.fixed_points + share
            partial: list = []
            try:
                search.v_minimal_all(side, v, partial)
            except BudgetReached:
                unfinished.append((side, v))
            per_v[(side, v)] = partial  # a rerun finds these again first (same order): replace
        todo = unfinished
        if search.fixed_points == spent_before:
            break  # no budget left to share out
    found: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    for partial in per_v.values():
        for ma, mb in partial:
            key = (tuple(int(x) for x in a_ids[ma]), tuple(int(x) for x in b_ids[mb]))
            found[key] = found.get(key, 0) + 1
    return found, not todo, search.fixed_points


def simple_matches_in(
    problem: MatchProblem, ia: Tensor, ib: Tensor, eps: float, mode: str = "greedy", budget: int | None = DEFAULT_BUDGET
) -> SimpleMatches:
    """Simple matches inside the maximum match (ia, ib) of ``problem``.

    ``mode="greedy"``: the distinct v-minimal matches of the authors' deletion order, one per v.
    ``mode="exact"``: every simple match (every v-minimal match of every v), unless the search
    computes ``budget`` fixed points first (``None``: no limit); see :class:`SimpleMatches`.
    """
    eps = check_eps(eps)
    if mode not in MODES:
        raise ValueError(f"simple-match mode must be one of {MODES}, got {mode!r}")
    if budget is not None and budget < 1:
        raise ValueError(f"the exact-search budget must be ≥ 1 fixed point (or None), got {budget}")
    if ia.numel() + ib.numel() == 0:
        return SimpleMatches([], mode=mode)
    small = _restricted_to_match(problem, ia, ib)
    with single_thread():
        if mode == "greedy":
            return SimpleMatches(_sorted(_greedy(small, eps)), mode=mode)
        found, complete, calls = _exact(small, eps, budget)
        if not complete:
            for key in _greedy(small, eps):
                found.setdefault(key, 0)  # a greedy match the search did not reach: found from no v yet
    return SimpleMatches(_sorted(found), mode=mode, complete=complete, fixed_points=calls)


def v_minimal_match(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    eps: float,
    side: str,
    neuron: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> SimpleMatch | None:
    """The v-minimal ε-match of neuron ``neuron`` of layer ``side`` ('a' or 'b').

    ``a`` (D, d_a) and ``b`` (D, d_b) are neuron vectors (columns). Returns None when the
    neuron is not in the maximum match (then no match contains it).
    """
    eps = check_eps(eps)
    if side not in SIDES:
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    problem = MatchProblem.from_vectors(a, b, device, dtype)
    reduced = problem.restrict(problem.all_a(), problem.all_b())
    ia, ib = fixed_point(reduced, reduced.all_a(), reduced.all_b(), eps)
    small = _restricted_to_match(reduced, ia, ib)
    ids = (small.a_ids if side == "a" else small.b_ids).numpy()
    hits = np.flatnonzero(ids == neuron)
    if not hits.size:
        return None
    with single_thread():
        ma, mb = v_minimal_local(small, side, int(hits[0]), eps)
    return SimpleMatch(tuple(int(x) for x in small.a_ids.numpy()[ma]), tuple(int(x) for x in small.b_ids.numpy()[mb]))


def simple_matches(
    a: Tensor | np.ndarray,
    b: Tensor | np.ndarray,
    eps: float,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    *,
    mode: str = "greedy",
    budget: int | None = DEFAULT_BUDGET,
) -> SimpleMatches:
    """Simple ε-matches of neuron vectors ``a`` (D, d_a) and ``b`` (D, d_b), smallest first.

    ``mode="greedy"`` (default) is the authors' procedure: one v-minimal match per neuron v.
    ``mode="exact"`` enumerates every simple match (:mod:`.exact`) within ``budget`` fixed-point
    computations; ``result.complete`` says whether it finished. ``found_from`` counts the
    neurons v for which a match is the (greedy) or a (exact) v-minimal match.
    """
    eps = check_eps(eps)
    problem = MatchProblem.from_vectors(a, b, device, dtype)
    reduced = problem.restrict(problem.all_a(), problem.all_b())
    ia, ib = fixed_point(reduced, reduced.all_a(), reduced.all_b(), eps)
    return simple_matches_in(reduced, ia, ib, eps, mode=mode, budget=budget)
