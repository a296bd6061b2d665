"""The per-pair similarity job as a plain function (called by the thin Snakemake script and by tests).

It reads the two activation caches, runs the grid engine, and writes atomically through
:mod:`repmatch.io`. The torch-free steps (aggregate, sanity, figures) live in :mod:`.summary`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from ..activations import ActivationCache, open_pair
from ..device import resolve_device
from ..io import write_table
from ..logs import job_logger
from .grid import similarity_table
from .registry import check_measures

PathLike = str | os.PathLike[str]
#: Config keys handed to the measures as parameters.
PARAM_KEYS = ("rbf_sigma", "svcca_variance", "minibatch_size")


def pair_table_from_caches(cache_a: PathLike, cache_b: PathLike, model_a: str, model_b: str, cfg: Mapping[str, Any],
                           device: torch.device) -> pd.DataFrame:
    """Tidy similarity table of two activation caches (one cache when the models are the same)."""
    if model_a == model_b:
        ca = cb = ActivationCache(cache_a)
    else:
        ca, cb = open_pair(cache_a, cache_b)
    acts_a = ca.load_all()
    acts_b = acts_a if ca is cb else cb.load_all()
    return similarity_table(
        acts_a, acts_b, model_a, model_b, cfg["measures"], conv_mode=cfg.get("conv_mode", "gap"), device=device,
        params={k: cfg[k] for k in PARAM_KEYS if k in cfg}, on_degenerate=cfg.get("on_degenerate", "nan"),
        dtype=cfg.get("precision", "float64"),
    )


def similarity_pair_stage(cache_a: PathLike, cache_b: PathLike, model_a: str, model_b: str, cfg: Mapping[str, Any],
                          device_spec: str, out: PathLike, log_file: PathLike | None = None, threads: int = 1) -> pd.DataFrame:
    """One model pair: every configured measure on every layer pair, written as parquet."""
    log = job_logger("similarity", log_file)
    torch.set_num_threads(max(1, int(threads)))
    check_measures(cfg["measures"])
    device = resolve_device(device_spec)
    start = time.perf_counter()
    df = pair_table_from_caches(cache_a, cache_b, model_a, model_b, cfg, device)
    write_table(df, out)
    n_nan = int(df["value"].isna().sum())
    log.info("%s vs %s: %d values (%d NaN) for %s on %s in %.2f s (conv_mode=%s)", model_a, model_b, len(df), n_nan,
             ",".join(cfg["measures"]), device, time.perf_counter() - start, cfg.get("conv_mode", "gap"))
    return df
