"""Extra time of the bootstrap in one similarity pair job, on real activation caches.

Times, in the same process and on the same loaded caches: the point-estimate table
(``similarity_table``, what the job computed before) and the bootstrap columns
(``add_bootstrap_columns``: ``uncertainty.bootstrap`` resamples of every configured measure, or of
``--measures``), and prints their ratio. Reads the caches only.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/bench_similarity_pair_job.py \\
        /work/after10/results/activations/smallcnn_seed0 /work/after10/results/activations/smallcnn_seed2 --n-boot 100
"""

from __future__ import annotations

import argparse
import logging
import time

import torch


def main() -> None:
    from repmatch.backbone.activations import open_pair
    from repmatch.settings import section_settings
    from repmatch.similarity.grid import similarity_table
    from repmatch.similarity.stages import add_bootstrap_columns

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cache_a")
    ap.add_argument("cache_b")
    ap.add_argument("--n-boot", type=int, default=100)
    ap.add_argument("--measures", nargs="*", default=None, help="similarity.measures (default: the schema's)")
    ap.add_argument("--bootstrap-measures", nargs="*", default=None, help="default: every configured measure")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sim = section_settings("similarity", {"measures": args.measures} if args.measures else None)  # schema defaults
    unc = section_settings("uncertainty", {"bootstrap": args.n_boot, "bootstrap_measures": args.bootstrap_measures})
    ca, cb = open_pair(args.cache_a, args.cache_b)
    acts_a, acts_b = ca.load_all(), cb.load_all()
    log = logging.getLogger("bench")
    t0 = time.perf_counter()
    point = similarity_table(acts_a, acts_b, "a", "b", sim.measures, conv_mode=sim.conv_mode, device="cpu",
                             params=sim.measure_params, on_degenerate=sim.on_degenerate, dtype=sim.precision)  # fmt: skip
    t_point = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = add_bootstrap_columns(point, acts_a, acts_b, "a", "b", sim, unc, "cpu", log)
    t_boot = time.perf_counter() - t0
    n = next(iter(acts_a.values())).shape[0]
    print(f"layers {len(acts_a)} x {len(acts_b)}, n = {n} probe rows, measures {','.join(sim.measures)}, "
          f"bootstrapped {','.join(unc.bootstrapped(sim.measures))}, B = {args.n_boot}, {args.threads} thread(s)")
    print(f"POINT (similarity_table)          {t_point:8.2f} s")
    print(f"BOOT  (add_bootstrap_columns)     {t_boot:8.2f} s   = {t_boot / t_point:.1f}x POINT")
    print(f"job total with bootstrap          {t_point + t_boot:8.2f} s   = {(t_point + t_boot) / t_point:.1f}x the job without")
    print(f"cells with a finite interval: {int(full['ci_low'].notna().sum())} / {len(full)}")


if __name__ == "__main__":
    main()
