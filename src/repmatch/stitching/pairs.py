"""Which stitching jobs exist: ordered model pairs and the grid's layers (torch-free: read while
Snakemake parses the workflow)."""

from __future__ import annotations

from collections.abc import Sequence

from ..naming import pair_id, parse_pair_id
from ..settings import Settings, StitchPairSettings


def stitching_pairs(models: Sequence[str], pairs: StitchPairSettings) -> list[str]:
    """The ordered model pairs to stitch (front of A -> back of B), from ``stitching.pairs``.

    ``within``: ``all`` (A -> A for every model), ``first`` (first model only) or ``none``;
    ``cross``: ``all`` (every ordered pair of different models), ``first`` (models[0] ->
    models[1] only: the cheap default, one cross-seed grid) or ``none``.
    """
    models = list(models)
    out = [pair_id(m, m) for m in {"all": models, "first": models[:1], "none": []}[pairs.within]]
    if pairs.cross == "all":
        out += [pair_id(a, b) for a in models for b in models if a != b]
    elif pairs.cross == "first" and len(models) > 1:
        out.append(pair_id(models[0], models[1]))
    return out


def pair_kinds(pairs: Sequence[str]) -> list[str]:
    """``within`` and/or ``cross``: the kinds of grid the selected pairs produce (one figure each)."""
    kinds = {"within" if a == b else "cross" for a, b in map(parse_pair_id, pairs)}
    return [k for k in ("within", "cross") if k in kinds]


def stitching_layers(settings: Settings) -> list[str]:
    """The grid's layers: ``stitching.layers``, or ``model.layers`` when that is null."""
    layers = settings.stitching.layers
    return settings.model.resolve(settings.model.layers if layers is None else layers)
