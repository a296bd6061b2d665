"""repmatch.sensitivity: do the indices track function? (Ding et al.'s sensitivity and specificity tests)

Modules (pure maths: tensors / arrays in, arrays / small dataclasses out):

* :mod:`.lowrank` — a layer's top-r principal directions, fitted once on the training split in
  float64 (streamed covariance), applied to any batch: rank-r representation = mean + projection;
* :mod:`.probe` — linear probe on globally pooled features (Adam, fixed epochs, seeded) and the
  network's own accuracy with a rank-r layer fed forward;
* :mod:`.within_network` — the within-network test: one layer's scores over ranks (probe,
  network, DM, every similarity measure), tidy rows and the per-index correlation summary;
* :mod:`.pairs` (torch-free) — which jobs exist; :mod:`.stages` — the job's I/O;
  :mod:`.plots` (torch-free) — per-layer curves (accuracies and index dissimilarity vs rank).
* :mod:`.cross_network` — the cross-network test: DM and TLM from A's rank-r layer into B's layer
  (:class:`LowRankFront`, the one-pass moments, :func:`pair_sensitivity`); :mod:`.aggregate`
  (torch-free) — sensitivity over seeds with t intervals, the one summary table; :mod:`.specificity`
  (torch-free) — Ding et al.'s specificity per layer over seed pairs, combined by the mean of
  per-layer correlations.
* what both tests share: :mod:`.batches` (a split streamed onto the device), :mod:`.lowrank_dm`
  (the basis and every rank's DM map from one pass of moments), :mod:`.dissimilarity`
  (torch-free; every table value as a dissimilarity, one sign convention).
* :mod:`.correlation` — Spearman / Kendall rank correlation of an index's dissimilarity with the
  drop in a functional score, per layer over ranks and pooled; NaN + warning when undefined.
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "lowrank": ["CovarianceAccumulator", "LowRankBasis", "channel_rows", "fit_lowrank", "from_channel_rows",
                "halving_ranks", "basis_from_moments"],
    "probe": ["LinearProbe", "network_accuracy_lowrank", "pool_features", "pooled_lowrank_features", "train_probe"],
    "correlation": ["CORRELATION_COLUMNS", "FUNCTIONAL", "ConstantInputWarning", "rank_correlations", "sensitivity_correlations"],
    "within_network": ["DM_METHODS", "layer_sensitivity", "summary_table", "tidy_rows"],
    "cross_network": ["LowRankFront", "fit_moments", "front_name", "pair_sensitivity", "parse_front_name", "tidy_pair_rows"],
    "batches": ["device_batches", "input_batches"],
    "lowrank_dm": ["basis_from_equations", "dm_from_equations"],
    "dissimilarity": ["index_dissimilarity", "pair_distance", "rank_dissimilarity"],
    "aggregate": ["sensitivity_over_units", "unit_correlations", "within_from_networks"],
    "specificity": ["GAPS", "MIN_PAIRS", "LayerPoints", "index_distances", "layer_specificity", "network_scores",
                    "specificity_points", "specificity_tables", "stitch_distances", "stratified_specificity",
                    "within_layer_permutation_p"],
    "pairs": ["sensitivity_layers", "sensitivity_models", "sensitivity_pairs", "specificity_extra_models",
              "specificity_models", "specificity_similarity_pairs", "specificity_dm_pairs", "specificity_seeds"],
    "plots": ["plot_rank_curves", "plot_sensitivity_specificity"],
    "stages": ["aggregate_stage", "pair_stage", "sensitivity_stage"],
})  # fmt: skip
