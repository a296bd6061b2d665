"""repmatch.uncertainty: intervals and tests behind every number (issue 14).

Modules (pure functions: arrays in, arrays / small dataclasses out; no config dicts, no I/O):

* :mod:`.resample` — seeded bootstrap draws of probe rows (indices and multiplicities);
* :mod:`.similarity_bootstrap` — probe-sample bootstrap of every similarity grid: replicates
  (B, L_a, L_b) per measure from one shared set of resamples, computed from weighted moments
  in a few batched matmuls, with a generic per-resample fallback through the grid engine;
* :mod:`.intervals` — percentile, t (over seeds / pairs / coordinate draws), Wilson and
  Clopper-Pearson intervals;
* :mod:`.significance` — McNemar (exact, mid-p), Holm, binomial test vs chance, paired bootstrap
  p-values, the "more similar than itself" raw / significant counts, permutation test.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "bootstrap_indices": "resample", "bootstrap_counts": "resample",
    "BootstrapGrids": "similarity_bootstrap", "bootstrap_similarity_grids": "similarity_bootstrap",
    "interval_table": "similarity_bootstrap",
    "percentile_interval": "intervals", "t_interval": "intervals", "t_interval_from_summary": "intervals",
    "wilson_interval": "intervals", "clopper_pearson_interval": "intervals", "across_pairs": "intervals",
    "AcrossPairs": "intervals", "bootstrap_mean_interval": "intervals",
    "mcnemar_test": "significance", "holm": "significance", "binomial_test_vs_chance": "significance",
    "paired_bootstrap_pvalue": "significance", "more_similar_than_itself_counts": "significance",
    "permutation_test": "significance", "McNemarResult": "significance", "SelfSimilarityCounts": "significance",
    "BinomialVsChance": "significance", "mcnemar_pvalue": "significance",
    "mcnemar_one_sided_pvalue": "significance", "more_similar_than_itself_stitching": "significance",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
