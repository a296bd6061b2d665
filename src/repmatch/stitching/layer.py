"""The stitching layer: A's layer-i output -> (resize) -> affine map -> stands in for B's layer-j output.

Why this exact wiring: it is the one of the seed paper's public code (Balogh & Jelasity, AAAI
2025), so numbers are comparable. For conv maps the affine map is a 1x1 convolution with bias,
i.e. the *same* affine map applied at every spatial position, and the spatial size is matched
by bilinear interpolation (``align_corners=False``; a 2x downsample is then exactly a 2x2 mean).

Flat layers (e.g. smallcnn's ``fc1``) are treated as 1x1 maps, which gives one rule for every
pair of layer kinds:

* flat -> flat: a linear map (a 1x1 conv on a 1x1 map).
* conv -> flat: A's map is global-average-pooled into a vector first. Bilinear "resizing" an
  HxW map to 1x1 would just read the centre pixels; the mean is what networks themselves use to
  flatten a map (smallcnn's ``fc1`` starts with exactly this pooling).
* flat -> conv: the vector is broadcast to every position of B's HxW grid (this is what
  bilinear upsampling of a 1x1 map does), so the stitched map is spatially constant. Such
  stitches are legal but can only transmit global information; they are reported like any
  other cell.

Resizing and a 1x1 conv commute (interpolation weights sum to one and act per channel), so the
layer applies the cheaper order: affine map first when it upsamples, resize first otherwise.

Token sequences (N, T, D) (vision transformers, per-sample shape ``(T, D)``) are a third kind.
Their positions are the T tokens; when T - 1 is a square g^2 (and T is not) the first token is
a CLS token followed by a g x g patch grid in row-major order, when T is a square there is no
CLS token (the seed paper's code tells the two apart the same way). The affine map is applied
to every token (CLS included) and A's activations are moved onto B's positions first:

* token -> token, same T: nothing to move (a linear map with bias on every token).
* token -> token, other grids: CLS -> CLS, the patch grid resized by the rule above.
* conv -> token: the H x W map is resized to B's patch grid and flattened to tokens; B's CLS
  token gets the mean over A's positions (the paper's ``c2t`` option ``pool``: the mapped CLS
  is the mean of the mapped tokens, since the map is affine).
* token -> conv: A's CLS token is dropped (the paper's ``t2c`` default ``drop``), the square grid
  of patch tokens is reshaped to g x g and resized to B's H x W.
* flat layers are 1x1 grids as before: token -> flat is the mean of the patch tokens, flat ->
  token broadcasts the vector to every token.

Every one of these moves is linear per channel with weights summing to one, so it commutes with
the affine map and DM sees it as one row per (sample, B position), as for conv maps. A token
sequence whose length is not a square (+1) has no grid and can only meet a token layer of the
same length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..kinds import token_layout

Shape = tuple[int, ...]


class StitchShapeError(ValueError):
    """A stitch was built or called with activations of the wrong shape."""


def check_layer_shape(shape: Sequence[int], what: str) -> Shape:
    """A layer output shape without the batch dim: ``(C,)`` (flat), ``(T, D)`` (tokens) or ``(C, H, W)`` (conv map)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2, 3) or min(shape) < 1:
        raise StitchShapeError(f"{what} has per-sample shape {shape}; stitching needs (C,), (T, D) or (C, H, W)")
    return shape


def is_tokens(shape: Sequence[int]) -> bool:
    """Whether a per-sample layer shape is a token sequence (T, D)."""
    return len(shape) == 2


def channels(shape: Shape) -> int:
    """The width the affine map acts on: C for flat and conv layers, D for tokens (T, D)."""
    return shape[-1] if is_tokens(shape) else shape[0]


def spatial(shape: Shape) -> tuple[int, int]:
    """Spatial size of a layer shape's map view (:func:`as_map`): flat layers are 1x1, T tokens a T x 1 column."""
    if len(shape) == 1:
        return (1, 1)
    if is_tokens(shape):
        return (shape[0], 1)
    return (shape[1], shape[2])


def position_key(shape: Shape) -> tuple:
    """A hashable key such that layers with equal keys have the same positions (DM groups by it)."""
    return ("tokens", shape[0]) if is_tokens(shape) else spatial(shape)


def as_map(h: torch.Tensor) -> torch.Tensor:
    """The map view: flat vectors (N, C) -> (N, C, 1, 1), tokens (N, T, D) -> (N, D, T, 1); maps pass through.

    Why tokens as a T x 1 column: every per-position operation here (the affine map as a 1x1
    conv, the per-row view for DM, the Mahalanobis scores) then treats each token as a position.
    """
    if h.dim() == 2:
        return h[:, :, None, None]
    if h.dim() == 3:
        return h.transpose(1, 2)[:, :, :, None]
    if h.dim() == 4:
        return h
    raise StitchShapeError(f"expected a batch of vectors (N, C), tokens (N, T, D) or maps (N, C, H, W), got shape {tuple(h.shape)}")


def from_map(y: torch.Tensor, shape: Shape) -> torch.Tensor:
    """Inverse of :func:`as_map` for a layer of per-sample ``shape`` (the channel count may differ)."""
    if len(shape) == 1:
        return y.flatten(1)
    if is_tokens(shape):
        return y[:, :, :, 0].transpose(1, 2)
    return y


def _grid_part(x: torch.Tensor, shape: Shape) -> torch.Tensor | None:
    """The (N, C, h, w) grid of a map view ``x`` of a layer of ``shape``: CLS dropped; None for a plain sequence."""
    if not is_tokens(shape):
        return x
    cls, g = token_layout(shape[0])
    if g is None:
        return None
    return x[:, :, int(cls):, 0].reshape(x.shape[0], x.shape[1], g, g)


def move_to(x: torch.Tensor, in_shape: Shape, out_shape: Shape) -> torch.Tensor:
    """Move the map view ``x`` (N, C, ...) of a layer of ``in_shape`` onto the positions of ``out_shape``.

    Returns the map view of a layer with B's positions and A's C channels (see the module
    docstring for the rules). Flat and conv layers on both sides: exactly :func:`resize_to`.
    """
    if not (is_tokens(in_shape) or is_tokens(out_shape)):
        return resize_to(x, spatial(out_shape))
    if is_tokens(in_shape) and is_tokens(out_shape) and in_shape[0] == out_shape[0]:
        return x
    grid_in = _grid_part(x, in_shape)
    if grid_in is None:
        raise StitchShapeError(
            f"a sequence of {in_shape[0]} tokens has no square patch grid; it can only be stitched to a token layer of "
            f"{in_shape[0]} tokens, not to a layer of shape {tuple(out_shape)}"
        )
    if not is_tokens(out_shape):
        return resize_to(grid_in, spatial(out_shape))
    cls_out, g_out = token_layout(out_shape[0])
    if g_out is None:
        raise StitchShapeError(f"a sequence of {out_shape[0]} tokens has no square patch grid; only a token layer of "
                               f"{out_shape[0]} tokens can be stitched into it, not a layer of shape {tuple(in_shape)}")
    parts = [resize_to(grid_in, (g_out, g_out)).flatten(2)]  # (N, C, g_out^2)
    if cls_out:
        cls_in = is_tokens(in_shape) and token_layout(in_shape[0])[0]
        parts.insert(0, x[:, :, :1, 0] if cls_in else grid_in.mean(dim=(2, 3))[:, :, None])
    return torch.cat(parts, dim=2)[:, :, :, None]


def resize_to(h: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (N, C, H, W) maps to ``size`` with the module's rule (see the module docstring)."""
    h = as_map(h)
    src = (h.shape[-2], h.shape[-1])
    if src == tuple(size):
        return h
    if tuple(size) == (1, 1):
        return h.mean(dim=(2, 3), keepdim=True)
    if src == (1, 1):
        return h.expand(-1, -1, size[0], size[1])
    return F.interpolate(h, size=tuple(size), mode="bilinear", align_corners=False)


def resize_matrix(src_size: tuple[int, int], dst_size: tuple[int, int], dtype: torch.dtype = torch.float64,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """The resize rule as a matrix U (dst positions x src positions): ``vec(resize(x)) = U vec(x)`` per channel.

    Built by resizing the identity basis with :func:`resize_to` itself, so it is exactly the
    operator the stitch applies. DM uses it to form upsampled normal equations cheaply.
    """
    n_src = src_size[0] * src_size[1]
    basis = torch.eye(n_src, dtype=dtype, device=device).view(n_src, 1, *src_size)
    return resize_to(basis, dst_size).reshape(n_src, -1).T.contiguous()


def affine_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Apply ``weight @ v + bias`` to the channel vector ``v`` at every position of (N, C, H, W) maps."""
    if x.shape[-2:] == (1, 1):
        return F.linear(x.flatten(1), weight, bias)[:, :, None, None]
    return F.conv2d(x, weight[:, :, None, None], bias)


class Stitch(nn.Module):
    """Affine stitch from a layer of shape ``in_shape`` to one of shape ``out_shape`` (no batch dim).

    ``weight`` is (C_out, C_in) and ``bias`` (C_out,). The default initialisation is PyTorch's
    for a 1x1 conv / linear layer (uniform in +-1/sqrt(C_in)), drawn from ``generator`` so a
    grid of stitches is reproducible.
    """

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int], generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.in_shape = check_layer_shape(in_shape, "the stitch's input layer")
        self.out_shape = check_layer_shape(out_shape, "the stitch's output layer")
        c_in, c_out = channels(self.in_shape), channels(self.out_shape)
        if is_tokens(self.in_shape) or is_tokens(self.out_shape):
            move_to(torch.zeros(1, 1, *spatial(self.in_shape)), self.in_shape, self.out_shape)  # impossible pairs fail here
        bound = 1.0 / math.sqrt(c_in)
        self.weight = nn.Parameter(torch.empty(c_out, c_in).uniform_(-bound, bound, generator=generator))
        self.bias = nn.Parameter(torch.empty(c_out).uniform_(-bound, bound, generator=generator))

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, out_shape={self.out_shape}"

    @torch.no_grad()
    def set_affine(self, weight: torch.Tensor, bias: torch.Tensor) -> Stitch:
        """Load an affine map (e.g. the DM solution); shapes must match this stitch."""
        if tuple(weight.shape) != tuple(self.weight.shape) or tuple(bias.shape) != tuple(self.bias.shape):
            raise StitchShapeError(
                f"affine map of shape W{tuple(weight.shape)}, b{tuple(bias.shape)} does not fit a stitch "
                f"{self.in_shape} -> {self.out_shape} (needs W{tuple(self.weight.shape)}, b{tuple(self.bias.shape)})"
            )
        self.weight.copy_(weight.to(self.weight))
        self.bias.copy_(bias.to(self.bias))
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if tuple(h.shape[1:]) != self.in_shape:
            raise StitchShapeError(
                f"stitch expects front-half activations of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"got {tuple(h.shape)}"
            )
        # map first when moving to B's positions multiplies them (fewer positions to map), else move first;
        # for flat and conv layers the move is exactly :func:`resize_to`
        x = as_map(h)
        if x.shape[-2] * x.shape[-1] < math.prod(spatial(self.out_shape)):
            y = move_to(affine_map(x, self.weight, self.bias), self.in_shape, self.out_shape)
        else:
            y = affine_map(move_to(x, self.in_shape, self.out_shape), self.weight, self.bias)
        return from_map(y, self.out_shape)


def stitch_inputs(h: torch.Tensor, out_shape: Shape) -> torch.Tensor:
    """The matrix DM regresses from: A's activations moved to B's positions, one row per (sample, position).

    Returns (N*P, C_in) with P B's positions (H*W, or T tokens), rows ordered sample-major,
    matching :func:`target_rows`.
    """
    return to_rows(move_to(as_map(h), tuple(h.shape[1:]), out_shape))


def to_rows(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W), (N, T, D) or (N, C) -> (N*P, C): one row per (sample, position or token), the per-pixel view."""
    h = as_map(h)
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


def target_rows(h: torch.Tensor) -> torch.Tensor:
    """B's real layer-j activations in the same row order as :func:`stitch_inputs`."""
    return to_rows(h)
