"""The three kinds of layer representation, and where a token sequence keeps its CLS token and patch grid.

Why one torch-free module: stitching (:mod:`repmatch.stitching.layer`), the similarity switch
(:mod:`repmatch.similarity.preprocess`) and the subspace match all have to agree on which token
is CLS and how the patch tokens form a grid, or a token layer would mean different things to
different families.

Per-sample shapes (no batch axis): ``(C,)`` flat, ``(T, D)`` tokens, ``(C, H, W)`` conv map.
"""

from __future__ import annotations

import math


def token_layout(n_tokens: int) -> tuple[bool, int | None]:
    """(has a CLS token, side g of the square patch grid or None) of a sequence of ``n_tokens``.

    A square count is a g x g grid without CLS; a square + 1 is CLS (token 0) then the grid in
    row-major order (a ViT's layout); anything else is a plain sequence with no grid. This is the
    rule of the seed paper's code (Balogh & Jelasity, AAAI 2025), which tells the first two apart
    the same way.
    """
    if n_tokens < 1:
        raise ValueError(f"a token sequence needs at least one token, got {n_tokens}")
    g = math.isqrt(n_tokens)
    if g * g == n_tokens:
        return False, g
    g = math.isqrt(n_tokens - 1)
    if g * g == n_tokens - 1:
        return True, g
    return False, None
