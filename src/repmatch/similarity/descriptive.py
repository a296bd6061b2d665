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

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .context import GridContext
from .neighbourhood import view_rows
from .resampled import ResampleChunk, resampled_form
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


# --- resampled forms (the bootstrap: c resamples at once, from the multiplicities w) -----------------------------


def _resampled_means(ch: ResampleChunk, side: str) -> list[torch.Tensor]:
    """Each layer's resample mean (c, d): the probe mean plus w @ (centred rows) / n."""
    xs, means = (ch.set.xa, ch.set.mean_a) if side == "a" else (ch.set.xb, ch.set.mean_b)
    return [mean + (ch.w @ x) / ch.n for x, mean in zip(xs, means)]


def _stats_resampled(ch: ResampleChunk, key: str, stat: Callable[[ResampleChunk, str], torch.Tensor]) -> torch.Tensor:
    """|stat(a) - stat(b)| per resample (c, L_a, L_b) from the per-side (c, L) statistics."""
    def compute() -> torch.Tensor:
        sa = stat(ch, "a")
        sb = sa if ch.same else stat(ch, "b")
        return (sa[:, :, None] - sb[:, None, :]).abs()

    return ch.memo(key, compute)


def _magnitudes(ch: ResampleChunk, side: str) -> torch.Tensor:
    return torch.stack([torch.linalg.vector_norm(mu, dim=1) for mu in _resampled_means(ch, side)], 1)


def _concentricities(ch: ResampleChunk, side: str) -> torch.Tensor:
    """Mean over the resample's rows of cos(x_p, mu): (w @ unit rows) . mu / (n ||mu||); NaN as the grid."""
    xs, means = (ch.set.xa, ch.set.mean_a) if side == "a" else (ch.set.xb, ch.set.mean_b)
    cols = []
    for x, mean, mu in zip(xs, means, _resampled_means(ch, side)):
        raw = x + mean
        norms = torch.linalg.vector_norm(raw, dim=1)
        unit = raw / torch.where(norms == 0, torch.ones_like(norms), norms)[:, None]
        mu_norm = torch.linalg.vector_norm(mu, dim=1)
        value = ((ch.w @ unit) * mu).sum(dim=1) / (ch.n * mu_norm)
        undefined = (mu_norm == 0) | ((ch.w > 0) & (norms == 0)[None, :]).any(dim=1)
        cols.append(value.masked_fill(undefined, float("nan")))
    return torch.stack(cols, 1)


@resampled_form()
def magnitude_difference_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """| ||mean a|| - ||mean b|| | per resample, from the resample means (no rows gathered)."""
    return _stats_resampled(ch, "magnitude", _magnitudes), None


@resampled_form()
def concentricity_difference_resampled(ch: ResampleChunk, ctx: GridContext, backward: bool) -> tuple[torch.Tensor, None]:
    """|concentricity(a) - concentricity(b)| per resample, from weighted sums of the unit rows."""
    return _stats_resampled(ch, "concentricity", _concentricities), None
