"""Benchmark: probe-sample bootstrap intervals for every cell of the default similarity grids.

Setting (the default pipeline's similarity job for one pair of different networks): two
smallcnn-like networks, 6 layers with conv maps (16x28x28, 32x14x14, 32x14x14, 64x7x7, 64x7x7)
and one dense layer (64), n = 500 probe rows, conv_mode gap, all 9 default measures, both
orientations of the asymmetric ones; B = 200 resamples.

Printed, all measured in this run on the same data and the same thread count:
  * POINT: the point-estimate grid (``similarity_grids``, what the pipeline computes today);
  * BOOT: the weighted bootstrap (all measures, B replicates + percentile intervals) and the
    ratio BOOT / POINT (target: <= 5x);
  * NAIVE: each resample recomputed from scratch through the public per-pair function
    ``similarity(x[idx], y[idx], measure)``, timed on --naive-boot resamples and scaled to B
    (linear in B: every resample costs the same), and the ratio NAIVE / BOOT;
  * GATHER: the grid engine re-run on each resample's gathered activations (the reference path),
    timed on --naive-boot resamples and scaled to B;
  * --per-measure: every measure alone (point and bootstrap) with its ratio;
  * CEILING: the floor of the exact bootstrap for the measures that need per-cell
    decompositions or per-resample n x n kernels: B x (batched eigen-decompositions of every
    cell's small blocks, as the CCA family and Procrustes must do per resample) and B x (the
    exponentials of the RBF kernels on each resample's distinct rows), divided by POINT.

Usage:  python benchmarks/bench_uncertainty.py [--n-boot 200] [--threads 1] [--per-measure]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from repmatch.settings import section_settings
from repmatch.similarity import (
    DegenerateInputError,
    bootstrap_similarity_grids,
    get_measure,
    similarity,
    similarity_grids,
)
from repmatch.uncertainty import (
    bootstrap_indices,
    percentile_interval,
)

SHAPES = [(16, 28, 28), (32, 14, 14), (32, 14, 14), (64, 7, 7), (64, 7, 7), (64,)]
MEASURES = list(section_settings("similarity").measures)  # the default measures (schema)
PARAMS = {"rbf_sigma": 0.8, "svcca_variance": 0.99, "minibatch_size": 100}


def make_net(seed: int, n: int) -> dict[str, np.ndarray]:
    """float32 ReLU 'activations' sharing a latent signal across the two networks."""
    z = np.random.default_rng(0).standard_normal((n, 24))
    r = np.random.default_rng(seed)
    out = {}
    for k, s in enumerate(SHAPES):
        base = np.maximum(z @ r.standard_normal((24, s[0])), 0)
        x = base[:, :, None, None] + 0.5 * r.standard_normal((n, *s)) if len(s) == 3 else base + 0.1 * r.standard_normal((n, s[0]))
        out[f"layer{k}"] = np.maximum(x, 0).astype(np.float32)
    return out


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def point(a, b, measures):
    return similarity_grids(a, b, measures, "gap", params=PARAMS, reverse=True)


def boot(a, b, measures, n_boot):
    res = bootstrap_similarity_grids(a, b, measures, n_boot=n_boot, seed=0, params=PARAMS, reverse=True)
    for m in measures:
        percentile_interval(res.replicates[m])
        if m in res.backward:
            percentile_interval(res.backward[m])
    return res


def naive(a, b, measures, idx):
    """Every resample from scratch: gather the rows, then one public per-pair call per cell and orientation."""
    for rows in idx:
        for x in a.values():
            for y in b.values():
                xs, ys = x[rows], y[rows]
                for m in measures:
                    pairs = [(xs, ys)] if get_measure(m).symmetric else [(xs, ys), (ys, xs)]
                    for p, q in pairs:
                        try:
                            similarity(p, q, m, **{k: v for k, v in PARAMS.items() if k in get_measure(m).params})
                        except DegenerateInputError:
                            pass


def gather(a, b, measures, idx):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rows in idx:
            similarity_grids({k: v[rows] for k, v in a.items()}, {k: v[rows] for k, v in b.items()}, measures, "gap",
                             params=PARAMS, reverse=True)


def ceiling(a, b, n_boot: int, n: int) -> tuple[float, float]:
    """(decomposition floor, RBF floor) in seconds for n_boot resamples.

    Decompositions: per resample the exact CCA family / Procrustes need, per cell, the spectrum
    of a d_a x d_b block: eigvalsh of the smaller Gram for Procrustes, mean CCA, SVCCA and eigh
    (with vectors, both sides when the asymmetric PWCCA is wanted in both orientations) for
    PWCCA. RBF: the exponential of each layer's kernel on the resample's distinct rows.
    """
    widths_a = [s[0] for s in SHAPES]
    widths_b = widths_a
    rng = torch.Generator().manual_seed(0)
    t_dec = 0.0
    for da in widths_a:
        for db in widths_b:
            p = min(da, db)
            g = torch.randn(n_boot, p, p, generator=rng, dtype=torch.float64)
            g = g @ g.transpose(1, 2)
            t0 = time.perf_counter()
            for _ in range(3):
                torch.linalg.eigvalsh(g)
            for _ in range(2):
                torch.linalg.eigh(g)
            t_dec += time.perf_counter() - t0
    idx = bootstrap_indices(n, n_boot, 0)
    distinct = np.array([len(np.unique(r)) for r in idx])
    t_rbf = 0.0
    for m in distinct:
        k = torch.rand(int(m), int(m), dtype=torch.float64)
        t0 = time.perf_counter()
        for _ in range(2 * len(SHAPES)):
            torch.exp(k)
        t_rbf += time.perf_counter() - t0
    return t_dec, t_rbf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--naive-boot", type=int, default=2, help="resamples actually timed for the naive / gather baselines")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--per-measure", action="store_true", help="also time every measure alone")
    ap.add_argument("--measures", nargs="+", default=MEASURES, help="measures to bootstrap (default: the 9 default ones)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the naive / gather baselines and the ceiling")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    a, b = make_net(1, args.n), make_net(2, args.n)
    measures = list(args.measures)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); n = {args.n}, B = {args.n_boot}, "
          f"layers {SHAPES} (gap), measures {measures}")
    point(a, b, measures)  # warm-up
    t_point, _ = best_of(lambda: point(a, b, measures), 3)
    print(f"POINT  point-estimate grids, all measures, both orientations   {t_point:8.3f} s")
    t_boot, res = best_of(lambda: boot(a, b, measures, args.n_boot), 1)
    print(f"BOOT   weighted bootstrap B={args.n_boot} + percentile intervals   {t_boot:8.3f} s   "
          f"ratio BOOT/POINT {t_boot / t_point:6.1f}x   (target <= 5x)")
    if args.no_baselines:
        return
    idx = res.indices[: args.naive_boot]
    t_nv, _ = best_of(lambda: naive(a, b, measures, idx), 1)
    t_naive = t_nv / len(idx) * args.n_boot
    print(f"NAIVE  per-pair public calls, {len(idx)} resamples -> scaled to B   {t_naive:8.3f} s   "
          f"ratio NAIVE/BOOT {t_naive / t_boot:6.1f}x   NAIVE/POINT {t_naive / t_point:6.1f}x")
    t_g, _ = best_of(lambda: gather(a, b, measures, idx), 1)
    t_gather = t_g / len(idx) * args.n_boot
    print(f"GATHER grid engine per resample, {len(idx)} resamples -> scaled   {t_gather:8.3f} s   "
          f"ratio GATHER/BOOT {t_gather / t_boot:6.1f}x")
    t_dec, t_rbf = ceiling(a, b, args.n_boot, args.n)
    print(f"CEILING decompositions floor (CCA family + Procrustes)         {t_dec:8.3f} s   = {t_dec / t_point:6.1f}x POINT")
    print(f"CEILING RBF kernel exponentials floor                          {t_rbf:8.3f} s   = {t_rbf / t_point:6.1f}x POINT")
    if args.per_measure:
        print("\nper measure (each alone):          point        boot     ratio")
        for m in measures:
            tp, _ = best_of(lambda m=m: point(a, b, [m]), 2)
            tb, _ = best_of(lambda m=m: boot(a, b, [m], args.n_boot), 1)
            print(f"  {m:20s}          {tp:8.3f} s  {tb:8.3f} s  {tb / tp:6.1f}x")


if __name__ == "__main__":
    main()
