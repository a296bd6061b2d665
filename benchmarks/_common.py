"""Helpers shared by the benchmark scripts (imported as ``from _common import ...``: scripts run
as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``). No numpy/torch at import:
``early_threads`` must act before they load their thread pools."""

from __future__ import annotations

import os
import sys


def early_threads(argv: list[str] | None = None) -> int:
    """The ``--threads N`` of the command line, exported to the BLAS/OpenMP variables before numpy or
    torch start their thread pools (a later ``torch.set_num_threads`` does not reach numpy)."""
    argv = sys.argv[1:] if argv is None else argv
    threads = 1
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            threads = int(argv[i + 1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
    if threads > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    return threads


def synthetic_layers(n: int, widths: list[int], offset: float, seed: int = 0):
    """Two 'networks' of float32 (n, d) layers: a shared random signal through random ReLU maps, + noise
    and ``offset`` (a large offset tests that centring happens before any product)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 32)).astype(np.float32)
    models = []
    for _ in range(2):
        h, layers = z, {}
        for k, w in enumerate(widths):
            h = np.maximum(h @ rng.standard_normal((h.shape[1], w)).astype(np.float32) / np.sqrt(h.shape[1]), 0)
            layers[f"layer{k}"] = (h + 0.1 * rng.standard_normal(h.shape).astype(np.float32) + offset).astype(np.float32)
        models.append(layers)
    return models[0], models[1]
