"""Vision transformers as stitchable networks: ``embed``, ``block0`` .. ``block{depth-1}``, then the head.

Why this cut: the seed paper (Balogh & Jelasity, AAAI 2025) stitches a ViT-Ti (patch 4, 32x32
CIFAR-10 inputs, 12 pre-norm blocks, width 192, 3 heads, MLP 768, a CLS token read by the head)
at its block outputs, token to token. As a :class:`~repmatch.networks.stitchable.StitchableNet` every block
output is a stitchable layer of shape (T, D) per sample: T = 1 + (image/patch)^2 tokens (the CLS
token first, then the patch grid row by row), D the width. ``embed`` is the patch embedding with
the CLS token prepended and the position embedding added, so stitching into ``block0``'s input
is stitching into ``embed``'s output.

The head is the final LayerNorm, the CLS token, a linear classifier (as timm's
``VisionTransformer`` with ``global_pool="token"``). Attention is written out (softmax of
``q k^T / sqrt(d)``) instead of calling ``scaled_dot_product_attention``: the fused kernels'
backward passes are not all deterministic on CUDA, and training must be reproducible.
Initialisation follows timm (truncated normal, std 0.02, for linear weights and the position
embedding; zero biases; a tiny CLS token), drawn from the current torch RNG.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from .stitchable import StitchableNet


@dataclass(frozen=True)
class ViTSpec:
    """The shape of a ViT: patch size, width, depth, heads and MLP width."""

    patch: int
    width: int
    depth: int
    heads: int
    mlp: int


#: ViT-Ti as the seed paper trained it on CIFAR-10 (timm ``vit_tiny`` with patch 4 on 32x32 images).
VIT_TI = ViTSpec(patch=4, width=192, depth=12, heads=3, mlp=768)
#: A ViT the laptop trains in minutes: always a 4x4 patch grid (17 tokens), so the patch size is
#: image_size / 4 (7 on 28x28 MNIST, 8 on 32x32); see :func:`tiny_test_spec`.
VIT_TINY_TEST = ViTSpec(patch=7, width=64, depth=4, heads=2, mlp=128)

#: LayerNorm epsilon of timm's ViTs.
LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Image (N, C, H, W) -> tokens (N, 1 + (H/p)(W/p), D): patches, CLS token first, position embedding."""

    def __init__(self, in_channels: int, image_size: int, spec: ViTSpec) -> None:
        super().__init__()
        if image_size % spec.patch:
            raise ValueError(f"image_size={image_size} is not a multiple of the ViT's patch size {spec.patch}")
        self.grid = image_size // spec.patch
        self.proj = nn.Conv2d(in_channels, spec.width, spec.patch, stride=spec.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, spec.width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.proj(x).flatten(2).transpose(1, 2)  # (N, g*g, D), row-major patch order
        t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        return t + self.pos_embed


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (bias on), written out for determinism."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"ViT width {width} is not divisible by its {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, heads, T, d_head)
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads), dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, t, d))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))`` (GELU MLP)."""

    def __init__(self, spec: ViTSpec) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.width, eps=LN_EPS)
        self.attn = Attention(spec.width, spec.heads)
        self.norm2 = nn.LayerNorm(spec.width, eps=LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(spec.width, spec.mlp), nn.GELU(), nn.Linear(spec.mlp, spec.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ClsHead(nn.Module):
    """Final LayerNorm, the CLS token (token 0), a linear classifier."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=LN_EPS)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x)[:, 0])


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)


def tiny_test_spec(image_size: int) -> ViTSpec:
    """:data:`VIT_TINY_TEST` with the patch size that cuts ``image_size`` into a 4x4 grid."""
    if image_size % 4:
        raise ValueError(f"vit_tiny_test cuts images into a 4x4 patch grid; image_size={image_size} is not a multiple of 4")
    return dataclasses.replace(VIT_TINY_TEST, patch=image_size // 4)


def vit_layer_names(depth: int) -> tuple[str, ...]:
    """The stitchable layers of a ViT of ``depth`` blocks (``architectures.LAYERS`` lists the same)."""
    return ("embed", *(f"block{k}" for k in range(depth)))


def vit(in_channels: int, num_classes: int, image_size: int, spec: ViTSpec) -> StitchableNet:
    """A ViT as a StitchableNet; every layer's output is (N, 1 + (image_size/patch)^2, width)."""
    blocks: list[tuple[str, nn.Module]] = [("embed", PatchEmbed(in_channels, image_size, spec))]
    blocks += [(f"block{k}", Block(spec)) for k in range(spec.depth)]
    net = StitchableNet(blocks, ClsHead(spec.width, num_classes))
    net.apply(_init_linear)
    return net
