"""Networks from the user's code: ``factory: "package.module:function"`` + ``kwargs`` + checkpoint files.

Why a factory and a state dict rather than a pickled model: a state dict holds only tensors
(``torch.load(weights_only=True)`` is safe on any file), and the factory is the user's own,
importable code, the same way torchvision (``torchvision.models:resnet18``) and timm build their
networks. The built-in architectures are factories on the same path (``repmatch.networks.zoo:smallcnn``
with ``kwargs: {in_channels: 1, num_classes: 10}``); ``model.arch`` stays their short form, trained
by the pipeline.

Everything that can be known before a job runs is checked here, for
:func:`repmatch.config_checks.check_semantics`: the factory imports and builds, every checkpoint loads
into the network (keys and shapes), the layers name modules of it, and -- for the built-in
datasets, whose input shape is known -- one forward pass on zeros checks each layer runs exactly
once and the network outputs one logit per class.

Torch (and with it the network modules) is imported only inside the functions: this module is read
while Snakemake parses (``rules/common.smk``), where torch must not be loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..datasets import DATASET_INPUTS
from ..settings import ConfigError, ModelSettings, Settings
from ..user_code import UserCodeError, import_object

if TYPE_CHECKING:
    from torch import nn


class NetworkError(ValueError):
    """A factory, checkpoint or layer of a user network is unusable; the message names it."""


def import_factory(spec: str) -> Any:
    """The callable named by ``"package.module:function"`` (the working directory is importable too)."""
    try:
        return import_object(spec, f"factory {spec!r}")
    except UserCodeError as err:
        raise NetworkError(str(err)) from err


def build(factory: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``factory(**kwargs)``, required to be an ``nn.Module``."""
    from torch import nn

    fn = import_factory(factory)
    try:
        module = fn(**dict(kwargs))
    except Exception as err:  # the user's code: any error, reported with the call
        raise NetworkError(f"factory {factory!r} failed with kwargs {dict(kwargs)} ({type(err).__name__}: {err})") from err
    if not isinstance(module, nn.Module):
        raise NetworkError(f"factory {factory!r} returned a {type(module).__name__}, not a torch nn.Module")
    return module


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a checkpoint file: a state dict, or a dict holding one under ``state_dict``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise NetworkError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for unreadable files
        raise NetworkError(f"checkpoint {str(path)!r} is not a readable torch file of tensors ({type(err).__name__}: {err})") from err
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NetworkError(f"checkpoint {str(path)!r} holds no state dict (a mapping of names to tensors, or "
                           "{'state_dict': ...})")
    return dict(obj)


def load_weights(module: nn.Module, state: Mapping[str, Any], what: str) -> None:
    """Load ``state`` into ``module`` strictly; the error lists missing, unexpected and misshapen keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]  # fmt: skip
    if missing or unexpected or misshapen:
        parts = [f"{label} {items[:5]}{' ...' if len(items) > 5 else ''}" for label, items in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shapes (file vs model)", misshapen)) if items]
        raise NetworkError(f"{what} does not fit the network: " + "; ".join(parts))
    module.load_state_dict(dict(state))


def layer_paths(module: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """``{layer name: module path}``: a built-in network's block names map to ``blocks.<name>``;
    any other name is a module path of its own."""
    from .stitchable import StitchableNet

    blocks = set(module.layer_names) if isinstance(module, StitchableNet) else set()
    return {name: f"blocks.{name}" if name in blocks else name for name in layers}


def wrap(module: nn.Module, layers: Sequence[str], input_channels: int | None = None) -> nn.Module:
    """The stitchable view of ``module``: a built-in network itself when every layer is one of its
    blocks (the sequential fast path), else a :class:`~repmatch.networks.hooked.HookedNet`."""
    from .hooked import HookedNet
    from .stitchable import StitchableNet

    if isinstance(module, StitchableNet) and input_channels is None and set(layers) <= set(module.layer_names):
        return module
    return HookedNet(module, layer_paths(module, layers), input_channels)


def network_meta(model: ModelSettings) -> dict[str, Any]:
    """What a repmatch checkpoint of a factory network records to rebuild it (``repmatch.networks.checkpoints.load_checkpoint``)."""
    return {"factory": model.factory, "kwargs": dict(model.kwargs), "layers": list(model.layer_names),
            "input_channels": model.input_channels}  # fmt: skip


def from_meta(meta: Mapping[str, Any], state: Mapping[str, Any]) -> nn.Module:
    """Rebuild a factory network from its checkpoint's meta and weights, wrapped for its layers."""
    module = build(meta["factory"], meta["kwargs"])
    load_weights(module, state, f"the weights recorded for {meta['factory']}")
    return wrap(module, meta["layers"], meta["input_channels"])


def check_factory_networks(settings: Settings) -> None:
    """The parse-time check of a factory network (``model.factory``): it builds, every checkpoint
    fits, the layer names are its modules; a :class:`repmatch.settings.ConfigError` lists every
    problem by key. Nothing to do for built-in architectures.

    Apart from :func:`repmatch.config_checks.check_semantics` because it needs torch and the user's
    code; the workflow runs it right after loading the settings (rules/common.smk).
    """
    m = settings.model
    if m.factory is None or m.checkpoints is None or len(m.checkpoints) != len(settings.seeds):
        return  # none, or already refused by check_semantics
    lists = {"model.layers": m.layers} if not isinstance(m.layers, str) else {}
    if isinstance(settings.stitching.layers, tuple):
        lists["stitching.layers"] = settings.stitching.layers
    errors = check_network(m, settings.data.name, lists)
    if errors:
        raise ConfigError("invalid configuration:\n" + "\n".join(errors))


def check_network(model: ModelSettings, dataset: str, layer_lists: Mapping[str, Sequence[str]]) -> list[str]:
    """Every parse-time problem of a factory network, one ``at <key>: ...`` line each.

    ``layer_lists``: config key -> the layer names it gives (``model.layers``, ``stitching.layers``).
    """
    import torch

    assert model.factory is not None
    errors: list[str] = []
    try:
        module = build(model.factory, model.kwargs)
    except NetworkError as err:
        return [f"  at model.factory: {err}"]
    for k, file in enumerate(model.checkpoints or ()):
        try:
            load_weights(module, read_state_dict(file), f"checkpoint {file!r}")
        except NetworkError as err:
            errors.append(f"  at model.checkpoints[{k}]: {err}")
    if isinstance(model.layers, str):
        from .stitchable import StitchableNet

        example = module.layer_names if isinstance(module, StitchableNet) else [n for n, _ in module.named_children()]
        errors.append(f"  at model.layers: a factory network needs its layers named (module paths), e.g. {example}")
        return errors
    extra = {key: [n for n in names if n not in model.layers] for key, names in layer_lists.items() if key != "model.layers"}
    errors += [f"  at {key}: layers {names} are not in model.layers {list(model.layers)}" for key, names in extra.items() if names]
    try:
        net = wrap(module, model.layers, model.input_channels)
    except ValueError as err:
        return [*errors, f"  at model.layers: {err}"]
    if dataset in DATASET_INPUTS:
        shape, num_classes = DATASET_INPUTS[dataset]
        net.eval()
        try:
            with torch.no_grad():
                x = torch.zeros((2, *shape))
                logits = net(x)
                net.features(x, net.layer_names)
        except ValueError as err:
            return [*errors, f"  at model.layers: {err}"]
        except Exception as err:  # the user's forward(): any error, with the input it got
            return [*errors, f"  at model.factory: the network fails on {dataset} inputs of shape {shape} "
                             f"({type(err).__name__}: {err}); see model.input_channels"]
        if tuple(logits.shape) != (2, num_classes):
            errors.append(f"  at model.kwargs: the network outputs shape {tuple(logits.shape[1:])} per input; {dataset} has "
                          f"{num_classes} classes (e.g. kwargs: {{num_classes: {num_classes}}})")
    return errors
