"""Neuron activation subspace match (Wang et al., NeurIPS 2018): maximum and simple matches.

Pure maths on neuron vectors (coordinates × neurons) lives in :mod:`.linalg`, :mod:`.maximum`
and :mod:`.simple`; :mod:`.sampling` turns cached activations into neuron vectors (random
coordinate draws for conv channels); :mod:`.exact` enumerates every simple match; :mod:`.chance`
gives the chance level (A against coordinate-permuted B); :mod:`.compare` runs one layer pair over the ε sweep and
the repeats; :mod:`.tables`, :mod:`.stage` and :mod:`.plotting` are the pipeline edges.
"""

from .chance import ChanceLevel, chance_from_sweep, chance_level, coordinate_permutations
from .exact import ExactSearch
from .linalg import orthonormal_basis, relative_residuals
from .maximum import (
    MatchProblem,
    MaximumMatch,
    Sweep,
    fixed_point,
    maximum_match,
    maximum_match_sweep,
    whole_layer_epsilon,
)
from .simple import SimpleMatch, SimpleMatches, simple_matches, v_minimal_match

__all__ = [
    "ChanceLevel",
    "ExactSearch",
    "SimpleMatches",
    "chance_from_sweep",
    "chance_level",
    "coordinate_permutations",
    "MatchProblem",
    "MaximumMatch",
    "SimpleMatch",
    "Sweep",
    "fixed_point",
    "maximum_match",
    "maximum_match_sweep",
    "orthonormal_basis",
    "relative_residuals",
    "simple_matches",
    "v_minimal_match",
    "whole_layer_epsilon",
]
