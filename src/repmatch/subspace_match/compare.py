"""One layer pair of two networks: maximum matches over the ε sweep, averaged over coordinate
draws, and the simple matches at one ε. Arrays in, a small result object out (no file I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..settings import SubspaceSettings
from .chance import chance_from_sweep
from .maximum import check_eps, maximum_match_sweep
from .sampling import align_spatial, draw_coordinates, gather_neuron_vectors, n_coordinates, token_maps
from .simple import SimpleMatch, simple_matches_in


@dataclass
class LayerPairResult:
    """Per-repeat numbers of one layer pair (lists are indexed by repeat)."""

    eps: list[float]
    n_coords: int
    d_a: int
    d_b: int
    whole_layer_eps: list[float] = field(default_factory=list)
    similarity: dict[float, list[float]] = field(default_factory=dict)
    matched_a: dict[float, list[int]] = field(default_factory=dict)
    matched_b: dict[float, list[int]] = field(default_factory=dict)
    live_a: list[int] = field(default_factory=list)
    live_b: list[int] = field(default_factory=list)
    simple_eps: float | None = None
    simple: list[tuple[int, SimpleMatch]] = field(default_factory=list)
    simple_mode: str = "greedy"
    simple_complete: list[bool] = field(default_factory=list)  # per repeat with simple matches
    simple_fixed_points: list[int] = field(default_factory=list)  # exact-search work, per repeat
    chance_permutations: int = 0
    # chance level: one entry per (repeat, permutation), repeat-major
    chance_similarity: dict[float, list[float]] = field(default_factory=dict)
    chance_whole_layer_eps: list[float] = field(default_factory=list)

    @property
    def repeats(self) -> int:
        return len(self.whole_layer_eps)


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def compare_layers(
    acts_a: np.ndarray,
    acts_b: np.ndarray,
    settings: SubspaceSettings,
    key: str = "",
    device: torch.device | str = "cpu",
) -> LayerPairResult:
    """Subspace match of two layers' cached activations ((n, d) or (n, C, H, W), same n).

    Each of ``settings.repeats`` repeats draws D = ``settings.n_coords`` coordinates (conv layers
    with more than D; all of them otherwise, and then there is a single repeat), builds the
    neuron vectors of both layers on ``device``, and sweeps ``settings.eps``. Simple matches are
    computed at ``simple_eps`` on the first ``simple_repeats`` draws only: they cost far more
    than the maximum match. ``simple_mode: exact`` lists every simple match (within
    ``simple_budget`` fixed points per draw; ``simple_complete`` says whether it finished),
    ``greedy`` the authors' one per neuron. ``chance_permutations`` > 0 adds the chance level of
    every draw: the same sweep of A against that many coordinate permutations of B
    (:mod:`.chance`), reusing the sweep's bases; the permutations depend on ``chance_seed`` and
    the draw number only. ``key`` names the layer pair in the seeded coordinate draws.
    """
    eps_list = sorted({check_eps(e) for e in settings.eps})
    simple_eps = None if settings.simple_eps is None else check_eps(settings.simple_eps)
    n_coords, repeats, simple_repeats, seed = settings.n_coords, settings.repeats, settings.simple_repeats, settings.seed
    simple_mode, simple_budget = settings.simple_mode, settings.simple_budget
    chance_permutations, chance_seed = settings.chance_permutations, settings.chance_seed
    dtype = DTYPES[settings.dtype]
    a, b = align_spatial(*token_maps(acts_a, acts_b))
    draws = draw_coordinates(n_coordinates(a.shape), n_coords, repeats, seed, key)
    result = LayerPairResult(
        eps=eps_list, n_coords=len(draws[0]), d_a=int(a.shape[1]), d_b=int(b.shape[1]), simple_eps=simple_eps,
        similarity={e: [] for e in eps_list}, matched_a={e: [] for e in eps_list}, matched_b={e: [] for e in eps_list},
        simple_mode=simple_mode, chance_permutations=chance_permutations,
        chance_similarity={e: [] for e in eps_list} if chance_permutations else {},
    )  # fmt: skip
    sweep_eps = eps_list + ([simple_eps] if simple_eps is not None else [])
    for r, coords in enumerate(draws):
        va = torch.from_numpy(gather_neuron_vectors(a, coords))
        vb = torch.from_numpy(gather_neuron_vectors(b, coords))
        sweep = maximum_match_sweep(va, vb, sweep_eps, device, dtype, keep_frames=chance_permutations > 0)
        result.whole_layer_eps.append(sweep.whole_layer_eps)
        result.live_a.append(sweep.problem.n_a)
        result.live_b.append(sweep.problem.n_b)
        for e in eps_list:
            m = sweep.matches[e]
            result.similarity[e].append(m.similarity)
            result.matched_a[e].append(len(m.a))
            result.matched_b[e].append(len(m.b))
        if chance_permutations:
            chance = chance_from_sweep(sweep, eps_list, permutations=chance_permutations, seed=chance_seed * 1_000_003 + r)
            for e in eps_list:
                result.chance_similarity[e].extend(float(v) for v in chance.similarity[:, chance.eps.index(e)])
            result.chance_whole_layer_eps.extend(float(v) for v in chance.whole_layer_eps)
            sweep.frames = None  # D × r bases: free them before the simple-match search
        if simple_eps is not None and r < simple_repeats:
            ia, ib = sweep.local[simple_eps]
            found = simple_matches_in(sweep.problem, ia, ib, simple_eps, mode=simple_mode, budget=simple_budget)
            result.simple.extend((r, s) for s in found)
            result.simple_complete.append(found.complete)
            result.simple_fixed_points.append(found.fixed_points)
    return result


def layer_pairs(layers_a: Sequence[str], layers_b: Sequence[str], mode: str) -> list[tuple[str, str]]:
    """Which layer pairs to compare: ``corresponding`` (same name in both) or ``all``."""
    if mode == "corresponding":
        pairs = [(name, name) for name in layers_a if name in set(layers_b)]
        if not pairs:
            raise ValueError(f"the two networks share no layer names ({list(layers_a)} vs {list(layers_b)})")
        return pairs
    if mode == "all":
        return [(la, lb) for la in layers_a for lb in layers_b]
    raise ValueError(f"subspace_match.layer_pairs must be 'corresponding' or 'all', got {mode!r}")
