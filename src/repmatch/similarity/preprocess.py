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

Token sequences (n, T, D) (vision transformers) have their own switch, ``similarity.token_mode``,
because the conv choices do not say what to do with a CLS token:

``follow`` (default)
    The counterpart of ``conv_mode``: ``gap`` -> ``mean``, ``flatten`` -> ``flatten``,
    ``per_position`` -> ``per_token``, ``paper`` -> per-token rows when both layers have the
    same (T, D) shape, otherwise ``mean`` (then centred and Frobenius-normalised).
``mean``
    The mean over all T tokens (CLS included): D features per sample.
``cls``
    The CLS token alone (token 0; an error for a sequence without one, see
    :func:`repmatch.kinds.token_layout`): D features per sample.
``flatten``
    T*D features per sample.
``per_token``
    Rows are (sample, token) pairs, features the D channels. Two token layers of the same length
    keep every token, CLS included; against a conv map, a flat layer or a token layer of another
    grid the CLS token is dropped and the patch grid is treated as a (D, g, g) map, pooled to the
    coarser grid of the two like ``per_position``.

The side that is not a token layer is handled by ``conv_mode`` as if its partner were flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..kinds import token_layout
from .errors import SimilarityInputError

CONV_MODES = ("gap", "flatten", "per_position", "paper")
TOKEN_MODES = ("follow", "mean", "cls", "flatten", "per_token")
#: What ``token_mode: follow`` means under each ``conv_mode``.
FOLLOW = {"gap": "mean", "flatten": "flatten", "per_position": "per_token", "paper": "paper"}


@dataclass(frozen=True)
class View:
    """How one layer is turned into a matrix for one comparison (hashable: a cache key).

    ``kind``: ``flat`` (reshape to (n, -1)), ``gap`` (mean over positions; over all tokens for a
    token layer) or ``pos`` (per-position rows on an ``hw`` grid; a token layer's patch grid,
    CLS dropped), and for token layers only ``cls`` (token 0) and ``tokens`` (one row per token,
    CLS included). ``normalise``: divide the centred matrix by its Frobenius norm (the ``paper`` mode).
    """

    kind: str
    hw: tuple[int, int] | None = None
    normalise: bool = False


def _spatial(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 2:
        return (1, 1)
    if len(shape) == 3:
        return _token_grid(shape)
    if len(shape) == 4:
        return (int(shape[2]), int(shape[3]))
    raise SimilarityInputError(
        f"activations must be (n, d), (n, T, D) tokens or (n, C, H, W); got shape {tuple(shape)}"
    )


def _token_grid(shape: tuple[int, ...]) -> tuple[int, int]:
    _, g = token_layout(int(shape[1]))
    if g is None:
        raise SimilarityInputError(
            f"a sequence of {shape[1]} tokens has no square patch grid, so per_token rows cannot be matched to a layer of "
            f"another shape; use token_mode mean, cls or flatten"
        )
    return (g, g)


def pair_views(shape_a: tuple[int, ...], shape_b: tuple[int, ...], conv_mode: str,
               token_mode: str | None = None) -> tuple[View, View]:
    """The views of two layers (full array shapes incl. the sample axis) for one comparison.

    ``token_mode`` None means ``follow`` (see the module docstring); it only matters for token layers.
    """
    if len(shape_a) == 3 or len(shape_b) == 3:
        return _token_pair_views(shape_a, shape_b, conv_mode, token_mode)
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


def _token_pair_views(shape_a: tuple[int, ...], shape_b: tuple[int, ...], conv_mode: str,
                      token_mode: str | None) -> tuple[View, View]:
    if conv_mode not in CONV_MODES:
        raise SimilarityInputError(f"unknown conv_mode {conv_mode!r}; choose one of {list(CONV_MODES)}")
    mode = FOLLOW[conv_mode] if token_mode in (None, "follow") else token_mode
    if mode not in TOKEN_MODES and mode != "paper":
        raise SimilarityInputError(f"unknown token_mode {token_mode!r}; choose one of {list(TOKEN_MODES)}")
    same_tokens = len(shape_a) == len(shape_b) == 3 and shape_a[1] == shape_b[1]
    if mode == "paper":
        if same_tokens and tuple(shape_a[1:]) == tuple(shape_b[1:]):
            return View("tokens", None, True), View("tokens", None, True)
        return View("gap", None, True), View("gap", None, True)
    if mode == "per_token":
        if same_tokens:
            return View("tokens"), View("tokens")
        sa, sb = _spatial(shape_a), _spatial(shape_b)
        hw = (min(sa[0], sb[0]), min(sa[1], sb[1]))
        return View("pos", hw), View("pos", hw)
    for shape in (shape_a, shape_b):
        if mode == "cls" and len(shape) == 3 and not token_layout(int(shape[1]))[0]:
            raise SimilarityInputError(f"token_mode cls: a layer of shape {tuple(shape)} has no CLS token "
                                       f"({shape[1]} tokens is a square grid); use token_mode mean")
    token_view = {"mean": View("gap"), "cls": View("cls"), "flatten": View("flat")}[mode]
    if conv_mode == "paper":  # normalised like the other side
        token_view = View(token_view.kind, None, True)
    # the other side (when not tokens) gets its conv handling against a flat partner
    va = token_view if len(shape_a) == 3 else pair_views(shape_a, (shape_a[0], 1), conv_mode)[0]
    vb = token_view if len(shape_b) == 3 else pair_views((shape_b[0], 1), shape_b, conv_mode)[1]
    return va, vb


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
    if x.ndim != 3:
        _spatial(tuple(x.shape))  # rank check with a clear message
    if not x.is_floating_point():
        raise SimilarityInputError(f"activations must be floating point, got {x.dtype}")
    x = x.to(device=device, dtype=dtype)
    if x.ndim == 2:
        return x
    if x.ndim == 3:
        return _token_matrix(x, view)
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


def _token_matrix(x: torch.Tensor, view: View) -> torch.Tensor:
    """Apply ``view`` to tokens (n, T, D)."""
    n, t, d = x.shape
    if view.kind == "flat":
        return x.reshape(n, t * d)
    if view.kind == "gap":
        return x.mean(dim=1)
    if view.kind == "cls":
        return x[:, 0]
    if view.kind == "tokens":
        return x.reshape(n * t, d)
    if view.kind == "pos":
        assert view.hw is not None
        cls, g = token_layout(t)
        grid = x[:, int(cls):].transpose(1, 2).reshape(n, d, *_token_grid((n, t, d)))
        if (g, g) != view.hw:
            grid = F.adaptive_avg_pool2d(grid, view.hw)
        return grid.permute(0, 2, 3, 1).reshape(-1, d)
    raise SimilarityInputError(f"unknown view kind {view.kind!r}")
