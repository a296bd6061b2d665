"""The stitched network: frozen front of A up to layer i -> stitch -> frozen back of B after layer j.

Why "frozen" means eval mode *and* no gradients: the paper's wiring keeps both halves exactly
as trained; in train mode BatchNorm would update its running statistics from stitched (and
possibly out-of-distribution) inputs and silently change model B.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..networks.hooked import HookedNet
from ..networks.stitchable import StitchableNet
from .layer import Shape, Stitch, StitchShapeError


class Cell(NamedTuple):
    """One stitch of a grid: how it was made (``dm``, ``tlm``, ``dm_tlm``) and which layers it joins."""

    method: str
    layer_a: str
    layer_b: str


def group_by_back(cells: Iterable[Cell], order_b: Sequence[str], max_stack: int | None = None) -> list[tuple[str, list[Cell]]]:
    """Cells grouped by B layer (in network order), each group cut into chunks of at most ``max_stack``.

    Why: stitches into the same B layer share B's frozen back half, so a group is run as one
    stacked batch through it; ``max_stack`` bounds the memory of that stacked batch.
    """
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.layer_b, []).append(cell)
    out = []
    for lb in sorted(groups, key=list(order_b).index):
        members = groups[lb]
        step = max_stack or len(members)
        out.extend((lb, members[k : k + step]) for k in range(0, len(members), step))
    return out


def freeze(model: StitchableNet) -> StitchableNet:
    """Put ``model`` in eval mode and stop gradients to its weights (in place; returns it)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def layer_shapes(model: StitchableNet, input_shape: Sequence[int], device: torch.device | str = "cpu") -> dict[str, Shape]:
    """Per-sample output shape of every layer of ``model`` for inputs of ``input_shape`` (C, H, W)."""
    was_training = model.training
    model.eval()
    x = torch.zeros((2, *input_shape), device=device)
    feats = model.features(x, model.layer_names)
    model.train(was_training)
    return {name: tuple(int(s) for s in value.shape[1:]) for name, value in feats.items()}


def make_stitch(
    shapes_a: dict[str, Shape], shapes_b: dict[str, Shape], layer_a: str, layer_b: str, generator: torch.Generator | None = None
) -> Stitch:
    """A randomly initialised stitch from A's ``layer_a`` into B's ``layer_b`` (clear error for unknown layers)."""
    for name, shapes, which in ((layer_a, shapes_a, "A"), (layer_b, shapes_b, "B")):
        if name not in shapes:
            raise KeyError(f"model {which} has no layer {name!r}; its layers are {list(shapes)}")
    return Stitch(shapes_a[layer_a], shapes_b[layer_b], generator)


class StitchedNet(nn.Module):
    """``B.forward_from(stitch(A.forward_until(x, layer_a)), layer_b)`` with A and B frozen.

    A convenience for single stitches (tests, notebooks); the grid code batches many stitches
    without building one of these per cell.
    """

    def __init__(self, model_a: StitchableNet, model_b: StitchableNet, layer_a: str, layer_b: str, stitch: Stitch) -> None:
        super().__init__()
        self.model_a, self.model_b = freeze(model_a), freeze(model_b)
        self.layer_a, self.layer_b = layer_a, layer_b
        model_a.index(layer_a), model_b.index(layer_b)  # named KeyError for unknown layers
        self.stitch = stitch

    def train(self, mode: bool = True) -> StitchedNet:
        """Only the stitch ever switches to train mode; both halves stay in eval mode."""
        self.training = mode
        self.stitch.train(mode)
        self.model_a.eval()
        self.model_b.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.model_a.forward_until(x, self.layer_a)
        try:
            z = self.stitch(h)
        except StitchShapeError as err:
            raise StitchShapeError(f"stitch {self.layer_a} -> {self.layer_b}: {err}") from None
        return self.model_b.forward_from(z, self.layer_b, x)


def fold_batchnorm(model: StitchableNet) -> StitchableNet:
    """A copy of a frozen (eval-mode) ``model`` with every BatchNorm folded into the conv before it.

    Why: in eval mode BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
    conv with rescaled weights and a bias. Stitching runs B's frozen back half forward and
    backward for every stitched image; folding removes a full pass over every activation map
    (BN's forward and its backward) per layer. The result equals the original up to float
    round-off (tested). Folds ``Conv2d`` directly followed by ``BatchNorm2d`` in an
    ``nn.Sequential`` and attribute pairs ``convK``/``bnK`` of a block (the ResNet basic block);
    any other BatchNorm is left in place.

    A :class:`~repmatch.networks.hooked.HookedNet` runs arbitrary ``forward`` code, where an attribute pair
    need not be applied one after the other: only plain ``nn.Sequential`` pairs are folded, and
    never a pair whose conv or BatchNorm is a hooked layer (its output would change meaning).
    """
    folded = freeze(copy.deepcopy(model))
    hooked = isinstance(folded, HookedNet)
    protected = {id(m) for m in folded.hooked_modules()} if isinstance(folded, HookedNet) else set()
    for module in list(folded.modules()):
        if isinstance(module, nn.Sequential) and (not hooked or type(module) is nn.Sequential):
            items = list(module._modules.items())
            for (k1, m1), (k2, m2) in itertools.pairwise(items):
                if id(m1) in protected or id(m2) in protected:
                    continue
                if isinstance(m1, nn.Conv2d) and isinstance(m2, nn.BatchNorm2d):
                    module._modules[k1] = fuse_conv_bn_eval(m1, m2)
                    module._modules[k2] = nn.Identity()
        for name, child in list(module._modules.items()) if not hooked else []:
            if name.startswith("conv") and isinstance(child, nn.Conv2d):
                bn_name = "bn" + name[len("conv"):]
                bn = module._modules.get(bn_name)
                if isinstance(bn, nn.BatchNorm2d):
                    module._modules[name] = fuse_conv_bn_eval(child, bn)
                    module._modules[bn_name] = nn.Identity()
    return freeze(folded)
