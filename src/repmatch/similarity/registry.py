"""The registry of similarity measures: one entry per measure, with the properties it claims.

Why declare properties: one parametrised test checks every measure against exactly what it
declares (symmetry, value on identical input, each invariance), the sanity tables know whether
larger means more similar, and the Snakemake rules just iterate ``config["similarity"]["measures"]``.
Adding a measure = writing its grid function and one :func:`register` call here. Its bootstrap
intervals then come for free (the grid engine re-run on each resample's rows); a measure with a
faster form on B resamples at once declares it next to its grid function (a
:class:`~repmatch.similarity.resampled.ResampledForm` in the measure's module) and names it in
``resampled_ref``.

The registry itself imports neither torch nor the measure code (grid functions are named as
``"module:function"`` and imported on first use), so the sanity tables, the figures and the
Snakefile's parse-time check of ``similarity.measures`` stay light.

Invariance names:
``orthogonal`` (X -> X Q, Q orthogonal), ``isotropic_scaling`` (X -> c X), ``translation``
(X -> X + 1 b^T), ``invertible_linear`` (X -> X A, A invertible, applied to either argument),
``invertible_linear_a`` (only for the first argument, e.g. the regression predictor).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import SimilarityInputError

#: grid(stats_a, stats_b, ctx) -> (len(a) x len(b)) float64 array
GridFn = Callable[[Any, Any, Any], Any]

INVARIANCES = ("orthogonal", "isotropic_scaling", "translation", "invertible_linear", "invertible_linear_a")


@dataclass(frozen=True)
class Measure:
    """A similarity (or distance) measure between two (rows x features) representations.

    ``grid(stats_a, stats_b, ctx)`` returns the (len(a) x len(b)) float64 array of values; cells
    where the measure is undefined are NaN and reported through ``ctx.degenerate``.
    ``grid_ref`` names it as ``"module:function"`` relative to this package (or absolute).

    ``resampled_ref`` (same naming) is the measure's resampled form: its replicates on a chunk of
    bootstrap resamples at once (:mod:`.resampled`); None: the bootstrap recomputes ``grid`` on
    each resample's rows (:mod:`.bootstrap`), so every measure gets intervals.
    """

    name: str
    grid_ref: str
    description: str
    symmetric: bool
    larger_is_similar: bool
    identity_value: float
    invariances: frozenset[str]
    params: tuple[str, ...] = ()
    resampled_ref: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.invariances) - set(INVARIANCES)
        if unknown:
            raise ValueError(f"measure {self.name!r} declares unknown invariances {sorted(unknown)}")

    @property
    def grid(self) -> GridFn:
        return _resolve(self.grid_ref)

    @property
    def resampled(self) -> Any:
        """The :class:`~repmatch.similarity.resampled.ResampledForm`, or None (the generic per-resample grid)."""
        return None if self.resampled_ref is None else _resolve(self.resampled_ref)


def _resolve(ref: str) -> Any:
    module, _, func = ref.partition(":")
    mod = importlib.import_module(module if "." in module else f"{__package__}.{module}")
    return getattr(mod, func)


MEASURES: dict[str, Measure] = {}


def register(measure: Measure) -> Measure:
    if measure.name in MEASURES:
        raise ValueError(f"measure {measure.name!r} is already registered")
    MEASURES[measure.name] = measure
    return measure


def get_measure(name: str) -> Measure:
    try:
        return MEASURES[name]
    except KeyError:
        raise SimilarityInputError(f"unknown similarity measure {name!r}; registered measures are {sorted(MEASURES)}") from None


def check_measures(names: Iterable[str]) -> list[Measure]:
    """Resolve a config list of measure names; unknown or repeated names are an error naming them."""
    names = list(names)
    if not names:
        raise SimilarityInputError("similarity.measures is empty; name at least one of " + str(sorted(MEASURES)))
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SimilarityInputError(f"similarity.measures lists {dupes} more than once")
    return [get_measure(n) for n in names]


_ORTH_SCALE_SHIFT = frozenset({"orthogonal", "isotropic_scaling", "translation"})

register(Measure(
    "linear_cka", "cka:linear_cka_grid", "linear CKA (Kornblith et al. 2019)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT,
    resampled_ref="cka:linear_cka_resampled",
))
register(Measure(
    "rbf_cka", "cka:rbf_cka_grid", "RBF-kernel CKA, bandwidth = rbf_sigma x median distance",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT, params=("rbf_sigma",),
    resampled_ref="cka:rbf_cka_resampled",
))
register(Measure(
    "debiased_cka", "cka:debiased_cka_grid", "CKA with the unbiased HSIC estimator (Song et al. 2012)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT,
    resampled_ref="cka:debiased_cka_resampled",
))
register(Measure(
    "minibatch_cka", "cka:minibatch_cka_grid", "unbiased HSIC summed over minibatches (Nguyen et al. 2021)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT, params=("minibatch_size",),
    resampled_ref="cka:minibatch_cka_resampled",
))
register(Measure(
    "mean_cca", "cca:mean_cca_grid", "mean canonical correlation rho-bar",
    symmetric=True, larger_is_similar=True, identity_value=1.0,
    invariances=_ORTH_SCALE_SHIFT | {"invertible_linear"},
    resampled_ref="cca:mean_cca_resampled",
))
register(Measure(
    "svcca", "cca:svcca_grid", "SVCCA: top singular directions (svcca_variance), then mean CCA (Raghu et al. 2017)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT, params=("svcca_variance",),
    resampled_ref="cca:svcca_resampled",
))
register(Measure(
    "pwcca", "cca:pwcca_grid", "projection-weighted CCA (Morcos et al. 2018)",
    symmetric=False, larger_is_similar=True, identity_value=1.0, invariances=frozenset({"isotropic_scaling", "translation"}),
    resampled_ref="cca:pwcca_resampled",
))
register(Measure(
    "procrustes", "procrustes:procrustes_grid", "orthogonal Procrustes similarity ||X^T Y||_* of unit-norm layers",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT,
    resampled_ref="procrustes:procrustes_resampled",
))
register(Measure(
    "procrustes_distance", "procrustes:procrustes_distance_grid", "squared orthogonal Procrustes distance (Ding et al. 2021)",
    symmetric=True, larger_is_similar=False, identity_value=0.0, invariances=_ORTH_SCALE_SHIFT,
    resampled_ref="procrustes:procrustes_distance_resampled",
))
register(Measure(
    "linear_regression", "regression:linear_regression_grid", "R^2 of a least-squares map from layer a to layer b",
    symmetric=False, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE_SHIFT | {"invertible_linear_a"},
    resampled_ref="regression:linear_regression_resampled",
))

# --- neighbourhood, RSA, shape metrics and descriptive baselines -------------------------------
# Declared invariances hold for the default parameters (knn_distance cosine, rsa_rdm correlation);
# the euclidean variants are also translation invariant, and RSA with euclidean RDMs orthogonally
# invariant too (tests/test_similarity_families.py checks each variant).
_ORTH_SCALE = frozenset({"orthogonal", "isotropic_scaling"})
_KNN_PARAMS = ("knn_k", "knn_distance")

register(Measure(
    "mutual_knn", "neighbourhood:mutual_knn_grid", "mutual k-NN alignment: mean share of common k nearest neighbours (Huh et al. 2024)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE, params=_KNN_PARAMS,
    resampled_ref="neighbourhood:mutual_knn_resampled",
))
register(Measure(
    "jaccard_knn", "neighbourhood:jaccard_knn_grid", "mean Jaccard similarity of the k-NN sets (ReSi)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE, params=_KNN_PARAMS,
    resampled_ref="neighbourhood:jaccard_knn_resampled",
))
register(Measure(
    "rank_similarity", "neighbourhood:rank_similarity_grid", "rank-weighted agreement of the common k nearest neighbours (ReSi; Wang et al. 2020)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE, params=_KNN_PARAMS,
    resampled_ref="neighbourhood:rank_similarity_resampled",
))
register(Measure(
    "second_order_cosine", "neighbourhood:second_order_cosine_grid",
    "cosine of each sample's distances to the union of its k-NN in both layers (ReSi; Hamilton et al. 2016)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=_ORTH_SCALE, params=_KNN_PARAMS,
    resampled_ref="neighbourhood:second_order_cosine_resampled",
))
register(Measure(
    "rsa", "rsa:rsa_grid", "RSA: rsa_compare correlation of the rsa_rdm dissimilarity matrices (Kriegeskorte et al. 2008)",
    symmetric=True, larger_is_similar=True, identity_value=1.0, invariances=frozenset({"isotropic_scaling"}),
    params=("rsa_rdm", "rsa_compare"), resampled_ref="rsa:rsa_resampled",
))
register(Measure(
    "shape_angular", "shape:shape_angular_grid", "angular shape metric with partial whitening shape_alpha (Williams et al. 2021), radians",
    symmetric=True, larger_is_similar=False, identity_value=0.0, invariances=_ORTH_SCALE_SHIFT, params=("shape_alpha",),
    resampled_ref="shape:shape_angular_resampled",
))
register(Measure(
    "shape_euclidean", "shape:shape_euclidean_grid", "Euclidean shape metric of unit-norm, partially whitened layers (Williams et al. 2021)",
    symmetric=True, larger_is_similar=False, identity_value=0.0, invariances=_ORTH_SCALE_SHIFT, params=("shape_alpha",),
    resampled_ref="shape:shape_euclidean_resampled",
))
register(Measure(
    "magnitude_difference", "descriptive:magnitude_difference_grid", "baseline: difference of the mean activation vectors' norms (ReSi)",
    symmetric=True, larger_is_similar=False, identity_value=0.0, invariances=frozenset({"orthogonal"}),
    resampled_ref="descriptive:magnitude_difference_resampled",
))
register(Measure(
    "concentricity_difference", "descriptive:concentricity_difference_grid",
    "baseline: difference of the mean cosine of the rows to their mean (ReSi)",
    symmetric=True, larger_is_similar=False, identity_value=0.0, invariances=_ORTH_SCALE,
    resampled_ref="descriptive:concentricity_difference_resampled",
))
