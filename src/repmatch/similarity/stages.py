"""The similarity stages (pair -> aggregate -> figures), the only functions the similarity scripts call.

Each reads its inputs, runs the maths (:mod:`.grid`) and writes atomically through
:mod:`repmatch.io`. The sanity tests of the indices live in the cross-family :mod:`repmatch.sanity`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..io import concat_tables, read_table, write_table
from ..settings import SimilaritySettings
from ..tables import COLUMNS

PathLike = str | os.PathLike[str]


def pair_stage(
    settings: SimilaritySettings, device_spec: str, model_a: str, model_b: str, cache_a: PathLike, cache_b: PathLike,
    out: PathLike, log: logging.Logger,
) -> pd.DataFrame:  # fmt: skip
    """One model pair: every configured measure on every layer pair, written as parquet."""
    import torch

    from ..backbone.activations import ActivationCache, open_pair
    from ..device import resolve_device
    from .grid import similarity_table

    torch.set_num_threads(settings.threads)
    device = resolve_device(device_spec)
    start = time.perf_counter()
    if model_a == model_b:
        ca = cb = ActivationCache(cache_a)
    else:
        ca, cb = open_pair(cache_a, cache_b)
    acts_a = ca.load_all()
    acts_b = acts_a if ca is cb else cb.load_all()
    df = similarity_table(
        acts_a, acts_b, model_a, model_b, settings.measures, conv_mode=settings.conv_mode, device=device,
        params=settings.measure_params, on_degenerate=settings.on_degenerate, dtype=settings.precision,
    )  # fmt: skip
    write_table(df, out)
    log.info("%s vs %s: %d values (%d NaN) for %s on %s in %.2f s (conv_mode=%s)", model_a, model_b, len(df),
             int(df["value"].isna().sum()), ",".join(settings.measures), device, time.perf_counter() - start, settings.conv_mode)
    return df


def aggregate_stage(pair_tables: Sequence[PathLike], out: PathLike, log: logging.Logger) -> pd.DataFrame:
    """Concatenate the per-pair tables into one tidy table."""
    df = concat_tables(pair_tables, out, COLUMNS["similarity"])
    log.info("aggregated %d rows from %d pair tables", len(df), len(pair_tables))
    return df


def figures_stage(settings: SimilaritySettings, table: PathLike, outputs: Mapping[str, PathLike], log: logging.Logger) -> list[Path]:
    """Heatmaps of every measure; ``outputs`` maps ``<measure>_<kind>_<fmt>`` to paths (``repmatch.paths``)."""
    from ..plotting import stem
    from .plots import FIGURE_KINDS, PLOTS

    df = read_table(table)
    written: list[Path] = []
    for measure in settings.measures:
        for kind in FIGURE_KINDS:
            written += PLOTS[kind](df, measure, stem(outputs[f"{measure}_{kind}_png"]))
    missing = sorted({str(p) for p in outputs.values()} - {str(p) for p in written})
    if missing:
        raise RuntimeError(f"similarity figures not produced: {missing}")
    log.info("wrote %d figure files", len(written))
    return written
