"""The built-in architectures and their stitchable layer names, without importing torch.

Why a torch-free table: the configuration is checked while Snakemake parses the workflow (a
layer-name typo must fail ``snakemake -n``, not a job after training). ``repmatch.networks.zoo``
builds the networks and a test checks every built network's ``layer_names`` against this table.
"""

from __future__ import annotations

from collections.abc import Sequence


def _resnet_layers(stages: int, depth_per_stage: int) -> tuple[str, ...]:
    return ("stem", *(f"layer{s}_{b}" for s in range(1, stages + 1) for b in range(depth_per_stage)))


def _plain_layers(stages: int, blocks_per_stage: int) -> tuple[str, ...]:
    return ("stem", *(f"s{s}b{b}c{c}" for s in range(1, stages + 1) for b in range(1, blocks_per_stage + 1) for c in (1, 2)))


#: VGG-16's layers as Wang et al. (2018) take them: the 13 conv ReLUs (before pooling), the 2 fc ReLUs.
_VGG16_LAYERS = (*(f"conv{k}" for k in range(1, 14)), "fc1", "fc2")

#: Stitchable layers (block outputs) of each built-in architecture, in network order.
LAYERS: dict[str, tuple[str, ...]] = {
    "smallcnn": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1"),
    "resnet20": _resnet_layers(3, 3),
    "resnet18": _resnet_layers(4, 2),
    "vgg11": tuple(f"conv{k}" for k in range(1, 9)),
    "vgg16": _VGG16_LAYERS,
    "vgg16_bn": _VGG16_LAYERS,
    "plain44": _plain_layers(3, 7),
    # Vision transformers (repmatch.networks.vit): every layer outputs tokens (N, 1 + patches, width), CLS first.
    "vit_ti": ("embed", *(f"block{k}" for k in range(12))),
    "vit_tiny_test": ("embed", *(f"block{k}" for k in range(4))),
}
ARCHITECTURES = tuple(LAYERS)
#: Architectures whose layers are token sequences (N, T, D) rather than conv maps or vectors.
TOKEN_ARCHITECTURES = frozenset({"vit_ti", "vit_tiny_test"})


def resolve_layers(arch: str, wanted: str | Sequence[str]) -> list[str]:
    """The config's layer choice (``all`` or a list of names) for ``arch``, in network order.

    Unknown names are an error listing the architecture's layers, so a typo is caught before
    any job runs.
    """
    if arch not in LAYERS:
        raise KeyError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    names = LAYERS[arch]
    if wanted == "all":
        return list(names)
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise KeyError(f"layers {unknown} do not exist in {arch}; its layers are {list(names)}")
    return [n for n in names if n in set(wanted)]
