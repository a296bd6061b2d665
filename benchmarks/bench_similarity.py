"""Benchmark: the batched layer-grid engine vs per-pair loops that recompute every pair from scratch.

Claim: for a model pair with L layers each, the grid engine (each layer centred once, all
cross products in a few large matmuls) is >= 20x faster than the per-pair loop of
torch_cka-style code (for each layer pair: centre both layers, build both n x n Gram matrices,
centre them, three Frobenius products), at 10 layers x 2 models, n = 5,000, on CPU.

Printed, all measured in this run on the same data:
  * engine time, the two per-pair baselines' times, the ratios, and the largest difference
    between the engine's and the baselines' values (they compute the same numbers);
  * on CUDA (when available): the same, plus the achieved TFLOP/s of the linear-CKA grid
    (useful flops = 2 n (D_a D_b + sum d_a^2 + sum d_b^2)) in float64 and float32;
  * with --all-measures: every registered measure's grid time vs calling the single-pair
    function for each layer pair (per-layer work redone per pair).

Usage:  python benchmarks/bench_similarity.py            # full size: n=5000, 10 layers (several minutes on 2 cores)
        python benchmarks/bench_similarity.py --quick    # n=2000, under a minute on 2 cores
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from _common import synthetic_layers

from repmatch.similarity import (
    MEASURES,
    DegenerateInputError,
    similarity,
    similarity_grids,
)

FULL_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512]
QUICK_WIDTHS = [32, 32, 64, 64, 128, 128, 128, 256, 256, 256]


def make_models(n: int, widths: list[int], seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Two 'networks' of float32 (n, d) layers: a shared random signal pushed through random ReLU maps."""
    return synthetic_layers(n, widths, offset=3.0, seed=seed)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeat: int) -> tuple[float, object]:
    """Best-of-``repeat`` wall time (after one warm-up call when repeating); one cold call when repeat <= 1."""
    out = fn() if repeat > 1 else None
    best = float("inf")
    for _ in range(max(repeat, 1)):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def per_pair_gram(a: dict, b: dict, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """torch_cka style: every pair rebuilds and centres both n x n Gram matrices."""
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a.values()):
        for j, y in enumerate(b.values()):
            xt = torch.as_tensor(x, device=device).to(dtype)
            yt = torch.as_tensor(y, device=device).to(dtype)
            xt, yt = xt - xt.mean(0), yt - yt.mean(0)
            gx, gy = xt @ xt.T, yt @ yt.T
            gx = gx - gx.mean(0, keepdim=True) - gx.mean(1, keepdim=True) + gx.mean()
            gy = gy - gy.mean(0, keepdim=True) - gy.mean(1, keepdim=True) + gy.mean()
            out[i, j] = float((gx * gy).sum() / torch.sqrt((gx * gx).sum() * (gy * gy).sum()))
    return out


def per_pair_features(a: dict, b: dict, device: torch.device, dtype: torch.dtype) -> np.ndarray:
    """A stronger per-pair baseline: feature-space linear CKA, but per-layer work redone for every pair."""
    out = np.zeros((len(a), len(b)))
    for i, x in enumerate(a.values()):
        for j, y in enumerate(b.values()):
            xt = torch.as_tensor(x, device=device).to(dtype)
            yt = torch.as_tensor(y, device=device).to(dtype)
            xt, yt = xt - xt.mean(0), yt - yt.mean(0)
            cross = (xt.T @ yt).square().sum()
            out[i, j] = float(cross / (torch.linalg.matrix_norm(xt.T @ xt) * torch.linalg.matrix_norm(yt.T @ yt)))
    return out


def engine(a: dict, b: dict, device: torch.device, precision: str, measures: list[str] | None = None) -> dict[str, np.ndarray]:
    fwd, _ = similarity_grids(a, b, measures or ["linear_cka"], "gap", device, dtype=precision)
    return fwd


def useful_flops(n: int, widths: list[int]) -> float:
    d = float(sum(widths))
    sq = float(sum(w * w for w in widths))
    return 2.0 * n * (d * d + 2 * sq)


def run_linear_cka(a: dict, b: dict, n: int, widths: list[int], device: torch.device, repeat: int, skip_gram: bool) -> None:
    print(f"\n== linear CKA grid, {len(a)} x {len(b)} layers, n = {n}, widths {widths}, device {device} ==")
    t_eng, fwd = timed(lambda: engine(a, b, device, "float64"), device, repeat)
    grid = fwd["linear_cka"]
    print(f"grid engine (float64)                     {t_eng:9.3f} s")
    t_feat, v_feat = timed(lambda: per_pair_features(a, b, device, torch.float64), device, 1)
    print(f"per-pair loop, feature space (float64)    {t_feat:9.3f} s   ratio {t_feat / t_eng:7.1f}x   "
          f"max |diff| {np.abs(v_feat - grid).max():.1e}")
    if not skip_gram:
        t_gram, v_gram = timed(lambda: per_pair_gram(a, b, device, torch.float64), device, 1)
        print(f"per-pair loop, n x n Grams (torch_cka)    {t_gram:9.3f} s   ratio {t_gram / t_eng:7.1f}x   "
              f"max |diff| {np.abs(v_gram - grid).max():.1e}")
        print(f"FIGURE: grid engine is {t_gram / t_eng:.1f}x faster than the torch_cka-style per-pair loop "
              f"({len(a)} layers x 2 models, n={n}, {device})")
    flops = useful_flops(n, widths)
    print(f"linear-CKA grid: {flops / 1e9:.1f} GFLOP useful -> {flops / t_eng / 1e12:.4f} TFLOP/s (float64, incl. centring/casting)")
    if device.type == "cuda":
        t32, f32 = timed(lambda: engine(a, b, device, "float32"), device, max(repeat, 3))
        print(f"grid engine (float32)                     {t32:9.3f} s   {flops / t32 / 1e12:.3f} TFLOP/s   "
              f"max |diff| vs float64 {np.abs(f32['linear_cka'] - grid).max():.1e}")
        xa = [torch.as_tensor(v, device=device, dtype=torch.float64) for v in a.values()]
        xb = [torch.as_tensor(v, device=device, dtype=torch.float64) for v in b.values()]
        from repmatch.similarity.linalg import cross_sq_grid

        for dt in (torch.float64, torch.float32):
            ca = [x.to(dt) - x.to(dt).mean(0) for x in xa]
            cb = [x.to(dt) - x.to(dt).mean(0) for x in xb]
            t_mm, _ = timed(lambda: cross_sq_grid(ca, cb), device, 5)
            cross = 2.0 * n * float(sum(widths)) ** 2
            print(f"cross-product kernel alone ({str(dt)[6:]}):    {t_mm:9.4f} s   {cross / t_mm / 1e12:.2f} TFLOP/s")


def run_all_measures(a: dict, b: dict, device: torch.device) -> None:
    print(f"\n== every measure: grid engine vs single-pair calls, {len(a)} x {len(b)} layers, device {device} ==")
    params = {"rbf_sigma": 0.8, "svcca_variance": 0.99, "minibatch_size": 100}
    for name in sorted(MEASURES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            similarity_grids(a, b, [name], "gap", device, params=params)
            sync(device)
            t_grid = time.perf_counter() - t0
            t0 = time.perf_counter()
            for x in a.values():
                for y in b.values():
                    try:
                        similarity(x, y, name, device, **params)
                    except DegenerateInputError:
                        pass
            sync(device)
            t_pair = time.perf_counter() - t0
        print(f"{name:20s} grid {t_grid:8.3f} s   per pair {t_pair:8.3f} s   ratio {t_pair / t_grid:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n=2000 and narrower layers (< 1 min on 2 CPU cores)")
    ap.add_argument("--n", type=int, default=None, help="probe samples (default 5000, quick 1000)")
    ap.add_argument("--repeat", type=int, default=1, help="timed repeats of the engine (best of)")
    ap.add_argument("--all-measures", action="store_true", help="also time every registered measure")
    ap.add_argument("--skip-gram-baseline", action="store_true", help="skip the slow n x n Gram baseline")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--cuda-only", action="store_true", help="skip the CPU device (a lent GPU machine's time is short)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = args.n or (2000 if args.quick else 5000)
    widths = QUICK_WIDTHS if args.quick else FULL_WIDTHS
    a, b = make_models(n, widths)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA available: {torch.cuda.is_available()}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.cuda_only:
        devices = devices[1:]
    for dev in devices:
        run_linear_cka(a, b, n, widths, dev, args.repeat, args.skip_gram_baseline)
    if args.all_measures:
        small_n = min(n, 1000)
        sa, sb = make_models(small_n, QUICK_WIDTHS[:6], seed=1)
        for dev in devices:
            run_all_measures(sa, sb, dev)


if __name__ == "__main__":
    main()
