"""Which sensitivity jobs exist (torch-free: read while Snakemake parses the workflow).

One job per network (the low-rank probes and the rank-r vs full indices) and one per network pair
for the similarity side (the rank-r front of A stitched into, and compared with, B's full layer),
none unless ``sensitivity.enabled``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..naming import pair_id
from ..settings import SensitivitySettings, Settings


def sensitivity_models(models: Sequence[str], sensitivity: SensitivitySettings) -> list[str]:
    """The networks that get a sensitivity job (all of them, or none when disabled)."""
    return list(models) if sensitivity.enabled else []


def sensitivity_pairs(models: Sequence[str], sensitivity: SensitivitySettings) -> list[str]:
    """The ordered pairs (A, B) whose rank-r fronts of A go into B (none when disabled).

    ``pairs.within``: ``all`` | ``first`` | ``none`` (A -> A); ``pairs.cross``: ``all`` (every
    ordered pair of different networks), ``upper`` (each unordered pair once, the earlier seed as
    A: enough for the specificity test at half the cost), ``first`` (models[0] -> models[1]) or
    ``none``.
    """
    if not sensitivity.enabled:
        return []
    models = list(models)
    out = [pair_id(m, m) for m in {"all": models, "first": models[:1], "none": []}[sensitivity.pairs.within]]
    cross = sensitivity.pairs.cross
    if cross == "all":
        out += [pair_id(a, b) for a in models for b in models if a != b]
    elif cross == "upper":
        out += [pair_id(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
    elif cross == "first" and len(models) > 1:
        out.append(pair_id(models[0], models[1]))
    return out


def sensitivity_layers(settings: Settings) -> list[str]:
    """The tested layers: ``sensitivity.layers`` (null: ``model.layers``), thinned to ``sensitivity.n_layers``
    evenly spaced ones (first and last kept) when that is set."""
    s, model = settings.sensitivity, settings.model
    layers = model.resolve(model.layers if s.layers is None else s.layers)
    return evenly_spaced(layers, s.n_layers)


def evenly_spaced(items: Sequence[str], n: int | None) -> list[str]:
    """``n`` of ``items`` at evenly spaced positions from the first to the last (all when ``n`` is None or too large)."""
    if n is None or n >= len(items):
        return list(items)
    if n == 1:
        return [items[-1]]
    return [items[round(k * (len(items) - 1) / (n - 1))] for k in range(n)]