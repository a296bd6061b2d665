"""Neuron activation subspace match (Wang et al., NeurIPS 2018): maximum and simple matches.

Layout (as every family): ``pairs`` (which jobs), the maths on neuron vectors (coordinates ×
neurons: ``linalg``, ``maximum``, ``simple``, ``exact``: every simple match, ``chance``: the
chance level of A against coordinate-permuted B; ``sampling`` turns cached activations into
neuron vectors; ``compare`` runs one layer pair over the ε sweep and the repeats; ``tables`` its
rows), ``stages`` (what the scripts call), ``plots`` (figures).
"""

from .._exports import lazy

__getattr__, __all__ = lazy(__name__, {
    "chance": ["ChanceLevel", "chance_from_sweep", "chance_level", "coordinate_permutations"],
    "compare": ["LayerPairResult", "compare_layers", "layer_pairs"],
    "exact": ["ExactSearch"],
    "linalg": ["orthonormal_basis", "relative_residuals"],
    "maximum": ["MatchProblem", "MaximumMatch", "Sweep", "fixed_point", "maximum_match", "maximum_match_sweep",
                "whole_layer_epsilon"],
    "simple": ["SimpleMatch", "SimpleMatches", "simple_matches", "v_minimal_match"],
})  # fmt: skip
