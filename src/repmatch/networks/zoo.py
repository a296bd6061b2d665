"""The built-in architectures (the zoo): CNNs, plain nets and ViTs, each built as a :class:`StitchableNet`.

Why here and not in :mod:`repmatch.architectures`: that module lists the same architectures' layer
names without torch, for the parse-time config checks; this one builds the networks (a test checks
every built network's ``layer_names`` against that table).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..architectures import ARCHITECTURES
from .stitchable import StitchableNet
from .vit import VIT_TI, tiny_test_spec, vit


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)
    )


class BasicBlock(nn.Module):
    """The ResNet basic block (He et al. 2016); shortcut is a 1x1 conv + BN when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class PoolLinearHead(nn.Sequential):
    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))


def _resnet(in_channels: int, num_classes: int, widths: Sequence[int], depth_per_stage: int) -> StitchableNet:
    blocks: list[tuple[str, nn.Module]] = [("stem", _conv_bn_relu(in_channels, widths[0]))]
    c_in = widths[0]
    for s, width in enumerate(widths, start=1):
        for b in range(depth_per_stage):
            stride = 2 if (s > 1 and b == 0) else 1
            blocks.append((f"layer{s}_{b}", BasicBlock(c_in, width, stride)))
            c_in = width
    return StitchableNet(blocks, PoolLinearHead(c_in, num_classes))


def smallcnn(in_channels: int, num_classes: int) -> StitchableNet:
    """Five conv layers and one hidden dense layer: trains in seconds per epoch on 2 CPU cores."""
    blocks: list[tuple[str, nn.Module]] = [
        ("conv1", _conv_bn_relu(in_channels, 16)),
        ("conv2", _conv_bn_relu(16, 32, stride=2)),
        ("conv3", _conv_bn_relu(32, 32)),
        ("conv4", _conv_bn_relu(32, 64, stride=2)),
        ("conv5", _conv_bn_relu(64, 64)),
        ("fc1", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 64), nn.ReLU(inplace=False))),
    ]
    return StitchableNet(blocks, nn.Linear(64, num_classes))


def vgg11(in_channels: int, num_classes: int) -> StitchableNet:
    """VGG-11 with BatchNorm (CIFAR variant); each block is conv-BN-ReLU (+ the max-pool after it).

    Its pooled blocks' outputs are taken *after* max-pooling (kept so existing results stay
    valid); ``vgg16``/``vgg16_bn`` instead cut before pooling, as the subspace-match paper.
    """
    plan = [(64, True), (128, True), (256, False), (256, True), (512, False), (512, True), (512, False), (512, True)]
    blocks: list[tuple[str, nn.Module]] = []
    c_in = in_channels
    for k, (width, pool) in enumerate(plan, start=1):
        layers: list[nn.Module] = list(_conv_bn_relu(c_in, width))
        if pool:
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        blocks.append((f"conv{k}", nn.Sequential(*layers)))
        c_in = width
    return StitchableNet(blocks, PoolLinearHead(c_in, num_classes))


#: Output widths of VGG-16's 13 conv layers; a max-pool follows conv2, conv4, conv7, conv10, conv13.
VGG16_PLAN: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_POOL_AFTER: frozenset[int] = frozenset({2, 4, 7, 10, 13})
#: Width of VGG-16's two fully connected ReLU layers (fc1, fc2) in the CIFAR variant.
VGG16_FC_WIDTH = 512


def _conv_relu(c_in: int, c_out: int, batch_norm: bool) -> list[nn.Module]:
    if batch_norm:
        return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=False)]
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=False)]


def vgg16(in_channels: int, num_classes: int, batch_norm: bool = False) -> StitchableNet:
    """VGG-16 (CIFAR variant), with or without BatchNorm, cut where Wang et al. (2018) measure it.

    Why this block structure: the subspace-match paper takes every ReLU output *before*
    pooling, and a stitchable layer here is a block output. So every block ends at a ReLU and
    a max-pool is the *first* op of the block after it: conv1..conv13 are the 13 conv ReLUs at
    full resolution of their stage, fc1/fc2 the two fully connected ReLUs (512 wide, as the
    common CIFAR VGGs), then a linear head. fc1 starts with the fifth max-pool and a global
    average pool, which is the identity on 32x32 inputs (the map is 1x1 after five pools) and
    keeps fc1 512 wide on other image sizes. No dropout: it would only act in training and the
    paper's networks are compared in eval mode anyway; weight decay regularises.
    """
    blocks: list[tuple[str, nn.Module]] = []
    c_in, pool_first = in_channels, False
    for k, width in enumerate(VGG16_PLAN, start=1):
        layers: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if pool_first else []
        layers += _conv_relu(c_in, width, batch_norm)
        blocks.append((f"conv{k}", nn.Sequential(*layers)))
        c_in, pool_first = width, k in VGG16_POOL_AFTER
    blocks.append(("fc1", nn.Sequential(
        nn.MaxPool2d(2, ceil_mode=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(c_in, VGG16_FC_WIDTH), nn.ReLU(inplace=False),
    )))
    blocks.append(("fc2", nn.Sequential(nn.Linear(VGG16_FC_WIDTH, VGG16_FC_WIDTH), nn.ReLU(inplace=False))))
    return StitchableNet(blocks, nn.Linear(VGG16_FC_WIDTH, num_classes))


def plain(in_channels: int, num_classes: int, widths: Sequence[int] = (16, 32, 64), blocks_per_stage: int = 7) -> StitchableNet:
    """A plain net (He et al. 2016, Fig. 3 middle): ResNet-(6n+2) without its shortcuts.

    Why one block per conv-BN-ReLU: Wang et al. compare every ReLU output of plain nets, so each
    conv layer is its own stitchable layer: ``stem``, then ``s{stage}b{block}c{conv}`` (the two
    convs of each former residual block). The first conv of stages 2 and 3 has stride 2. With
    the defaults (n = 7) it is plain-44: 43 conv layers + the linear head.
    """
    blocks: list[tuple[str, nn.Module]] = [("stem", _conv_bn_relu(in_channels, widths[0]))]
    c_in = widths[0]
    for s, width in enumerate(widths, start=1):
        for b in range(1, blocks_per_stage + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            blocks.append((f"s{s}b{b}c1", _conv_bn_relu(c_in, width, stride)))
            blocks.append((f"s{s}b{b}c2", _conv_bn_relu(width, width)))
            c_in = width
    return StitchableNet(blocks, PoolLinearHead(c_in, num_classes))


def build_model(arch: str, num_classes: int, in_channels: int, image_size: int) -> StitchableNet:
    """Build an untrained network; initialisation follows the current torch RNG state (seed it first)."""
    arch = arch.lower()
    if image_size < 8:
        raise ValueError(f"image_size={image_size} is too small for the architectures here (need >= 8)")
    if arch == "smallcnn":
        return smallcnn(in_channels, num_classes)
    if arch == "resnet20":
        return _resnet(in_channels, num_classes, (16, 32, 64), 3)
    if arch == "resnet18":
        return _resnet(in_channels, num_classes, (64, 128, 256, 512), 2)
    if arch == "vgg11":
        return vgg11(in_channels, num_classes)
    if arch == "vgg16":
        return vgg16(in_channels, num_classes, batch_norm=False)
    if arch == "vgg16_bn":
        return vgg16(in_channels, num_classes, batch_norm=True)
    if arch == "plain44":
        return plain(in_channels, num_classes, (16, 32, 64), 7)
    if arch in ("vit_ti", "vit_tiny_test"):
        return vit(in_channels, num_classes, image_size, VIT_TI if arch == "vit_ti" else tiny_test_spec(image_size))
    raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
