"""Model stitching: direct matching (DM) vs task loss matching (TLM), after Balogh & Jelasity (AAAI 2025).

Layout (as every family): ``pairs`` (which jobs), the maths (``layer``: the stitch, ``network``:
frozen halves and grid cells, ``direct``: DM in closed form, ``task``: stacked TLM training,
``scores``: accuracy and the Gaussian OOD scores, ``detectors``: learned energy OOD detectors,
``ood_metrics``: AUROC / AUPR / FPR95 of a score, ``grid``: one model pair's whole grid, and
:func:`stitch_modules` for two ``nn.Module`` objects without Snakemake, ``analysis``: accuracy vs
layer distance), ``stages`` (what the scripts call), ``plots`` (figures).
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "detectors": ["LayerDetector", "fit_detectors", "outlier_images", "sanity_check"],
    "direct": ["GridNormalEquations", "NormalEquations", "fit_affine", "fit_affine_pinv", "solve_psd"],
    "grid": ["METHODS", "build_stitches", "fit_direct", "stitch_modules", "stitch_pair"],
    "pairs": ["stitching_pairs"],
    "layer": ["Stitch", "StitchShapeError", "resize_to", "stitch_inputs", "to_rows"],
    "network": ["Cell", "StitchedNet", "fold_batchnorm", "freeze", "group_by_back", "layer_shapes", "make_stitch"],
    "ood_metrics": ["auroc", "average_precision", "detection_metrics", "fpr_at_95_tpr", "separability"],
    "scores": ["METRICS", "class_mahalanobis_per_sample", "class_whitener", "evaluate_stitches", "gaussian_whitener",
               "mahalanobis_per_sample"],
    "task": ["TLMConfig", "augment_batch", "convergence_metrics", "lr_at", "train_stitches"],
})  # fmt: skip
