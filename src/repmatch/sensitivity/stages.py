"""The sensitivity stages: the only functions the ``scripts/sensitivity_*.py`` call.

* :func:`sensitivity_stage` (one network): :func:`.within_network.layer_sensitivity` for each tested
  layer; the tidy table (``COLUMNS["sensitivity"]``), the per-index correlations and the curves.
* :func:`pair_stage` (one ordered network pair): :func:`.cross_network.pair_sensitivity`, the rank-r front
  of A into B; the tidy table ``COLUMNS["sensitivity_pair"]``.
* :func:`aggregate_stage` (CPU): units, the per-layer specificity test, the summary table and its figure.

Every output is written atomically. Every parameter is keyword-only: the scripts name each
setting section and path, so no call can swap two of the same type.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence

import pandas as pd

from ..io import write_table
from ..settings import (
    DataSettings,
    DMSettings,
    SensitivitySettings,
    SimilaritySettings,
    StitchingSettings,
)
from ..tables import COLUMNS

PathLike = str | os.PathLike[str]


def sensitivity_stage(
    *, model: str, data: DataSettings, layer_names: Sequence[str], sensitivity: SensitivitySettings,
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
    from ..networks.checkpoints import load_trained
    from ..networks.stitchable import select_layers
    from .correlation import ConstantInputWarning
    from .within_network import layer_sensitivity, summary_table, tidy_rows

    torch.set_num_threads(sensitivity.threads)
    device = resolve_device(device_spec)
    splits = load_recorded_split(data, split_json)
    net = load_trained(checkpoint, metrics_json, device).eval()
    layers = select_layers(net, list(layer_names))
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


def _similarity_kwargs(similarity: SimilaritySettings) -> dict:
    return {"conv_mode": similarity.conv_mode, "params": similarity.measure_params, "on_degenerate": "nan",
            "dtype": similarity.precision}


def pair_stage(
    *, model_a: str, model_b: str, data: DataSettings, layer_names: Sequence[str], sensitivity: SensitivitySettings,
    similarity: SimilaritySettings, stitching: StitchingSettings, device_spec: str, split_json: PathLike,
    checkpoints: tuple[PathLike, PathLike], metrics: tuple[PathLike, PathLike], table: PathLike, log: logging.Logger,
) -> pd.DataFrame:  # fmt: skip
    """One ordered pair: DM and TLM from A's rank-r layers into B's, and every measure; writes ``table``.

    TLM runs ``sensitivity.tlm_epochs`` (null: ``stitching.tlm.epochs``) on ``sensitivity.tlm_n_train``
    samples (null: ``stitching.tlm.n_train``) with the rest of ``stitching.tlm``; DM uses
    ``stitching.dm.ridge``; batches are ``stitching.batch_size`` (DM pass, scoring, probe set).
    """
    import dataclasses

    import torch

    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..networks.checkpoints import load_trained
    from ..networks.stitchable import select_layers
    from ..stitching.task import TLMConfig
    from .cross_network import pair_sensitivity, tidy_pair_rows

    torch.set_num_threads(sensitivity.threads)
    device = resolve_device(device_spec)
    splits = load_recorded_split(data, split_json)
    net_a = load_trained(checkpoints[0], metrics[0], device).eval()
    net_b = net_a if model_a == model_b else load_trained(checkpoints[1], metrics[1], device).eval()
    layers = select_layers(net_a, list(layer_names))
    tlm = TLMConfig.from_settings(stitching)
    if sensitivity.tlm_epochs is not None:
        tlm = dataclasses.replace(tlm, epochs=sensitivity.tlm_epochs)
    n_train = stitching.tlm.n_train if sensitivity.tlm_n_train is None else sensitivity.tlm_n_train
    measures = list(similarity.measures if sensitivity.measures is None else sensitivity.measures)
    start = time.perf_counter()
    log.info("sensitivity pair %s -> %s on %s: layers %s, stitches %s (TLM %d epochs on %s samples)", model_a, model_b,
             device, layers, list(sensitivity.stitch_methods), tlm.epochs, n_train or len(splits.train))
    rows, b_acc = pair_sensitivity(
        net_a, net_b, layers, train_x=splits.train.x, train_y=splits.train.y, test_x=splits.test.x, test_y=splits.test.y,
        probe_x=splits.probe.x, ranks=sensitivity.ranks_for, measures=measures, methods=list(sensitivity.stitch_methods),
        tlm=tlm, tlm_n_train=n_train, dm_ridge=stitching.dm.ridge, batch_size=stitching.batch_size,
        max_stack=stitching.max_stack, device=device, similarity_kwargs=_similarity_kwargs(similarity), log=log,
    )  # fmt: skip
    df = pd.DataFrame(tidy_pair_rows(model_a, model_b, {layer: net_a.index(layer) for layer in layers}, rows, b_acc),
                      columns=COLUMNS["sensitivity_pair"])
    write_table(df, table)
    log.info("%s -> %s: %d rows in %.1f s (model B accuracy %.4f)", model_a, model_b, len(df), time.perf_counter() - start, b_acc)
    return df


def aggregate_stage(
    *, pair_tables: Sequence[PathLike], network_tables: Sequence[PathLike], sanity_specificity: PathLike | None, level: float,
    units_csv: PathLike, points_csv: PathLike, summary_csv: PathLike, figure_png: PathLike, log: logging.Logger,
    similarity_tables: Sequence[PathLike] = (), layers: Sequence[str] = (), n_permutations: int = 10000, seed: int = 0,
    by_layer_csv: PathLike | None = None, specificity_csv: PathLike | None = None, dm_pair_tables: Sequence[PathLike] = (),
) -> pd.DataFrame:  # fmt: skip
    """Units, the specificity test (per layer, and the stratified mean) and the one summary table
    (CSV), and the sensitivity-specificity figure. The indices' cross-seed distances come from the
    similarity pair tables of every pair of specificity networks, DM's and TLM's from the pair
    jobs' full-rank rows and DM's also from ``dm_pair_tables`` (DM-only, full-rank-only pair jobs of
    the pairs no pair job covers; they enter no sensitivity unit); ``layers`` are the tested layers (every one gets a row, NaN when undefined)."""
    from ..io import read_table
    from ..plotting import stem
    from .aggregate import summary_table, unit_correlations, within_from_networks
    from .correlation import FUNCTIONAL, ConstantInputWarning
    from .plots import plot_sensitivity_specificity
    from .specificity import STITCH_METHODS, index_distances, network_scores, specificity_points, specificity_tables, stitch_distances

    pairs = (pd.concat([read_table(p) for p in pair_tables], ignore_index=True) if pair_tables
             else pd.DataFrame(columns=COLUMNS["sensitivity_pair"]))  # no pair jobs: within rows from the network tables
    networks = pd.concat([read_table(p) for p in network_tables], ignore_index=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConstantInputWarning)
        units = unit_correlations(within_from_networks(pairs, networks), networks)
    if caught:
        nan = sorted(set(units.loc[units["spearman"].isna(), "method"]))
        log.warning("%d sensitivity correlations are NaN (constant index or score; %s)", len(caught), ", ".join(nan))
    layers = list(layers) or list(dict.fromkeys(networks.sort_values("index")["layer"]))
    measures = [m for m in dict.fromkeys(networks["method"]) if m not in (*FUNCTIONAL, *STITCH_METHODS)]  # the network jobs'
    similarity = (pd.concat([read_table(p) for p in similarity_tables], ignore_index=True) if similarity_tables
                  else pd.DataFrame(columns=COLUMNS["similarity"]))  # fmt: skip
    scores = network_scores(networks)
    dm_pairs = [read_table(p) for p in dm_pair_tables]
    stitched = stitch_distances(pd.concat([pairs, *dm_pairs], ignore_index=True) if dm_pairs else pairs)
    points = specificity_points(pd.concat([index_distances(similarity, layers, measures), stitched], ignore_index=True),
                                scores)  # fmt: skip
    by_layer, stratified = specificity_tables(points, scores, level=level, n_permutations=n_permutations, seed=seed,
                                              layers=layers)  # fmt: skip
    sanity = read_table(sanity_specificity) if sanity_specificity else None
    order = list(dict.fromkeys([*pairs["method"], *units["method"], *points["method"]]))
    summary = summary_table(units, stratified, level=level, sanity_specificity=sanity, order=order)
    write_table(units, units_csv)
    write_table(points, points_csv)
    if by_layer_csv is not None:
        write_table(by_layer, by_layer_csv)
    if specificity_csv is not None:
        write_table(stratified, specificity_csv)
    write_table(summary, summary_csv)
    for row in summary.itertuples(index=False):
        log.info("%-20s sensitivity within %.3f [%.3f, %.3f]  cross %.3f [%.3f, %.3f]  specificity (mean over layers, "
                 "probe gap) %.3f [%.3f, %.3f] p = %.3g", row.method, row.sens_within_probe, row.sens_within_probe_low,
                 row.sens_within_probe_high, row.sens_cross_probe, row.sens_cross_probe_low, row.sens_cross_probe_high,
                 row.spec_probe, row.spec_probe_low, row.spec_probe_high, row.spec_probe_p)  # fmt: skip
    plot_sensitivity_specificity(summary, stem(figure_png), by_layer=by_layer, points=points)
    return summary
