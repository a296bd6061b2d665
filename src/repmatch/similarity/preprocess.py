"""Turn a cached activation array into the (rows x features) matrix a measure compares.

Why here, once: how convolutional feature maps become a matrix changes every measure's value,
so the choice is made once in config (``similarity.conv_mode``) and applied identically to all
measures. Modes:

``gap`` (default)
    Global average pool each (C, H, W) map to C features: one row per probe sample. Cheap, defined
    for every measure (CCA needs more samples than features; flattening a 16x28x28 map gives
    12,544 features for 500 probe samples, where every CCA correlation is trivially 1).
``flatten``
    C*H*W features per sample. Keeps spatial layout; only the CKA family and Procrustes stay
    meaningful when features outnumber samples.
``per_position``
    Rows are (sample, position) pairs, features are channels: (N*H*W, C). Two maps of different
    spatial size are first average-pooled to the coarser grid of the two (a flat (n, d) layer
    counts as a 1x1 grid, so it meets conv layers after global pooling).
``paper``
    The seed paper's rule: when both layers have the same (C, H, W) shape use per-position rows,
    otherwise global average pooling; then centre and divide by the Frobenius norm.

Flat (n, d) activations are used as they are in every mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import SimilarityInputError

CONV_MODES = ("gap", "flatten", "per_position", "paper")


@dataclass(frozen=True)
class View:
    """How one layer is turned into a matrix for one comparison (hashable: a cache key).

    ``kind``: ``flat`` (reshape to (n, -1)), ``gap`` (mean over positions) or ``pos``
    (per-position rows on an ``hw`` grid). ``normalise``: divide the centred matrix by its
    Frobenius norm (the ``paper`` mode).
    """

    kind: str
    hw: tuple[int, int] | None = None
    normalise: bool = False


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:
        return (1, 1)
    if len(shape) == 4:
        return (int(shape[2]), int(shape[3]))
    raise SimilarityInputError(
        f"activations must be (n, d) or (n, C, H, W); got shape {tuple(shape)}"
    )


def pair_views(shape_a: tuple[int, ...], shape_b: tuple[int, ...], conv_mode: str) -> tuple[View, View]:
    """The views of two layers (full array shapes incl. the sample axis) for one comparison."""
    sa, sb = _spatial(shape_a), _spatial(shape_b)
    if conv_mode == "gap":
        return View("gap"), View("gap")
    if conv_mode == "flatten":
        return View("flat"), View("flat")
    if conv_mode == "per_position":
        hw = (min(sa[0], sb[0]), min(sa[1], sb[1]))
        return View("pos", hw), View("pos", hw)
    if conv_mode == "paper":
        if len(shape_a) == 4 and tuple(shape_a[1:]) == tuple(shape_b[1:]):
            return View("pos", sa, True), View("pos", sb, True)
        return View("gap", None, True), View("gap", None, True)
    raise SimilarityInputError(f"unknown conv_mode {conv_mode!r}; choose one of {list(CONV_MODES)}")


def to_matrix(arr: np.ndarray | torch.Tensor, view: View, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Apply ``view`` to an (n, d) or (n, C, H, W) array: a (rows, features) tensor on ``device``.

    The array is converted to ``dtype`` (float64 by default) *before* pooling so the averages
    are accumulated at full precision. Memmaps are read once here.
    """
    if isinstance(arr, torch.Tensor):
        x = arr
    else:
        a = np.asarray(arr)
        # Read-only memmaps (the activation cache) are copied once; torch cannot wrap them.
        x = torch.from_numpy(a if a.flags.writeable and a.flags.c_contiguous else np.array(a, order="C"))
    _spatial(tuple(x.shape))  # rank check with a clear message
    if not x.is_floating_point():
        raise SimilarityInputError(f"activations must be floating point, got {x.dtype}")
    x = x.to(device=device, dtype=dtype)
    if x.ndim == 2:
        return x
    n, c, h, w = x.shape
    if view.kind == "flat":
        return x.reshape(n, c * h * w)
    if view.kind == "gap":
        return x.mean(dim=(2, 3))
    if view.kind == "pos":
        assert view.hw is not None
        if (h, w) != view.hw:
            x = F.adaptive_avg_pool2d(x, view.hw)
        return x.permute(0, 2, 3, 1).reshape(-1, c)
    raise SimilarityInputError(f"unknown view kind {view.kind!r}")
