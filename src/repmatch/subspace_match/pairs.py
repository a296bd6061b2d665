"""Which subspace-match jobs exist: unordered pairs of different networks (plus each network with
itself when ``within_network``). Torch-free: read while Snakemake parses the workflow."""

from __future__ import annotations

from collections.abc import Sequence

from ..naming import pair_id, unordered_pairs


def subspace_pairs(models: Sequence[str], within_network: bool) -> list[str]:
    return [pair_id(a, b) for a, b in unordered_pairs(list(models)) if within_network or a != b]
