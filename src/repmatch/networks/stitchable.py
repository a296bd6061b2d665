"""The stitchable network: an ordered list of named layers, cut into a front and a back half.

Why blocks: stitching joins "the front of A up to layer i" with "the back of B after layer j",
and the activation cache records "the output of layer i". Both are trivial when a network is
a plain sequence of named blocks followed by a head: a stitchable layer *is* a block output.
:class:`StitchableNet` is that sequence (the built-in zoo and ViTs are built as one);
:class:`repmatch.networks.hooked.HookedNet` offers the same interface on any ``nn.Module``.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch
from torch import nn


def layer_index(layer_names: Sequence[str], name: str) -> int:
    """Position of layer ``name`` among ``layer_names``; a ``KeyError`` lists the layers (and the nearest names).

    One lookup for every stitchable network (built-in, hooked, a low-rank front), so a typo reads
    the same wherever it is made."""
    try:
        return list(layer_names).index(name)
    except ValueError:
        near = difflib.get_close_matches(name, list(layer_names), n=5, cutoff=0.5)
        raise KeyError(f"layer {name!r} does not exist; this network's layers are {list(layer_names)}"
                       + (f" (nearest: {near})" if near else "")) from None


class StitchableNet(nn.Module):
    """A sequence of named blocks followed by a classification head."""

    def __init__(self, blocks: Sequence[tuple[str, nn.Module]], head: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict(OrderedDict(blocks))
        self.head = head
        self.layer_names: list[str] = [name for name, _ in blocks]

    def index(self, name: str) -> int:
        """Position of layer ``name``; a clear error when the layer does not exist."""
        return layer_index(self.layer_names, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks.values():
            x = block(x)
        return self.head(x)

    def forward_until(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Front half: the output of block ``name``."""
        stop = self.index(name)
        for k, block in enumerate(self.blocks.values()):
            x = block(x)
            if k == stop:
                return x
        raise AssertionError("unreachable")

    def forward_from(self, h: torch.Tensor, name: str, x: torch.Tensor | None = None) -> torch.Tensor:
        """Back half: the blocks after ``name``, then the head, applied to ``h`` (layer ``name``'s output).

        ``x`` (the network's input) is ignored: a sequence of blocks needs only ``h``. It is part of
        the interface because :class:`repmatch.networks.hooked.HookedNet` replaces a layer inside a full
        forward pass and needs the input for it.
        """
        start = self.index(name) + 1
        for block in list(self.blocks.values())[start:]:
            h = block(h)
        return self.head(h)

    def features(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the requested layers from one forward pass (stops after the deepest one)."""
        wanted = set(names)
        last = max(self.index(n) for n in wanted)
        out: dict[str, torch.Tensor] = {}
        for k, (name, block) in enumerate(self.blocks.items()):
            x = block(x)
            if name in wanted:
                out[name] = x
            if k == last:
                break
        return out


def select_layers(model: StitchableNet, wanted: str | Sequence[str]) -> list[str]:
    """Resolve the config's layer choice (``all`` or a list of names) in network order."""
    if wanted == "all":
        return list(model.layer_names)
    if isinstance(wanted, str):
        wanted = [wanted]
    unknown = [n for n in wanted if n not in model.layer_names]
    if unknown:
        raise KeyError(f"config names layers {unknown} that this network does not have; its layers are {model.layer_names}")
    return [n for n in model.layer_names if n in set(wanted)]
