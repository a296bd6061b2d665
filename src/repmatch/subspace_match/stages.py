"""The subspace-match stages (pair -> aggregate -> figures), the only functions the subspace
scripts call: read the activation caches of a model pair, compare the configured layer pairs,
write tidy tables atomically; aggregate; draw the figures. Every stage's parameters are
keyword-only: the scripts name each setting section and path, so no call can swap two of the same type."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence

import pandas as pd

from ..io import concat_tables, read_table, write_table
from ..settings import SubspaceSettings
from ..tables import COLUMNS, frame, layer_key

PathLike = str | os.PathLike[str]


def compare_model_pair(
    model_a: str, model_b: str, path_a: PathLike, path_b: PathLike, settings: SubspaceSettings, device: object,
    log: logging.Logger | None = None, *, level: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Both tidy tables (matches, simple matches) for one model pair's activation caches; ``level``:
    confidence level of the intervals over coordinate draws (``uncertainty.level``)."""
    from ..backbone.activations import open_pair
    from .compare import compare_layers, layer_pairs
    from .tables import match_rows, simple_rows

    cache_a, cache_b = open_pair(path_a, path_b)  # refuses mismatched / reordered probe samples
    index_a = {name: i for i, name in enumerate(cache_a.layers)}
    index_b = {name: i for i, name in enumerate(cache_b.layers)}
    pairs = layer_pairs(cache_a.layers, cache_b.layers, settings.layer_pairs)
    if model_a == model_b and settings.layer_pairs == "all":
        pairs = [(la, lb) for la, lb in pairs if index_a[la] <= index_b[lb]]  # symmetric within a network
    match, simple = [], []
    for la, lb in pairs:
        start = time.perf_counter()
        res = compare_layers(cache_a.load(la), cache_b.load(lb), settings, f"{la}|{lb}", device)
        key = layer_key(model_a, la, index_a[la], model_b, lb, index_b[lb])
        match += match_rows(key, res, level=level)
        simple += simple_rows(key, res)
        if log is not None:
            sims = ", ".join(f"ε={e:g}: {sum(v) / len(v):.3f}" for e, v in res.similarity.items())
            log.info("%s/%s vs %s/%s: D=%d R=%d whole-layer ε=%.3f; similarity %s; %d simple matches (%.1f s)",
                     model_a, la, model_b, lb, res.n_coords, res.repeats, sum(res.whole_layer_eps) / res.repeats, sims,
                     len(res.simple), time.perf_counter() - start)  # fmt: skip
    return frame(match, "subspace_match"), frame(simple, "subspace_simple")


def pair_stage(
    *, settings: SubspaceSettings, device_spec: str, model_a: str, model_b: str, cache_a: PathLike, cache_b: PathLike,
    out_table: PathLike, out_simple: PathLike, log: logging.Logger, level: float,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """One model pair: compare it and write its two tables atomically (``level``: ``uncertainty.level``)."""
    import torch

    from ..device import resolve_device

    torch.set_num_threads(settings.threads)
    device = resolve_device(device_spec)
    log.info("subspace match %s vs %s on %s with %s", model_a, model_b, device, dataclasses.asdict(settings))
    match, simple = compare_model_pair(model_a, model_b, cache_a, cache_b, settings, device, log, level=level)
    write_table(match, out_table)
    write_table(simple, out_simple)
    return match, simple


def aggregate_stage(
    *, tables: Sequence[PathLike], simple_tables: Sequence[PathLike], out_table: PathLike, out_simple: PathLike,
    log: logging.Logger,
) -> None:  # fmt: skip
    """Concatenate the per-pair match and simple-match tables."""
    match = concat_tables(tables, out_table, COLUMNS["subspace_match"])
    simple = concat_tables(simple_tables, out_simple, COLUMNS["subspace_simple"])
    log.info("aggregated %d pair tables: %d match rows, %d simple matches", len(tables), len(match), len(simple))


def figures_stage(*, table: PathLike, simple: PathLike, outputs: Mapping[str, PathLike], log: logging.Logger,
                  level: float) -> None:  # fmt: skip
    """The ε sweep figure (bands: ``level`` t interval over network pairs) and the simple-match size
    histogram (``repmatch.paths.SUBSPACE_FIGURE_NAMES``)."""
    from ..plotting import stem
    from .plots import plot_max_match_vs_eps, plot_simple_match_sizes

    written = plot_max_match_vs_eps(read_table(table), stem(outputs["max_match_vs_eps_png"]), level=level)
    written += plot_simple_match_sizes(read_table(simple), stem(outputs["simple_match_sizes_png"]))
    log.info("wrote %s", ", ".join(map(str, written)))
