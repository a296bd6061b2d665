"""Descriptive-statistic baselines (ReSi, Klabunde et al. 2024; after Wang & Isola 2020): compare
one summary number of each layer. They are baselines: a good index should beat them in the
sensitivity / specificity tables. Each is |stat(a) - stat(b)| (0 = same, smaller = more similar).

* ``magnitude_difference``: stat = ||mean row||_2, the norm of the mean activation vector (ReSi's
  definition; it depends on the offset and the scale of the activations).
* ``concentricity_difference``: stat = mean over samples of cos(x_p, mean row) (ReSi).

ReSi's third statistic, uniformity (Wang & Isola 2020: log mean exp(-2 ||x_p - x_q||^2)), is left
out: defined for unit-sphere embeddings, on raw activations (squared distances of tens to
thousands) it saturates at -log n for every layer, so it cannot tell layers apart.

Rows are the view's rows as stored (not centred; ``paper`` mode's rows are centred).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .context import GridContext
from .neighbourhood import view_rows
from .stats import LayerStats


def _difference(va: list[float], vb: list[float]) -> np.ndarray:
    a, b = np.asarray(va, dtype=np.float64), np.asarray(vb, dtype=np.float64)
    return np.abs(a[:, None] - b[None, :])


def magnitude(s: LayerStats) -> float:
    """||mean row||: the column means the view removed (zero for ``paper`` mode's centred rows)."""
    return 0.0 if s.normalised else float(torch.linalg.vector_norm(s.mean))


def concentricity(s: LayerStats) -> float:
    """Mean cosine similarity of each row with the mean row; NaN when a row or the mean is zero."""
    x = view_rows(s)
    mu = x.mean(dim=0)
    norms = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(mu)
    if bool((norms == 0).any()):
        return float("nan")
    return float(((x @ mu) / norms).mean())


def magnitude_difference_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """| ||mean a|| - ||mean b|| | for every layer pair."""
    return _difference([magnitude(s) for s in sa], [magnitude(s) for s in sb])


def concentricity_difference_grid(sa: Sequence[LayerStats], sb: Sequence[LayerStats], ctx: GridContext) -> np.ndarray:
    """|concentricity(a) - concentricity(b)|; a layer with a zero row or zero mean gives NaN (reported)."""
    ca = [s.memo("concentricity", lambda s=s: concentricity(s)) for s in sa]
    cb = ca if sa is sb else [s.memo("concentricity", lambda s=s: concentricity(s)) for s in sb]
    for s, c in list(zip(sa, ca)) + ([] if sa is sb else list(zip(sb, cb))):
        if np.isnan(c):
            ctx.degenerate(f"concentricity_difference: layer {s.name!r} has an all-zero row or a zero mean row: "
                           "its cosine to the mean is undefined")
    return _difference(ca, cb)
