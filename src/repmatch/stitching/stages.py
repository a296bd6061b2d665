"""File-level stitching stages called by the thin Snakemake scripts (I/O lives here, maths elsewhere).

Every output is written atomically (``repmatch.io``): a killed job never leaves a table that
looks finished.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..device import resolve_device
from ..io import concat_tables, read_table, write_table
from ..logs import job_logger
from ..models import load_checkpoint
from ..naming import parse_pair_id
from .analysis import accuracy_vs_layer_distance, more_similar_than_itself, summary_counts
from .grid import COLUMNS, StitchingConfig, stitch_pair

PathLike = str | os.PathLike[str]


def pair_stage(
    pair: str,
    data_cfg: Mapping[str, Any],
    stitch_cfg: Mapping[str, Any],
    device_spec: str,
    split_json: PathLike,
    checkpoint_a: PathLike,
    checkpoint_b: PathLike,
    out: PathLike,
    log_file: PathLike | None = None,
    threads: int | None = None,
    model_layers: str | Sequence[str] = "all",
) -> pd.DataFrame:
    """The whole stitching grid of one ordered model pair -> ``results/stitching/pairs/{pair}.parquet``."""
    from ..pipeline import load_recorded_split  # the backbone's split check (imported late: heavy)

    log = job_logger("stitching", log_file)
    if threads:
        torch.set_num_threads(int(threads))
    model_a, model_b = parse_pair_id(pair)
    cfg = StitchingConfig.from_mapping(stitch_cfg, model_layers)
    splits = load_recorded_split(data_cfg, split_json)
    device = resolve_device(device_spec)
    net_a, net_b = load_checkpoint(checkpoint_a, device), load_checkpoint(checkpoint_b, device)
    log.info("stitching %s -> %s on %s (%d train / %d test samples, methods %s)",
             model_a, model_b, device, len(splits.train), len(splits.test), ",".join(cfg.methods))
    table = stitch_pair(net_a, net_b, splits.train, splits.test, cfg, device, (model_a, model_b), log)
    write_table(table, out)
    return table


def aggregate_stage(pair_tables: Sequence[PathLike], out: PathLike) -> pd.DataFrame:
    """Concatenate the per-pair tables (refusing tables that lack the tidy columns)."""
    return concat_tables(pair_tables, out, COLUMNS)


def analysis_stage(table: PathLike, more_similar_csv: PathLike, distance_csv: PathLike, summary_csv: PathLike | None = None) -> None:
    """The paper's analyses: "more similar than itself" counts and accuracy vs layer distance."""
    df = read_table(table)
    more = more_similar_than_itself(df, "accuracy")
    write_table(more, more_similar_csv)
    write_table(accuracy_vs_layer_distance(df, "accuracy"), distance_csv)
    if summary_csv:
        write_table(summary_counts(more), summary_csv)


def figures_stage(table: PathLike, distance_csv: PathLike, outputs: Mapping[str, PathLike]) -> list[Path]:
    """Draw the figures named in ``outputs`` (keys: within_png/pdf, cross_png/pdf, distance_png/pdf)."""
    from .plots import plot_accuracy_grids, plot_distance_curves  # matplotlib only here

    df = read_table(table)
    written: list[Path] = []
    for kind in ("within", "cross"):
        if f"{kind}_png" in outputs:
            written += plot_accuracy_grids(df, kind, _stem(outputs[f"{kind}_png"]))
    if "distance_png" in outputs:
        written += plot_distance_curves(read_table(distance_csv), _stem(outputs["distance_png"]))
    return written


def _stem(path: PathLike) -> str:
    return str(Path(path).with_suffix(""))
