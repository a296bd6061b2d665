"""Speed of the subspace-match kernels against the reference algorithms, same data, one run.

1. Maximum match, D coordinates × d neurons per side (default 10,000 × 512): the batched,
   reduced-coordinate fixed point (repmatch) against the reference code's approach, a
   per-neuron ``lstsq`` distance loop (``dist2plane``). Also printed: the reference's
   multi-right-hand-side ``lstsq`` per side (``dists2plane``), and CUDA float64 when present.
2. v-minimal match of one neuron inside a 128 + 128 maximum match at D = 10,000: the fast
   search (reduced coordinates + block deletions) against the authors' loop that recomputes the
   maximum match from scratch after every single deletion (with repmatch's batched maximum
   match, so the ratio isolates the algorithmic part).
3. Time to find all simple matches of a 64 + 64 channel layer pair at D = 10,000.
4. Exact vs greedy simple matches (time, number found, fixed points, whether the budget was
   reached) on 64 + 64 channel pairs at D = 10,000: the planted pair of part 3, and a pair with
   redundant neurons (three neurons per side spanning each shared plane), where the greedy
   search finds only some of the simple matches.
5. The chance level (A against 4 coordinate permutations of B, paper ε sweep) against the
   maximum-match sweep it accompanies, at the size of part 1, on planted and on rectified
   (non-negative, ReLU-like) data: the ratio chance / sweep must be ≤ 1. Also printed: the
   plain way (a full sweep per permuted copy), and in quick mode a check that both agree.

Data are planted: shared subspaces of a few dimensions ("blocks", as the small simple matches
of trained networks), each spanned by both sides through well-conditioned mixes, plus noise and
unrelated neurons. Results are checked to agree before any ratio is printed.

    python benchmarks/bench_subspace.py --quick   # < 2 min on 2 CPU cores
    python benchmarks/bench_subspace.py           # the sizes above (per-neuron loop extrapolated)
"""

from __future__ import annotations

import argparse
import time


from _common import early_threads  # noqa: E402  (before numpy/torch: sets their thread count)

THREADS = early_threads()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repmatch.subspace_match import (  # noqa: E402
    chance_from_sweep,
    coordinate_permutations,
    maximum_match,
    maximum_match_sweep,
    simple_matches,
    v_minimal_match,
)
from repmatch.subspace_match.simple import DEFAULT_BUDGET  # noqa: E402

PAPER_EPS = [0.15, 0.2, 0.25, 0.3, 0.5]


def planted(d_coords: int, n: int, block: int, noise: float, unrelated: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two layers of n neurons: (1 - unrelated)·n neurons per side span shared ``block``-dim
    subspaces through well-conditioned mixes (one neuron per dimension per side), plus noise."""
    rng = np.random.default_rng(seed)
    n_shared = int(round(n * (1 - unrelated))) // block * block
    u = np.linalg.qr(rng.normal(size=(d_coords, max(n_shared, 1))))[0]
    sides = []
    for _ in range(2):
        cols = []
        for start in range(0, n_shared, block):
            q = np.linalg.qr(rng.normal(size=(block, block)))[0] * rng.uniform(0.5, 2.0, size=block)
            cols.append(u[:, start : start + block] @ q)
        cols.append(rng.normal(size=(d_coords, n - n_shared)))
        x = np.concatenate(cols, axis=1)
        x += noise * np.linalg.norm(x, axis=0) * rng.normal(size=x.shape) / np.sqrt(d_coords)
        sides.append(x[:, rng.permutation(n)])
    return sides[0], sides[1]


def planted_redundant(d_coords: int, n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two layers of n neurons: shared planes, each spanned by three neurons per side (any two of
    them span it), so a neuron has several v-minimal matches; plus a few unrelated neurons."""
    rng = np.random.default_rng(seed)
    n_planes = n // 3 - 1
    u = np.linalg.qr(rng.normal(size=(d_coords, 2 * n_planes)))[0]
    sides = []
    for _ in range(2):
        cols = [u[:, 2 * p : 2 * p + 2] @ rng.normal(size=(2, 3)) for p in range(n_planes)]
        cols.append(rng.normal(size=(d_coords, n - 3 * n_planes)))
        x = np.concatenate(cols, axis=1)
        x += noise * np.linalg.norm(x, axis=0) * rng.normal(size=x.shape) / np.sqrt(d_coords)
        sides.append(x[:, rng.permutation(n)])
    return sides[0], sides[1]


def per_neuron_lstsq_dist(z: np.ndarray, y: np.ndarray) -> float:
    if y.shape[1] == 0:
        return 1.0
    coef, *_ = np.linalg.lstsq(y, z, rcond=None)
    return float(np.linalg.norm(y @ coef - z) / np.linalg.norm(z))


def multi_rhs_lstsq_dists(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    if y.shape[1] == 0:
        return np.ones(z.shape[1])
    coef, *_ = np.linalg.lstsq(y, z, rcond=None)
    return np.linalg.norm(y @ coef - z, axis=0) / np.linalg.norm(z, axis=0)


def reference_max_match(x, y, eps, per_neuron: bool, budget: int | None = None):
    """The reference fixed point: alternate sides, one lstsq per neuron (or per side).

    With ``budget`` (per-neuron mode only) at most that many solves are timed per side and round;
    the rest of the round's decisions are taken from the multi-RHS solve and the per-neuron time
    is extrapolated. Returns (A indices, B indices, seconds, number of per-neuron solves).
    """
    ix, iy = list(range(x.shape[1])), list(range(y.shape[1]))
    seconds, solves = 0.0, 0
    while True:
        changed = False
        for side in (0, 1):
            own, other, idx, oidx = (x, y, ix, iy) if side == 0 else (y, x, iy, ix)
            span = other[:, oidx]
            if per_neuron:
                timed = idx if budget is None else idx[:budget]
                t0 = time.perf_counter()
                d_timed = [per_neuron_lstsq_dist(own[:, i], span) for i in timed]
                dt = time.perf_counter() - t0
                seconds += dt * len(idx) / max(len(timed), 1)
                solves += len(idx)
                d = d_timed if len(timed) == len(idx) else list(multi_rhs_lstsq_dists(own[:, idx], span))
            else:
                t0 = time.perf_counter()
                d = list(multi_rhs_lstsq_dists(own[:, idx], span))
                seconds += time.perf_counter() - t0
            kept = [i for i, di in zip(idx, d) if di <= eps]
            changed |= len(kept) < len(idx)
            if side == 0:
                ix = kept
            else:
                iy = kept
        if not changed:
            return ix, iy, seconds, solves


def timed(fn, repeats: int = 1, sync: bool = False):
    best, out = float("inf"), None
    for _ in range(repeats):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def from_scratch_v_minimal(x, y, eps, side, v):
    """The authors' loop: one deletion at a time, each followed by a full maximum match."""
    m = maximum_match(x, y, eps)
    ix, iy = list(m.a), list(m.b)
    cands = [("a", i) for i in ix if not (side == "a" and i == v)] + [("b", j) for j in iy if not (side == "b" and j == v)]
    calls = 0
    for s, u in cands:
        tx = [i for i in ix if not (s == "a" and i == u)]
        ty = [j for j in iy if not (s == "b" and j == u)]
        sub = maximum_match(x[:, tx], y[:, ty], eps)
        calls += 1
        survivors = np.asarray(tx)[sub.a] if side == "a" else np.asarray(ty)[sub.b]
        if v in survivors:
            ix, iy = tx, ty
    return (tuple(ix), tuple(iy)), calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, < 2 min on 2 CPU cores")
    parser.add_argument("--coords", type=int, default=None, help="D for part 1 (default 10,000; quick 2,000)")
    parser.add_argument("--neurons", type=int, default=None, help="d per side for part 1 (default 512; quick 128)")
    parser.add_argument("--lstsq-budget", type=int, default=None,
                        help="per-neuron lstsq solves timed per side and round (default: all in quick mode, 24 otherwise)")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="fixed-point budget of the exact simple-match search")
    parser.add_argument("--exact-neurons", type=int, default=64, help="channels per side for part 4 (default 64)")
    parser.add_argument("--permutations", type=int, default=4, help="coordinate permutations of the chance level")
    parser.add_argument("--only", type=str, default="12345", help="which parts to run, e.g. 45")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch and numpy's BLAS, both sides alike (default 1: stable timings on a "
                        "shared machine; 0 = the libraries' own default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    quick = args.quick
    coords = args.coords or (2_000 if quick else 10_000)
    neurons = args.neurons or (128 if quick else 512)
    budget = args.lstsq_budget if args.lstsq_budget is not None else (None if quick else 24)
    eps = args.eps
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: {torch.cuda.is_available()}")

    parts = set(args.only)
    if "1" in parts:
        part_maximum(coords, neurons, eps, budget)
    if "2" in parts:
        part_v_minimal(quick, eps)
    if "3" in parts:
        part_simple(quick, eps)
    if "4" in parts:
        part_exact(quick, eps, args.budget, args.exact_neurons)
    if "5" in parts:
        part_chance(coords, neurons, args.permutations, quick)


def part_maximum(coords: int, neurons: int, eps: float, budget: int | None) -> None:
    x, y = planted(coords, neurons, block=4, noise=0.15, unrelated=0.25, seed=0)
    t_ours, m = timed(lambda: maximum_match(x, y, eps), repeats=2)
    ref_a, ref_b, t_loop, solves = reference_max_match(x, y, eps, per_neuron=True, budget=budget)
    assert list(m.a) == ref_a and list(m.b) == ref_b, "batched and reference maximum matches differ"
    _, _, t_multi, _ = reference_max_match(x, y, eps, per_neuron=False)
    how = "measured" if budget is None else f"extrapolated from ≤{budget} timed solves per side and round"
    print(f"\n[1] maximum match, D={coords}, d={neurons}+{neurons}, ε={eps}: similarity {m.similarity:.3f}")
    print(f"    repmatch batched (CPU float64)      {t_ours:9.3f} s")
    print(f"    per-neuron lstsq loop ({solves} solves) {t_loop:9.3f} s  ({how})")
    print(f"    ratio per-neuron loop / batched     {t_loop / t_ours:9.1f}x   (target >= 20x)")
    print(f"    multi-RHS lstsq per side (dists2plane) {t_multi:6.3f} s  ratio {t_multi / t_ours:.1f}x")
    if torch.cuda.is_available():
        xg, yg = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
        maximum_match(xg, yg, eps)  # warm-up
        t_gpu, mg = timed(lambda: maximum_match(xg, yg, eps), repeats=5, sync=True)
        assert list(mg.a) == ref_a and list(mg.b) == ref_b
        print(f"    CUDA float64 ({torch.cuda.get_device_name()}) {t_gpu * 1e3:8.1f} ms   (target < 50 ms on an H100)")


def part_v_minimal(quick: bool, eps: float) -> None:
    d2, n2 = (2_000, 64) if quick else (10_000, 128)
    x2, y2 = planted(d2, n2, block=4, noise=0.02, unrelated=0.0, seed=1)
    m2 = maximum_match(x2, y2, eps)
    v = int(m2.a[0])
    t_fast, fast = timed(lambda: v_minimal_match(x2, y2, eps, "a", v), repeats=2)
    t_slow, (slow, calls) = timed(lambda: from_scratch_v_minimal(x2, y2, eps, "a", v))
    assert fast is not None and (fast.a, fast.b) == slow, "fast and from-scratch v-minimal matches differ"
    print(f"\n[2] v-minimal match of one neuron, D={d2}, maximum match {len(m2.a)}+{len(m2.b)}, ε={eps}: size {fast.size}")
    print(f"    fast (reduced coords + block deletions) {t_fast:8.3f} s")
    print(f"    recompute from scratch ({calls} max matches) {t_slow:8.3f} s")
    print(f"    ratio from-scratch / fast               {t_slow / t_fast:8.1f}x   (target >= 20x)")


def _sizes(found) -> dict[int, int]:
    sizes = np.bincount([s.size for s in found]) if len(found) else np.zeros(0, dtype=int)
    return {i: int(c) for i, c in enumerate(sizes) if c}


def part_simple(quick: bool, eps: float) -> None:
    d3 = 2_000 if quick else 10_000
    x3, y3 = planted(d3, 64, block=2, noise=0.05, unrelated=0.25, seed=2)
    t_all, found = timed(lambda: simple_matches(x3, y3, eps))
    print(f"\n[3] all simple matches, 64+64 channels, D={d3}, ε={eps}: {len(found)} simple matches, sizes {_sizes(found)}")
    print(f"    time {t_all:.3f} s")
    if torch.cuda.is_available():
        x3g, y3g = torch.from_numpy(x3).cuda(), torch.from_numpy(y3).cuda()
        simple_matches(x3g, y3g, eps)
        t_all_gpu, found_gpu = timed(lambda: simple_matches(x3g, y3g, eps), sync=True)
        assert [(s.a, s.b) for s in found_gpu] == [(s.a, s.b) for s in found]
        print(f"    with the reduction on CUDA: {t_all_gpu:.3f} s")


def part_exact(quick: bool, eps: float, budget: int, neurons: int = 64) -> None:
    d4 = 2_000 if quick else 10_000
    cases = [
        ("planted blocks (part 3)", planted(d4, neurons, block=2, noise=0.05, unrelated=0.25, seed=2)),
        ("redundant: 3 neurons/side per plane", planted_redundant(d4, neurons, noise=0.05, seed=4)),
    ]
    print(f"\n[4] exact vs greedy simple matches, {neurons}+{neurons} channels, D={d4}, ε={eps}, budget {budget} fixed points")
    for name, (x4, y4) in cases:
        t_g, greedy = timed(lambda: simple_matches(x4, y4, eps))
        t_e, exact = timed(lambda: simple_matches(x4, y4, eps, mode="exact", budget=budget))
        g_keys = {(s.a, s.b) for s in greedy}
        e_keys = {(s.a, s.b) for s in exact}
        assert g_keys <= e_keys, "exact mode lost a greedy simple match"
        mm = maximum_match(x4, y4, eps)
        print(f"    {name}: maximum match {len(mm.a)}+{len(mm.b)}")
        print(f"      greedy  {t_g:8.3f} s  {len(greedy):5d} simple matches, sizes {_sizes(greedy)}")
        print(f"      exact   {t_e:8.3f} s  {len(exact):5d} simple matches, sizes {_sizes(exact)}, "
              f"{exact.fixed_points} fixed points, {'complete' if exact.complete else 'BUDGET REACHED'}")
        print(f"      ratio exact / greedy time {t_e / t_g:6.1f}x; found {len(e_keys - g_keys)} the greedy search misses")


def part_chance(coords: int, neurons: int, permutations: int, quick: bool) -> None:
    x, y = planted(coords, neurons, block=4, noise=0.15, unrelated=0.25, seed=0)
    rng = np.random.default_rng(5)
    relu = (np.maximum(x + 0.3 * rng.normal(size=(1, neurons)) / np.sqrt(coords), 0.0),
            np.maximum(y + 0.3 * rng.normal(size=(1, neurons)) / np.sqrt(coords), 0.0))  # fmt: skip
    print(f"\n[5] chance level ({permutations} coordinate permutations of B) vs the maximum-match sweep, "
          f"D={coords}, d={neurons}+{neurons}, ε={PAPER_EPS}")
    for name, (xa, yb) in (("planted", (x, y)), ("rectified (ReLU-like)", relu)):
        t_sweep, sweep = timed(lambda: maximum_match_sweep(xa, yb, PAPER_EPS, keep_frames=True), repeats=2)
        t_chance, chance = timed(lambda: chance_from_sweep(sweep, PAPER_EPS, permutations=permutations), repeats=2)
        perms = coordinate_permutations(coords, permutations, 0)
        t_plain, plain = timed(lambda: [maximum_match_sweep(xa, yb[p], PAPER_EPS) for p in perms])
        for p, sw in enumerate(plain):
            assert [sw.matches[e].similarity for e in PAPER_EPS] == list(chance.similarity[p]), "chance shortcut differs"
        sims = " ".join(f"{sweep.matches[e].similarity:.2f}" for e in PAPER_EPS)
        ch = " ".join(f"{chance.mean[e]:.2f}±{chance.std[e]:.2f}" for e in PAPER_EPS)
        print(f"    {name}: similarity {sims}; chance {ch}; whole-layer ε {sweep.whole_layer_eps:.3f} "
              f"(chance {chance.whole_layer_eps.mean():.3f})")
        print(f"      sweep {t_sweep:8.3f} s   chance {t_chance:8.3f} s   ratio chance / sweep {t_chance / t_sweep:5.2f}  (target <= 1)")
        print(f"      plain chance ({permutations} full sweeps of permuted copies) {t_plain:8.3f} s, "
              f"ratio plain / shortcut {t_plain / t_chance:5.1f}x")


if __name__ == "__main__":
    main()
