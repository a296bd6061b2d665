"""repmatch.uncertainty: intervals and tests behind every number.

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

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "resample": ["bootstrap_counts", "bootstrap_indices"],
    "similarity_bootstrap": ["BootstrapGrids", "bootstrap_similarity_grids", "counterpart_pvalues", "interval_table",
                             "uncertainty_table"],
    "intervals": ["AcrossPairs", "across_pairs", "bootstrap_mean_interval", "clopper_pearson_interval",
                  "percentile_interval", "t_interval", "t_interval_from_summary", "wilson_interval"],
    "significance": ["BinomialVsChance", "McNemarResult", "SelfSimilarityCounts", "binomial_test_vs_chance", "holm",
                     "mcnemar_one_sided_pvalue", "mcnemar_pvalue", "mcnemar_test", "more_similar_than_itself_counts",
                     "more_similar_than_itself_stitching", "paired_bootstrap_pvalue", "permutation_test"],
})  # fmt: skip
