"""Stacked stitch training vs one stitch at a time (same stitches, epochs, data and order, one run).

What is compared (both via ``repmatch.stitching.train_stitches``, which is also what the
pipeline runs):

* baseline: ``stacked=False``: each stitch trained in its own loop with its own optimizer: per
  batch, A's front half up to layer i (no grad), the stitch, B's back half after layer j.
* stacked: ``stacked=True``: per batch one pass of A's front computes every front layer once;
  all stitches into the same B layer are concatenated along the batch dimension and run through
  B's back half in one forward/backward; one Adam step for all stitches.

The result is the same set of trained stitches (tests/stitching/test_stitching_grid.py checks it); only
the wall time differs. Prints stitched images x stitches per second and the ratio.

Why it also prints a floor and a ceiling: stacking removes repeated front passes and per-call
overhead, but every stitched image must still go forward through B's frozen back half and
backward to its input. The script times exactly that work alone ("floor": stacked back-half
passes, no front, no stitches, no optimizer) in the same run, so

* ``ceiling = t_one / t_floor`` is the largest ratio any schedule of these stitches could reach
  on this device with these kernels, and
* ``stacked at X% of floor`` says how close the stacked loop gets to it;

and it counts both schedules' FLOPs with ``torch.utils.flop_counter`` (convolutions and matmuls,
forward and backward): on a compute-bound CPU the time ratio cannot beat the FLOP ratio.

    python benchmarks/bench_stitching.py --quick          # < 2 min on 2 CPU cores
    python benchmarks/bench_stitching.py                  # more images; + ResNet-20 on CUDA

Cases: the default pipeline's grid (smallcnn, 6 x 6 layers, 28 x 28 x 1 inputs) on CPU -- the
whole grid, and one row (front layer conv3 into every B layer); on CUDA in addition ResNet-20 on
32 x 32 x 3 inputs (10 x 10 grid). Weights are random (fixed seed) and the images synthetic:
speed does not depend on what the networks learned.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from repmatch.networks import build_model
from repmatch.stitching import (
    Cell,
    Stitch,
    TLMConfig,
    freeze,
    group_by_back,
    layer_shapes,
    train_stitches,
)


def _setup(arch: str, in_shape: tuple[int, int, int], n: int, device: torch.device):
    torch.manual_seed(0)
    a = freeze(build_model(arch, 10, in_shape[0], in_shape[1])).to(device)
    b = freeze(build_model(arch, 10, in_shape[0], in_shape[1])).to(device)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *in_shape)).astype(np.float32)
    y = rng.integers(0, 10, size=n).astype(np.int64)
    return a, b, x, y, layer_shapes(a, in_shape, device)


def _stitches(pairs, shapes, device):
    g = torch.Generator().manual_seed(1)
    return {Cell("tlm", la, lb): Stitch(shapes[la], shapes[lb], g).to(device) for la, lb in pairs}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(a, b, pairs, shapes, x, y, cfg, device, stacked: bool) -> float:
    stitches = _stitches(pairs, shapes, device)
    _sync(device)
    start = time.perf_counter()
    train_stitches(a, b, stitches, x, y, cfg, device, stacked=stacked)
    _sync(device)
    return time.perf_counter() - start


def _time_floor(b, pairs, shapes, n: int, cfg: TLMConfig, device: torch.device) -> float:
    """Wall time of the work no schedule can skip: each stitched image through B's back half and back.

    The stacked batches come from the stacked loop's own grouping (``group_by_back``), so this
    is that loop minus A's front pass, the stitches and the optimizer.
    """
    groups = group_by_back([Cell("tlm", la, lb) for la, lb in pairs], b.layer_names, cfg.max_stack)
    gen = torch.Generator().manual_seed(2)
    z = [(lb, torch.randn(len(g) * cfg.batch_size, *shapes[lb], generator=gen).to(device).requires_grad_(True)) for lb, g in groups]
    y = torch.randint(0, 10, (max(len(zl) for _, zl in z),), generator=gen).to(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(cfg.epochs * math.ceil(n / cfg.batch_size)):
        for lb, zl in z:
            zl.grad = None
            F.cross_entropy(b.forward_from(zl, lb), y[: len(zl)]).backward()
    _sync(device)
    return time.perf_counter() - start


def _flop_ratio(a, b, pairs, shapes, x, y, batch: int, device: torch.device) -> float:
    """FLOPs of one training step of every stitch: one at a time / stacked."""
    flops = {}
    for stacked in (False, True):
        stitches = _stitches(pairs, shapes, device)
        with FlopCounterMode(display=False) as counter:
            train_stitches(a, b, stitches, x[:batch], y[:batch], TLMConfig.make(epochs=1, batch_size=batch), device, stacked=stacked)
        flops[stacked] = counter.get_total_flops()
    return flops[False] / flops[True]


def run_case(name: str, arch: str, in_shape, pairs_fn, n: int, epochs: int, batch: int, device: torch.device) -> float:
    a, b, x, y, shapes = _setup(arch, in_shape, n, device)
    pairs = pairs_fn(a.layer_names)
    cfg = TLMConfig.make(epochs=epochs, batch_size=batch, lr=1e-3, seed=0)
    # warm-up (allocator, cuDNN / oneDNN kernel choice) on a few images, not timed
    _time(a, b, pairs[:2], shapes, x[: 2 * batch], y[: 2 * batch], TLMConfig.make(epochs=1, batch_size=batch), device, True)
    work = epochs * n * len(pairs)
    t_one = _time(a, b, pairs, shapes, x, y, cfg, device, stacked=False)
    t_stk = _time(a, b, pairs, shapes, x, y, cfg, device, stacked=True)
    t_floor = _time_floor(b, pairs, shapes, n, cfg, device)
    flop_ratio = _flop_ratio(a, b, pairs, shapes, x, y, batch, device)
    print(
        f"{name}  [{device.type}, {len(pairs)} stitches x {n} images x {epochs} ep, batch {batch}]\n"
        f"    one-at-a-time {t_one:7.2f} s ({work / t_one:10,.0f} img*stitch/s)\n"
        f"    stacked       {t_stk:7.2f} s ({work / t_stk:10,.0f} img*stitch/s)   ratio {t_one / t_stk:5.2f}x\n"
        f"    floor         {t_floor:7.2f} s (back halves only)      ceiling {t_one / t_floor:5.2f}x, "
        f"stacked at {t_floor / t_stk:4.0%} of floor speed; FLOP ratio {flop_ratio:4.2f}x"
    )
    return t_one / t_stk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 2 min on 2 CPU cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cuda-only", action="store_true", help="skip the CPU cases (a lent GPU machine's time is short)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")

    def grid(names):
        return [(la, lb) for la in names for lb in names]

    def row(names):
        return [("conv3", lb) for lb in names]

    cpu = torch.device("cpu")
    n_cpu = 512 if args.quick else 2048
    # the laptop default: batch 64, every layer pair of smallcnn on MNIST-sized inputs
    if not args.cuda_only:
        run_case("smallcnn 6x6 grid (default pipeline)", "smallcnn", (1, 28, 28), grid, n_cpu, 1, 64, cpu)
        run_case("smallcnn row conv3 -> all", "smallcnn", (1, 28, 28), row, n_cpu, 1, 64, cpu)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        n_gpu = 4096 if args.quick else 20480
        run_case("smallcnn 6x6 grid, batch 256", "smallcnn", (1, 28, 28), grid, n_gpu, 1, 256, gpu)
        run_case("resnet20 10x10 grid, 32x32x3, batch 256", "resnet20", (3, 32, 32), grid, n_gpu, 1, 256, gpu)


if __name__ == "__main__":
    main()
