"""The stitching stages (pair -> aggregate -> analysis -> figures), the only functions the
stitching scripts call. I/O lives here, maths elsewhere; every output is written atomically.
Every parameter is keyword-only: the scripts name each setting section and path, so no call can
swap two of the same type."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..io import concat_tables, read_table, write_table
from ..settings import DataSettings, StitchingSettings, UncertaintySettings
from ..tables import COLUMNS

PathLike = str | os.PathLike[str]


def pair_stage(
    *, settings: StitchingSettings, data: DataSettings, layers: Sequence[str], device_spec: str, model_a: str, model_b: str,
    split_json: PathLike, checkpoints: tuple[PathLike, PathLike], metrics: tuple[PathLike, PathLike], out: PathLike,
    log: logging.Logger, uncertainty: UncertaintySettings | None = None,
) -> pd.DataFrame:  # fmt: skip
    """The whole stitching grid of one ordered model pair, as one tidy table."""
    import torch

    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..networks.checkpoints import load_trained
    from .grid import stitch_pair

    torch.set_num_threads(settings.threads)
    splits = load_recorded_split(data, split_json)
    device = resolve_device(device_spec)
    net_a, net_b = (load_trained(c, m, device) for c, m in zip(checkpoints, metrics))
    log.info("stitching %s -> %s on %s (%d train / %d test samples, methods %s)",
             model_a, model_b, device, len(splits.train), len(splits.test), ",".join(settings.methods))
    table = stitch_pair(net_a, net_b, splits.train, splits.test, settings, layers, device, (model_a, model_b), log,
                        uncertainty)
    write_table(table, out)
    return table


def aggregate_stage(*, pair_tables: Sequence[PathLike], out: PathLike, log: logging.Logger) -> pd.DataFrame:
    """Concatenate the per-pair tables (refusing tables that lack the tidy columns)."""
    table = concat_tables(pair_tables, out, COLUMNS["stitching"])
    log.info("%d rows from %d pair tables", len(table), len(pair_tables))
    return table


def distance_stage(*, table: PathLike, out: PathLike, log: logging.Logger) -> pd.DataFrame:
    """The paper's accuracy vs layer distance table."""
    from .analysis import accuracy_vs_layer_distance

    dist = accuracy_vs_layer_distance(read_table(table), "accuracy")
    write_table(dist, out)
    log.info("wrote %s", out)
    return dist


def figures_stage(*, table: PathLike, distance_csv: PathLike, outputs: Mapping[str, PathLike], log: logging.Logger) -> list[Path]:
    """Draw the figures named in ``outputs`` (``repmatch.paths.stitching_figure_names`` + format)."""
    from ..plotting import stem
    from .plots import plot_accuracy_grids, plot_accuracy_vs_ood, plot_distance_curves, plot_ood_grids

    df = read_table(table)
    written: list[Path] = []
    for kind in ("within", "cross"):
        if f"{kind}_accuracy_grids_png" in outputs:
            written += plot_accuracy_grids(df, kind, stem(outputs[f"{kind}_accuracy_grids_png"]))
            written += plot_ood_grids(df, kind, stem(outputs[f"{kind}_ood_grids_png"]))
    written += plot_distance_curves(read_table(distance_csv), stem(outputs["accuracy_vs_layer_distance_png"]))
    written += plot_accuracy_vs_ood(df, stem(outputs["accuracy_vs_ood_png"]))
    log.info("wrote %d figure files", len(written))
    return written
