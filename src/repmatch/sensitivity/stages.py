"""The sensitivity stage: the only function ``scripts/sensitivity_network.py`` calls.

Reads one trained network and the recorded split, runs :func:`.network.layer_sensitivity` for
each configured layer, and writes the tidy table (``repmatch.tables.COLUMNS["sensitivity"]``)
and the per-index correlation summary (:func:`.network.summary_table`) atomically.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

import pandas as pd

from ..io import write_table
from ..settings import (
    DataSettings,
    DMSettings,
    ModelSettings,
    SensitivitySettings,
    SimilaritySettings,
)
from ..tables import COLUMNS

PathLike = str | os.PathLike[str]


def sensitivity_stage(
    model: str, data: DataSettings, model_settings: ModelSettings, sensitivity: SensitivitySettings,
    similarity: SimilaritySettings, dm: DMSettings, batch_size: int, device_spec: str, split_json: PathLike,
    checkpoint: PathLike, metrics_json: PathLike, table: PathLike, summary: PathLike, log: logging.Logger,
    curves_stem: PathLike | None = None,
) -> pd.DataFrame:  # fmt: skip
    """One network: every layer x rank; writes ``table`` (parquet) and ``summary`` (CSV).

    The basis of each layer is fitted on the training split; probes train on the training split
    and are scored on the test split; the network's and DM's accuracies are on the test split;
    the similarity measures compare full vs rank-r on the probe set (``data.n_probe``).
    ``curves_stem`` given: the per-layer curves as ``<stem>.png`` and ``<stem>.pdf``.
    """
    import torch

    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..models import load_trained, select_layers
    from .correlation import ConstantInputWarning
    from .network import layer_sensitivity, summary_table, tidy_rows

    torch.set_num_threads(sensitivity.threads)
    device = resolve_device(device_spec)
    splits = load_recorded_split(data, split_json)
    net = load_trained(checkpoint, metrics_json, device).eval()
    layers = select_layers(net, model_settings.layers)
    measures = list(similarity.measures if sensitivity.measures is None else sensitivity.measures)
    rows = []
    for layer in layers:
        start = time.perf_counter()
        _, r = layer_sensitivity(
            net, layer, train_x=splits.train.x, train_y=splits.train.y, test_x=splits.test.x, test_y=splits.test.y,
            probe_x=splits.probe.x, ranks=sensitivity.ranks_for, measures=measures, n_classes=splits.num_classes,
            probe_epochs=sensitivity.probe_epochs, probe_lr=sensitivity.probe_lr,
            probe_batch_size=sensitivity.probe_batch_size, probe_weight_decay=sensitivity.probe_weight_decay,
            seed=sensitivity.seed, dm_ridge=dm.ridge, batch_size=batch_size, device=device,
            similarity_kwargs={"conv_mode": similarity.conv_mode, "params": similarity.measure_params,
                               "on_degenerate": "nan", "dtype": similarity.precision},
        )  # fmt: skip
        rows += tidy_rows(model, layer, net.index(layer), r)
        ranks = sorted({x["rank"] for x in r}, reverse=True)
        log.info("%s %s: ranks %s in %.2f s", model, layer, ranks, time.perf_counter() - start)
    df = pd.DataFrame(rows)[COLUMNS["sensitivity"]]
    write_table(df, table)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConstantInputWarning)
        summ = summary_table(df)
    if caught:  # one line, not one per (method, layer): which indices had no ordering to correlate
        nan_methods = sorted(set(summ.loc[summ["spearman"].isna(), "method"]))
        log.warning("%d rank correlations are NaN (constant index or score; %s); e.g. %s", len(caught),
                    ", ".join(nan_methods), caught[0].message)
    write_table(summ, summary)
    if curves_stem is not None:
        from .plots import plot_rank_curves

        plot_rank_curves(df, curves_stem, model=model)
    return df
