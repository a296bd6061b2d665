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
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, ...]


class StitchShapeError(ValueError):
    """A stitch was built or called with activations of the wrong shape."""


def check_layer_shape(shape: Sequence[int], what: str) -> Shape:
    """A layer output shape without the batch dim: ``(C,)`` (flat) or ``(C, H, W)`` (conv map)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise StitchShapeError(f"{what} has per-sample shape {shape}; stitching needs (C,) or (C, H, W)")
    return shape


def spatial(shape: Shape) -> tuple[int, int]:
    """Spatial size of a layer shape; flat layers are 1x1 maps."""
    return (1, 1) if len(shape) == 1 else (shape[1], shape[2])


def as_map(h: torch.Tensor) -> torch.Tensor:
    """View a batch of flat vectors (N, C) as (N, C, 1, 1) maps; conv maps pass through."""
    if h.dim() == 2:
        return h[:, :, None, None]
    if h.dim() == 4:
        return h
    raise StitchShapeError(f"expected a batch of vectors (N, C) or maps (N, C, H, W), got shape {tuple(h.shape)}")


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
        c_in, c_out = self.in_shape[0], self.out_shape[0]
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
        out_hw = spatial(self.out_shape)
        x = as_map(h)
        if x.shape[-2] * x.shape[-1] < out_hw[0] * out_hw[1]:  # upsampling: map first (fewer positions)
            y = resize_to(affine_map(x, self.weight, self.bias), out_hw)
        else:
            y = affine_map(resize_to(x, out_hw), self.weight, self.bias)
        return y.flatten(1) if len(self.out_shape) == 1 else y


def stitch_inputs(h: torch.Tensor, out_shape: Shape) -> torch.Tensor:
    """The matrix DM regresses from: A's activations resized to B's grid, one row per (sample, position).

    Returns (N*H*W, C_in), rows ordered sample-major, matching :func:`target_rows`.
    """
    return to_rows(resize_to(h, spatial(out_shape)))


def to_rows(h: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) or (N, C) -> (N*H*W, C): one row per (sample, position), the per-pixel view."""
    h = as_map(h)
    return h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])


def target_rows(h: torch.Tensor) -> torch.Tensor:
    """B's real layer-j activations in the same row order as :func:`stitch_inputs`."""
    return to_rows(h)
