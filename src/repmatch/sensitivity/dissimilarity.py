"""Every value of the sensitivity tables as a dissimilarity (larger = further apart).

Why one module: the within-network rows (rank r vs full, :mod:`.within_network`), the
cross-network rows (A's rank-r layer vs B's layer, :mod:`.cross_network`) and a similarity
measure's value in either must follow one sign convention, or the rank correlations with the
functional drop (:mod:`.correlation`) would compare opposite orderings. Torch-free.
"""

from __future__ import annotations

from ..similarity.registry import MEASURES
from .correlation import FUNCTIONAL


def index_dissimilarity(measure: str, value: float) -> float:
    """A registered similarity measure's value as a dissimilarity (larger = more different):
    ``identity_value - value`` when larger is more similar, else the value itself."""
    m = MEASURES[measure]
    return m.identity_value - value if m.larger_is_similar else value


def rank_dissimilarity(method: str, value: float, full_value: float) -> float:
    """A within-network row's value as a dissimilarity of rank r vs full (larger = more different).

    Functional scores and ``dm_accuracy``: the drop from the full-rank value. ``dm_repr_diff``: as
    is. A registered measure: :func:`index_dissimilarity`.
    """
    if method in FUNCTIONAL or method == "dm_accuracy":
        return full_value - value
    if method == "dm_repr_diff":
        return value
    return index_dissimilarity(method, value)


def pair_distance(method: str, value: float, b_accuracy: float) -> float:
    """A cross-network row's value as a dissimilarity of A's (rank-r) layer to B's layer (larger = further).

    Stitched accuracies: B's own accuracy minus the stitched one; structural scores
    (``*_repr_diff``): as is; a registered measure: :func:`index_dissimilarity`.
    """
    if method.endswith("_accuracy"):
        return b_accuracy - value
    if method.endswith("_repr_diff"):
        return value
    return index_dissimilarity(method, value)
