"""repmatch.uncertainty: the generic statistics behind every interval and test (foundation level).

Modules (pure functions: arrays in, arrays / small dataclasses out; no config dicts, no I/O):

* :mod:`.resample` — seeded bootstrap draws of probe rows (indices and multiplicities);
* :mod:`.intervals` — percentile, t (over seeds / pairs / coordinate draws), Wilson and
  Clopper-Pearson intervals;
* :mod:`.significance` — McNemar (exact, mid-p, one-sided), Holm, binomial test vs chance, paired
  bootstrap p-values (per cell against its counterpart too), permutation test.

Why it imports no method family: similarity, stitching and subspace match (and the sanity
tables) use these statistics; the similarity bootstrap itself, which needs every measure's maths,
lives in ``repmatch.similarity.bootstrap``.
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "resample": ["bootstrap_counts", "bootstrap_indices"],
    "intervals": ["AcrossPairs", "across_pairs", "bootstrap_mean_interval", "clopper_pearson_interval",
                  "percentile_interval", "t_interval", "t_interval_from_summary", "wilson_interval"],
    "significance": ["BinomialVsChance", "McNemarResult", "binomial_test_vs_chance", "counterpart_pvalues", "holm",
                     "mcnemar_one_sided_pvalue", "mcnemar_pvalue", "mcnemar_test", "paired_bootstrap_pvalue",
                     "permutation_test"],
})  # fmt: skip
