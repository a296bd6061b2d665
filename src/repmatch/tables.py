"""The tidy long tables every family writes: one definition of the key columns, and each family's own.

Why one definition: any family's results can then be concatenated, joined or compared in one
table (``pd.concat`` of a similarity and a stitching table keeps the same key columns), and the
cross-family sanity module reads all of them with one piece of code.

A row is one observation of one layer pair: ``model_a/layer_a/index_a`` (the front network and
its layer, ``index_*`` = the layer's position in network order), ``model_b/layer_b/index_b``,
``method`` (measure or stitching method), ``value``, plus family-specific columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

KEY_COLUMNS = ["model_a", "layer_a", "index_a", "model_b", "layer_b", "index_b"]
TIDY_COLUMNS = [*KEY_COLUMNS, "method", "value"]
#: What the probe-sample bootstrap adds to a similarity cell: the percentile interval,
#: the number of finite resamples, and the one-sided paired-bootstrap p-values of "this cell is
#: more similar than its column's / row's counterpart (same-named layer)". NaN / 0 when not bootstrapped.
BOOTSTRAP_COLUMNS = ["ci_low", "ci_high", "n_boot", "p_column", "p_row"]

#: The columns each family's per-pair and aggregated tables hold, in order.
COLUMNS: dict[str, list[str]] = {
    "similarity": [*TIDY_COLUMNS, "conv_mode", *BOOTSTRAP_COLUMNS],
    "stitching": [*KEY_COLUMNS, "method", "metric", "value", "ci_low", "ci_high", "p_column", "p_row"],
    "subspace_match": [*KEY_COLUMNS, "method", "eps", "value", "value_std", "repeats", "n_coords", "d_a", "d_b",
                       "matched_a", "matched_b", "live_a", "live_b", "chance_value", "chance_std", "ci_low", "ci_high"],
    "subspace_simple": [*KEY_COLUMNS, "method", "eps", "repeat", "value", "size_a", "size_b", "neurons_a", "neurons_b",
                        "found_from", "n_coords", "d_a", "d_b", "mode", "complete"],
    # one network's layer at rank r vs full rank; method = a functional score
    # (probe_accuracy, network_accuracy), DM (dm_accuracy, dm_repr_diff) or a similarity measure;
    # dissimilarity = the drop from full rank (scores, dm_accuracy), or the index as a dissimilarity
    "sensitivity": ["model", "layer", "index", "rank", "full_rank", "variance_kept", "method", "value", "dissimilarity"],
    # the rank-r front of A's layer into B's same layer (A = B included): method = dm_/tlm_accuracy,
    # dm_/tlm_repr_diff or a measure (B full vs A rank r); distance = the value as a dissimilarity to B
    # (stitched accuracy: b_accuracy - value); dissimilarity = distance - distance at full rank
    "sensitivity_pair": ["model_a", "model_b", "layer", "index", "rank", "full_rank", "variance_kept", "method", "value",
                         "distance", "dissimilarity", "b_accuracy"],
}  # fmt: skip


def layer_key(model_a: str, layer_a: str, index_a: int, model_b: str, layer_b: str, index_b: int) -> dict[str, Any]:
    """The key columns of one layer pair as a row fragment."""
    return dict(zip(KEY_COLUMNS, (model_a, layer_a, int(index_a), model_b, layer_b, int(index_b))))


def frame(rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]], family: str) -> pd.DataFrame:
    """A family's table with its fixed column order, also when empty (aggregation keeps the schema)."""
    return pd.DataFrame(list(rows), columns=COLUMNS[family])
