"""Pipeline edges of the subspace stage: read the activation caches of a model pair, compare
the configured layer pairs, write tidy tables atomically; aggregate; draw the figures.

Called by the thin Snakemake scripts ``scripts/subspace_*.py`` and by tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from ..activations import open_pair
from ..device import resolve_device
from ..io import concat_tables, write_table
from ..logs import job_logger
from ..naming import pair_id, unordered_pairs
from .compare import compare_layers, layer_pairs
from .tables import MATCH_COLUMNS, SIMPLE_COLUMNS, pair_key, match_rows, simple_rows, to_frame

PathLike = str | os.PathLike[str]

DEFAULTS: dict[str, Any] = {
    "eps": [0.15, 0.2, 0.25, 0.3, 0.5],
    "n_coords": 10_000,
    "repeats": 16,
    "layer_pairs": "corresponding",
    "within_network": False,
    "simple_eps": 0.5,
    "simple_repeats": 1,
    "seed": 0,
    "dtype": "float64",
    "threads": 1,
}
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def settings(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``subspace_match`` config section with defaults filled in; unknown keys are an error."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise KeyError(f"unknown subspace_match config keys {unknown}; known keys are {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    if out["dtype"] not in DTYPES:
        raise ValueError(f"subspace_match.dtype must be one of {sorted(DTYPES)}, got {out['dtype']!r}")
    if not out["eps"]:
        raise ValueError("subspace_match.eps must list at least one ε")
    return out


def model_pairs(models: Sequence[str], within_network: bool = False) -> list[str]:
    """Pair ids compared by the subspace stage: unordered pairs of different networks
    (plus each network with itself when ``within_network``)."""
    return [pair_id(a, b) for a, b in unordered_pairs(list(models)) if within_network or a != b]


def compare_model_pair(
    model_a: str,
    model_b: str,
    path_a: PathLike,
    path_b: PathLike,
    cfg: Mapping[str, Any] | None,
    device: torch.device,
    log: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both tidy tables (matches, simple matches) for one model pair's activation caches."""
    s = settings(cfg)
    cache_a, cache_b = open_pair(path_a, path_b)  # refuses mismatched / reordered probe samples
    index_a = {name: i for i, name in enumerate(cache_a.layers)}
    index_b = {name: i for i, name in enumerate(cache_b.layers)}
    pairs = layer_pairs(cache_a.layers, cache_b.layers, s["layer_pairs"])
    if model_a == model_b and s["layer_pairs"] == "all":
        pairs = [(la, lb) for la, lb in pairs if index_a[la] <= index_b[lb]]  # symmetric within a network
    match, simple = [], []
    for la, lb in pairs:
        start = time.perf_counter()
        res = compare_layers(
            cache_a.load(la), cache_b.load(lb), s["eps"], s["n_coords"], s["repeats"], s["simple_eps"],
            s["simple_repeats"], s["seed"], f"{la}|{lb}", device, DTYPES[s["dtype"]],
        )  # fmt: skip
        key = pair_key(model_a, la, index_a[la], model_b, lb, index_b[lb])
        match += match_rows(key, res)
        simple += simple_rows(key, res)
        if log is not None:
            sims = ", ".join(f"ε={e:g}: {sum(v) / len(v):.3f}" for e, v in res.similarity.items())
            log.info("%s/%s vs %s/%s: D=%d R=%d whole-layer ε=%.3f; similarity %s; %d simple matches (%.1f s)",
                     model_a, la, model_b, lb, res.n_coords, res.repeats, sum(res.whole_layer_eps) / res.repeats, sims,
                     len(res.simple), time.perf_counter() - start)  # fmt: skip
    return to_frame(match, MATCH_COLUMNS), to_frame(simple, SIMPLE_COLUMNS)


def subspace_pair_stage(
    pair: str,
    path_a: PathLike,
    path_b: PathLike,
    cfg: Mapping[str, Any] | None,
    device_spec: str,
    out_table: PathLike,
    out_simple: PathLike,
    log_file: PathLike | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``subspace_pair`` job: compare one model pair and write its two tables atomically."""
    log = job_logger("subspace", log_file)
    s = settings(cfg)
    torch.set_num_threads(int(s["threads"]))
    model_a, model_b = pair.split("__")
    device = resolve_device(device_spec)
    log.info("subspace match %s on %s with %s", pair, device, s)
    match, simple = compare_model_pair(model_a, model_b, path_a, path_b, s, device, log)
    write_table(match, out_table)
    write_table(simple, out_simple)
    return match, simple


def subspace_aggregate_stage(
    tables: Sequence[PathLike], simple_tables: Sequence[PathLike], out_table: PathLike, out_simple: PathLike,
    log_file: PathLike | None = None,
) -> None:
    """The ``subspace_aggregate`` job."""
    log = job_logger("subspace_aggregate", log_file)
    match = concat_tables(tables, out_table, MATCH_COLUMNS)
    simple = concat_tables(simple_tables, out_simple, SIMPLE_COLUMNS)
    log.info("aggregated %d pair tables: %d match rows, %d simple matches", len(tables), len(match), len(simple))
