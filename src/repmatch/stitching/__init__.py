"""Model stitching: direct matching (DM) vs task loss matching (TLM), after Balogh & Jelasity (AAAI 2025).

Modules: ``layer`` (the stitch), ``network`` (frozen halves, grid cells), ``direct`` (DM in
closed form), ``task`` (stacked TLM training), ``scores`` (accuracy and OOD diagnostics),
``detectors`` (learned energy OOD detectors), ``grid`` (one model pair's whole grid), ``pairs`` (which model pairs), ``analysis`` (the paper's
analyses), ``plots`` (figures), ``stages`` (the file-level functions the Snakemake scripts call).

Names are loaded lazily, so ``repmatch.stitching.pairs`` (used while Snakemake builds the DAG)
does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "detectors": ["DetectorConfig", "LayerDetector", "detection_metrics", "fit_detectors", "outlier_images", "sanity_check"],
    "direct": ["GridNormalEquations", "NormalEquations", "fit_affine", "fit_affine_pinv", "solve_psd"],
    "grid": ["METHODS", "StitchingConfig", "build_stitches", "fit_direct", "stitch_pair"],
    "pairs": ["stitching_pairs"],
    "layer": ["Stitch", "StitchShapeError", "resize_to", "stitch_inputs", "to_rows"],
    "network": ["Cell", "StitchedNet", "fold_batchnorm", "freeze", "group_by_back", "layer_shapes", "make_stitch"],
    "scores": ["METRICS", "auroc", "class_mahalanobis_per_sample", "class_whitener", "evaluate_stitches",
               "gaussian_whitener", "mahalanobis_per_sample", "separability"],
    "task": ["TLMConfig", "augment_batch", "convergence_metrics", "lr_at", "train_stitches"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
