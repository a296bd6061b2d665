"""Errors and warnings of the similarity engine.

Why separate classes: the pipeline must tell *bad input* (a bug upstream: NaN activations,
mismatched sample counts, a typo in the config) apart from *degenerate input* (a layer that is
constant over the probe set, or too many features for CCA to mean anything). The first is always
an error; the second is an error for the pure functions and, in the layer grid, a documented NaN
with a :class:`DegenerateWarning` unless ``on_degenerate="error"``.
"""

from __future__ import annotations


class SimilarityInputError(ValueError):
    """Input the engine cannot compare at all (NaN/Inf, wrong rank, row mismatch, unknown name)."""


class DegenerateInputError(SimilarityInputError):
    """Input on which a measure is undefined (zero variance, CCA with more features than samples...)."""


class DegenerateWarning(UserWarning):
    """A grid cell set to NaN because the measure is undefined for that layer pair."""
