"""Which ordered model pairs get a stitching grid (torch-free: imported by the Snakemake rules)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..naming import pair_id


def stitching_pairs(models: Sequence[str], pairs_cfg: Mapping[str, Any] | None) -> list[str]:
    """The ordered model pairs to stitch, from ``stitching.pairs``.

    ``within``: ``all`` (A -> A for every model), ``first`` (first model only) or ``none``;
    ``cross``: ``all`` (every ordered pair of different models), ``first`` (models[0] ->
    models[1] only: the cheap default, one cross-seed grid) or ``none``.
    """
    pairs_cfg = dict(pairs_cfg or {})
    within, cross = pairs_cfg.get("within", "first"), pairs_cfg.get("cross", "first")
    if within not in ("all", "first", "none") or cross not in ("all", "first", "none"):
        raise ValueError(f"stitching.pairs needs within and cross in (all, first, none), got {pairs_cfg}")
    models = list(models)
    out = [pair_id(m, m) for m in (models if within == "all" else models[:1] if within == "first" else [])]
    if cross == "all":
        out += [pair_id(a, b) for a in models for b in models if a != b]
    elif cross == "first" and len(models) > 1:
        out.append(pair_id(models[0], models[1]))
    return out
