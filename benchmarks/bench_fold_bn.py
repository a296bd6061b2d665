"""BatchNorm folded into the convs of the frozen halves vs the networks as trained (same stitches, one run).

Why: TLM runs B's frozen back half forward and backward for every stitched image; in eval mode
each BatchNorm is a per-channel affine map that :func:`repmatch.stitching.network.fold_batchnorm`
folds into the conv before it (exact up to round-off, tested), saving one elementwise pass per
layer forward and backward. Timings alternate the two variants ``--reps`` times and print the
median ratio, because the CPU here is shared and noisy.

    OMP_NUM_THREADS=1 python benchmarks/bench_fold_bn.py --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from repmatch.networks import build_model
from repmatch.stitching import (
    Cell,
    Stitch,
    TLMConfig,
    freeze,
    layer_shapes,
    train_stitches,
)
from repmatch.stitching.network import fold_batchnorm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    a, b = freeze(build_model("smallcnn", 10, 1, 28)), freeze(build_model("smallcnn", 10, 1, 28))
    fa, fb = fold_batchnorm(a), fold_batchnorm(b)
    shapes = layer_shapes(a, (1, 28, 28))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, size=args.n).astype(np.int64)
    pairs = [(la, lb) for la in a.layer_names for lb in a.layer_names]
    cfg = TLMConfig.make(epochs=1, batch_size=32, lr=1e-2, schedule="cosine")

    def run(na, nb) -> float:
        g = torch.Generator().manual_seed(1)
        stitches = {Cell("tlm", la, lb): Stitch(shapes[la], shapes[lb], g) for la, lb in pairs}
        start = time.perf_counter()
        train_stitches(na, nb, stitches, x, y, cfg)
        return time.perf_counter() - start

    run(fa, fb)  # warm-up
    plain, folded = [], []
    for _ in range(args.reps):
        plain.append(run(a, b))
        folded.append(run(fa, fb))
    ratios = [p / f for p, f in zip(plain, folded)]
    print(f"smallcnn 6x6 grid, {args.n} images, batch 32, {args.threads} thread(s): plain {statistics.median(plain):.2f} s, "
          f"folded {statistics.median(folded):.2f} s, median speed-up {statistics.median(ratios):.2f}x (per rep {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
