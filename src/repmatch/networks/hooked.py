"""Any ``nn.Module`` as a stitchable network: layers named by module path, reached through forward hooks.

Why hooks: :class:`repmatch.networks.stitchable.StitchableNet` cuts a network that is a plain sequence of
blocks, which the built-in architectures are by construction. A user's network (a torchvision
ResNet, a timm ViT, their own module) has skip connections, shared modules and arbitrary
``forward`` code, so it cannot be split into a front and a back half. Forward hooks need no
such structure:

* **capture** (``features``, ``forward_until``): a hook on each named module records its output;
  once the deepest requested layer has fired, the hook raises a private exception that ends
  the forward pass there ("A runs to layer i, stopping there").
* **replace** (``forward_from(h, name, x)``): B runs on the *input* ``x`` and a hook replaces
  layer ``name``'s output by ``h`` (the stitch's output). Whatever B computes before that layer
  and uses after it (the identity branch of a residual block, a ViT's class token) comes from
  the real input, which is why the back half needs ``x``. Stacked stitches: ``h`` may hold
  ``k`` stacked batches of ``x`` (``k * len(x)`` rows); ``x`` is then tiled ``k`` times.

A module whose hook fires more than once per forward pass (torchvision's BasicBlock calls its one
``relu`` module twice: ``layer2.0.relu``) has no single output to capture or replace: the first
forward pass checks every hooked module fires exactly once, in the order the layers are listed,
and fails naming the module otherwise. A module that never runs fails the same way.

The same interface as ``StitchableNet`` (``layer_names``, ``index``, ``forward``, ``forward_until``,
``features``, ``forward_from``), so the stitching, activation and sensitivity code take either.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .stitchable import layer_index


class _Stop(Exception):
    """Raised from a hook once every requested layer is captured (ends the forward pass early)."""


class HookError(ValueError):
    """A layer cannot be hooked: unknown module path, a module run more or less than once, a non-tensor output."""


def module_paths(module: nn.Module) -> list[str]:
    """Every hookable module path of ``module`` (``named_modules`` order, the root excluded)."""
    return [name for name, _ in module.named_modules() if name]


def check_module_paths(module: nn.Module, paths: Iterable[str], what: str = "the model") -> None:
    """Fail naming each unknown path with the nearest valid module paths (``difflib``)."""
    valid = module_paths(module)
    known = set(valid)
    problems = []
    for path in paths:
        if path not in known:
            near = difflib.get_close_matches(path, valid, n=5, cutoff=0.5)
            hint = f"nearest: {near}" if near else f"its top-level modules are {[n for n in valid if '.' not in n]}"
            problems.append(f"{path!r} is not a module of {what} ({hint})")
    if problems:
        raise HookError("; ".join(problems))


def _tensor_output(path: str, output: Any) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise HookError(f"module {path!r} returns a {type(output).__name__}, not a tensor; hook a module whose output is one tensor")
    return output


class HookedNet(nn.Module):
    """``module`` with stitchable layers at named submodules.

    ``layers``: module paths (``["layer1", "layer2.0.conv1"]``; each is also the layer's name) or
    a mapping ``{layer name: module path}``, listed in the order the forward pass runs them
    (``index`` is the position in this list). ``input_channels``: repeat a one-channel input to
    this many channels before ``module`` (a torchvision model on MNIST digits); None = as given.
    """

    def __init__(self, module: nn.Module, layers: Sequence[str] | Mapping[str, str], input_channels: int | None = None) -> None:
        super().__init__()
        self.module = module
        mapping = dict(layers) if isinstance(layers, Mapping) else {str(p): str(p) for p in layers}
        if not mapping:
            raise HookError("a HookedNet needs at least one layer")
        check_module_paths(module, mapping.values())
        self.paths: dict[str, str] = mapping
        self.layer_names: list[str] = list(mapping)
        self.input_channels = input_channels
        self._checked: tuple[int, ...] | None = None  # input shape (per sample) the firing check ran on

    # -- the StitchableNet interface ------------------------------------------------------------
    def index(self, name: str) -> int:
        """Position of layer ``name``; a clear error when the layer does not exist."""
        return layer_index(self.layer_names, name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._adapt(x)
        self._check_once(x)
        return self.module(x)

    def forward_until(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Front half: the output of layer ``name`` (the forward pass stops there)."""
        return self.features(x, [name])[name]

    def features(self, x: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs of the requested layers from one forward pass, stopped once the last of them fired.

        Outputs captured before the last one are cloned: a later in-place op (``ReLU(inplace=True)``)
        would otherwise change them after capture.
        """
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            self.index(name)
        x = self._adapt(x)
        self._check_once(x)
        out: dict[str, torch.Tensor] = {}
        remaining = set(wanted)

        def hook_for(name: str) -> Any:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                value = _tensor_output(self.paths[name], output)
                remaining.discard(name)
                if not remaining:
                    out[name] = value
                    raise _Stop
                out[name] = value.clone()

            return hook

        handles = [self._target(name).register_forward_hook(hook_for(name)) for name in wanted]
        try:
            self.module(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        if remaining:  # the firing check makes this unreachable unless forward() branches on the input
            raise HookError(f"layers {sorted(remaining)} did not run in this forward pass")
        return {name: out[name] for name in wanted}

    def forward_from(self, h: torch.Tensor, name: str, x: torch.Tensor | None = None) -> torch.Tensor:
        """Back half: run ``module`` on ``x`` with layer ``name``'s output replaced by ``h``.

        ``h`` may hold ``k`` stacked batches (``k * len(x)`` rows, stitch after stitch); ``x`` is
        then tiled ``k`` times so every stacked row meets its own input.
        """
        if x is None:
            raise ValueError(f"HookedNet.forward_from needs the input batch x: layer {name!r} is replaced inside "
                             "a full forward pass of the network")
        self.index(name)
        if h.shape[0] != x.shape[0]:
            if x.shape[0] == 0 or h.shape[0] % x.shape[0]:
                raise ValueError(f"forward_from: {h.shape[0]} replacement rows for an input batch of {x.shape[0]}")
            x = x.repeat(h.shape[0] // x.shape[0], *([1] * (x.dim() - 1)))
        x = self._adapt(x)
        self._check_once(x)
        path = self.paths[name]

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> torch.Tensor:
            value = _tensor_output(path, output)
            if value.shape != h.shape:
                raise HookError(f"layer {name!r} ({path}) outputs shape {tuple(value.shape)}; the replacement has {tuple(h.shape)}")
            return h.to(value.dtype, copy=True)  # a copy: a later in-place op (ReLU(inplace=True)) must not change h

        handle = self._target(name).register_forward_hook(hook)
        try:
            return self.module(x)
        finally:
            handle.remove()

    # -- helpers -------------------------------------------------------------------------------
    def hooked_modules(self) -> list[nn.Module]:
        """The modules the layers are read from (``fold_batchnorm`` leaves them unfolded)."""
        return [self._target(name) for name in self.layer_names]

    def _target(self, name: str) -> nn.Module:
        # resolved at each use: copies and in-place module swaps (BatchNorm folding) stay consistent
        return self.module.get_submodule(self.paths[name])

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_channels is not None and x.dim() == 4 and x.shape[1] == 1 and self.input_channels != 1:
            return x.repeat(1, self.input_channels, 1, 1)
        return x

    @torch.no_grad()
    def check_layers(self, x: torch.Tensor) -> None:
        """Run one forward pass (eval mode) on ``x`` (already adapted) and require every layer to fire
        exactly once, in the listed order; fail naming the module otherwise."""
        counts = dict.fromkeys(self.layer_names, 0)
        order: list[str] = []

        def hook_for(name: str) -> Any:
            def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
                _tensor_output(self.paths[name], output)
                counts[name] += 1
                order.append(name)

            return hook

        was_training = self.module.training
        self.module.eval()
        handles = [self._target(name).register_forward_hook(hook_for(name)) for name in self.layer_names]
        try:
            self.module(x[:2])
        finally:
            for handle in handles:
                handle.remove()
            self.module.train(was_training)
        reused = [f"{self.paths[n]} ({c} times)" for n, c in counts.items() if c > 1]
        if reused:
            raise HookError(f"modules {reused} run more than once per forward pass (a shared module, e.g. the ReLU of a "
                            "torchvision BasicBlock): their output is not one layer; hook a module that runs once "
                            "(its parent block, or a layer of its own)")
        never = [self.paths[n] for n, c in counts.items() if c == 0]
        if never:
            raise HookError(f"modules {never} never run in the forward pass; hook modules the network's forward() calls")
        if order != self.layer_names:
            raise HookError(f"layers are listed as {self.layer_names} but the forward pass runs them in the order {order}; "
                            "list them in that order")

    def _check_once(self, x: torch.Tensor) -> None:
        shape = tuple(x.shape[1:])
        if self._checked != shape:
            self.check_layers(x)
            self._checked = shape

