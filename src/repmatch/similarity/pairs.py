"""Which similarity jobs exist: every unordered pair of networks, each network with itself included
(within-network grids). Torch-free: read while Snakemake parses the workflow."""

from __future__ import annotations

from collections.abc import Sequence

from ..naming import pair_id, unordered_pairs


def similarity_pairs(models: Sequence[str]) -> list[str]:
    return [pair_id(a, b) for a, b in unordered_pairs(list(models))]
