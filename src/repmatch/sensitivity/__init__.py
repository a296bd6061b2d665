"""repmatch.sensitivity: do the indices track function? (issue 12, Ding et al.'s sensitivity test)

Modules (pure maths: tensors / arrays in, arrays / small dataclasses out):

* :mod:`.lowrank` — a layer's top-r principal directions, fitted once on the training split in
  float64 (streamed covariance), applied to any batch: rank-r representation = mean + projection;
* :mod:`.probe` — linear probe on globally pooled features (Adam, fixed epochs, seeded) and the
  network's own accuracy with a rank-r layer fed forward;
* :mod:`.correlation` — Spearman / Kendall rank correlation of an index's dissimilarity with the
  drop in a functional score, per layer over ranks and pooled; NaN + warning when undefined.
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "lowrank": ["CovarianceAccumulator", "LowRankBasis", "channel_rows", "fit_lowrank", "from_channel_rows",
                "halving_ranks"],
    "probe": ["LinearProbe", "network_accuracy_lowrank", "pool_features", "pooled_lowrank_features", "probe_accuracy",
              "train_probe"],
    "correlation": ["CORRELATION_COLUMNS", "ConstantInputWarning", "rank_correlations", "sensitivity_correlations"],
})  # fmt: skip
