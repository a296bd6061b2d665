"""The similarity stages (pair -> aggregate -> figures), the only functions the similarity scripts call.

Each reads its inputs, runs the maths (:mod:`.grid`) and writes atomically through
:mod:`repmatch.io`. Every parameter is keyword-only: the scripts name each setting section and
path, so no call can swap two of the same type. The sanity tests of the indices live in the cross-family :mod:`repmatch.sanity`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..io import concat_tables, read_table, write_table
from ..settings import SimilaritySettings, UncertaintySettings
from ..tables import COLUMNS, KEY_COLUMNS

PathLike = str | os.PathLike[str]


def pair_stage(
    *, settings: SimilaritySettings, uncertainty: UncertaintySettings, device_spec: str, model_a: str, model_b: str,
    cache_a: PathLike, cache_b: PathLike, out: PathLike, log: logging.Logger,
) -> pd.DataFrame:  # fmt: skip
    """One model pair: every configured measure on every layer pair, written as parquet.

    With ``uncertainty.bootstrap`` > 0 the probe rows are resampled (one shared set of resamples
    for every layer and measure of the pair, :func:`repmatch.similarity.bootstrap_similarity_grids`)
    and every cell gets ``ci_low, ci_high, n_boot, p_column, p_row`` (``repmatch.tables.BOOTSTRAP_COLUMNS``);
    measures left out (``uncertainty.bootstrap_measures``) or ``bootstrap = 0`` give NaN and ``n_boot = 0``.
    """
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
        token_mode=settings.token_mode,
    )  # fmt: skip
    point_s = time.perf_counter() - start
    log.info("%s vs %s: %d values (%d NaN) for %s on %s in %.2f s (conv_mode=%s)", model_a, model_b, len(df),
             int(df["value"].isna().sum()), ",".join(settings.measures), device, point_s, settings.conv_mode)  # fmt: skip
    df = add_bootstrap_columns(df, acts_a, acts_b, model_a, model_b, settings, uncertainty, device, log)
    write_table(df, out)
    return df


def add_bootstrap_columns(
    df: pd.DataFrame, acts_a: Mapping[str, object], acts_b: Mapping[str, object], model_a: str, model_b: str,
    settings: SimilaritySettings, uncertainty: UncertaintySettings, device: object, log: logging.Logger,
) -> pd.DataFrame:  # fmt: skip
    """The point table with ``repmatch.tables.BOOTSTRAP_COLUMNS`` merged in (one-to-one on keys + method)."""
    from .bootstrap import bootstrap_similarity_grids, uncertainty_table
    from .registry import get_measure

    measures = uncertainty.bootstrapped(settings.measures)
    if not measures:
        out = df.assign(ci_low=float("nan"), ci_high=float("nan"), n_boot=0, p_column=float("nan"), p_row=float("nan"))
        return out[COLUMNS["similarity"]]
    start = time.perf_counter()
    same = model_a == model_b
    res = bootstrap_similarity_grids(
        acts_a, acts_a if same else acts_b, measures, n_boot=uncertainty.bootstrap, seed=uncertainty.seed,
        conv_mode=settings.conv_mode, params=settings.measure_params, dtype=settings.precision, device=device,
        same_model=same, reverse=not same, token_mode=settings.token_mode,
    )  # fmt: skip
    boot = uncertainty_table(res, model_a, model_b, list(acts_a), list(acts_a if same else acts_b), level=uncertainty.level,
                             larger_is_similar={m: get_measure(m).larger_is_similar for m in measures})  # fmt: skip
    keys = [*KEY_COLUMNS, "method"]
    out = df.merge(boot, on=keys, how="left", validate="one_to_one")
    if len(out) != len(df):
        raise RuntimeError(f"bootstrap rows do not match the point table of {model_a} vs {model_b}")
    out["n_boot"] = out["n_boot"].fillna(0).astype("int64")
    log.info("%s vs %s: bootstrap B=%d (%s path) of %s in %.2f s; %d cells without a finite interval", model_a, model_b,
             res.n_boot, res.path, ",".join(measures), time.perf_counter() - start,
             int(out.loc[out["method"].isin(measures), "ci_low"].isna().sum()))  # fmt: skip
    return out[COLUMNS["similarity"]]


def aggregate_stage(*, pair_tables: Sequence[PathLike], out: PathLike, log: logging.Logger) -> pd.DataFrame:
    """Concatenate the per-pair tables into one tidy table."""
    df = concat_tables(pair_tables, out, COLUMNS["similarity"])
    log.info("aggregated %d rows from %d pair tables", len(df), len(pair_tables))
    return df


def figures_stage(*, settings: SimilaritySettings, uncertainty: UncertaintySettings, table: PathLike,
                  outputs: Mapping[str, PathLike], log: logging.Logger) -> list[Path]:  # fmt: skip
    """Heatmaps of every measure; ``outputs`` maps ``<measure>_<kind>_<fmt>`` to paths (``repmatch.paths``);
    the cross-seed figure's intervals over pairs use ``uncertainty.level``."""
    from ..plotting import stem
    from .plots import FIGURE_KINDS, PLOTS, stored_grids

    df = read_table(table)
    written: list[Path] = []
    for measure in settings.measures:
        grids = stored_grids(df, measure)  # pivoted once, shared by the measure's figures
        for kind in FIGURE_KINDS:
            extra = {"level": uncertainty.level} if kind == "cross_seed" else {}
            written += PLOTS[kind](df, measure, stem(outputs[f"{measure}_{kind}_png"]), grids=grids, **extra)
    missing = sorted({str(p) for p in outputs.values()} - {str(p) for p in written})
    if missing:
        raise RuntimeError(f"similarity figures not produced: {missing}")
    log.info("wrote %d figure files", len(written))
    return written
