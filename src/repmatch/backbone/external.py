"""External activations: networks whose activations were computed elsewhere enter the similarity
and subspace stages through the same checked activation cache as the networks trained here.

Folder layout (one per network, ``external_activations.networks: {name: folder}``)::

    ids.npy  or  ids.json   the sample id of every row (ids.json: a list, or an object with
                            "sample_ids", optional "layers" (network order) and optional
                            "sha256" {layer: hex digest of its .npy file})
    <layer>.npy             one array per layer, shape (N, ...) with N = len(ids); (N, C, H, W) and
                            (N, D) as the built-in caches; layers in "layers" order, else natural
                            order of the file names

Sample ids are the dataset's (see ``results/data/split.json``: for the torchvision datasets, image
folders and factories train ids are 0..n_train-1 and test image k has id n_train + k; for mnist5k
the row of the digit). The folder may hold more samples than a probe set: an import job picks
the probe rows in probe order and writes an ordinary cache (manifest, checksums).

Why checked before any job: a comparison silently assumes row k of two networks is the same
input. Folders whose ids differ from each other, or lack a probe id, fail while the workflow is
parsed, naming the folder and the first differing id. Stitching and the sensitivity test need
the networks' weights, so external networks take part in the similarity and subspace stages only.

Torch-free (read while Snakemake parses); the import stage imports the cache writer lazily.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IDS_FILES = ("ids.npy", "ids.json")
PathLike = str | os.PathLike[str]


class ExternalActivationError(ValueError):
    """An external activation folder is missing, malformed, or holds other samples than expected."""


@dataclass(frozen=True)
class ExternalNetwork:
    """What the folder of one external network holds (headers only: nothing is loaded)."""

    name: str
    folder: Path
    ids: np.ndarray
    layers: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    checksums: dict[str, str]

    def file(self, layer: str) -> Path:
        return self.folder / f"{layer}.npy"

    @property
    def ids_file(self) -> Path:
        return next(self.folder / f for f in IDS_FILES if (self.folder / f).is_file())

    @property
    def files(self) -> list[str]:
        """Every file the network is read from (a Snakemake rule's inputs: a changed file reruns the import)."""
        return [str(self.ids_file), *(str(self.file(layer)) for layer in self.layers)]


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _read_ids(folder: Path) -> tuple[np.ndarray, list[str] | None, dict[str, str]]:
    present = [f for f in IDS_FILES if (folder / f).is_file()]
    if len(present) != 1:
        what = "neither" if not present else "both"
        raise ExternalActivationError(f"external activation folder {folder} must hold exactly one of {list(IDS_FILES)}, "
                                      f"it holds {what}")
    path = folder / present[0]
    layers, checksums = None, {}
    try:
        if path.suffix == ".npy":
            raw: Any = np.load(path, allow_pickle=False)
        else:
            raw = json.loads(path.read_text())
            if isinstance(raw, dict):
                if "sample_ids" not in raw:
                    raise ExternalActivationError(f"{path}: a JSON object must hold 'sample_ids' (and optionally 'layers', 'sha256')")
                layers, checksums, raw = raw.get("layers"), dict(raw.get("sha256") or {}), raw["sample_ids"]
    except (OSError, ValueError) as err:
        if isinstance(err, ExternalActivationError):
            raise
        raise ExternalActivationError(f"cannot read sample ids from {path} ({err})") from err
    ids = np.asarray(raw)
    if ids.ndim != 1 or len(ids) == 0 or not (np.issubdtype(ids.dtype, np.integer) or (ids.dtype == object and all(
            isinstance(v, int) and not isinstance(v, bool) for v in ids))):
        raise ExternalActivationError(f"{path}: sample ids must be a non-empty list of integers, got {ids.dtype} of shape {ids.shape}")
    ids = ids.astype(np.int64)
    if len(np.unique(ids)) != len(ids):
        values, counts = np.unique(ids, return_counts=True)
        raise ExternalActivationError(f"{path}: sample id {int(values[counts > 1][0])} appears more than once")
    if layers is not None and (not isinstance(layers, list) or not all(isinstance(v, str) for v in layers)):
        raise ExternalActivationError(f"{path}: 'layers' must be a list of layer names")
    return ids, layers, checksums


def read_external(name: str, folder: PathLike) -> ExternalNetwork:
    """Read the ids and the layer files' headers of one external network; errors name the folder and file."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ExternalActivationError(f"external activation folder {folder} (network {name!r}) does not exist")
    ids, order, checksums = _read_ids(folder)
    found = sorted((p.stem for p in folder.glob("*.npy") if p.name not in IDS_FILES), key=_natural)
    if order is None:
        order = found
    missing = [layer for layer in order if layer not in found]
    if missing:
        raise ExternalActivationError(f"external activation folder {folder}: layers {missing} are listed but their .npy files are missing")
    if not order:
        raise ExternalActivationError(f"external activation folder {folder} holds no <layer>.npy files")
    unknown = sorted(set(checksums) - set(order))
    if unknown:
        raise ExternalActivationError(f"external activation folder {folder}: checksums given for unknown layers {unknown}")
    shapes = {}
    for layer in order:
        path = folder / f"{layer}.npy"
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ExternalActivationError(f"{path} is not a readable .npy array ({err})") from err
        if not np.issubdtype(arr.dtype, np.floating):
            raise ExternalActivationError(f"{path}: activations must be floating point, got {arr.dtype}")
        if arr.ndim < 2 or arr.shape[0] != len(ids):
            raise ExternalActivationError(f"{path} has shape {arr.shape}: expected (N, ...) with N = {len(ids)} sample ids")
        shapes[layer] = tuple(int(v) for v in arr.shape)
    return ExternalNetwork(name, folder, ids, tuple(order), shapes, checksums)


def first_difference(ids_a: np.ndarray, ids_b: np.ndarray) -> str:
    """Where two id sequences first differ, in words."""
    n = min(len(ids_a), len(ids_b))
    diff = np.flatnonzero(ids_a[:n] != ids_b[:n])
    if diff.size:
        k = int(diff[0])
        return f"row {k}: sample id {int(ids_a[k])} vs {int(ids_b[k])}"
    return f"lengths {len(ids_a)} vs {len(ids_b)} (first extra id {int((ids_a if len(ids_a) > n else ids_b)[n])})"


def check_networks(networks: Mapping[str, PathLike]) -> dict[str, ExternalNetwork]:
    """Read every external network and check they hold the same sample ids in the same order."""
    read = {name: read_external(name, folder) for name, folder in networks.items()}
    items = list(read.values())
    for other in items[1:]:
        first = items[0]
        if not np.array_equal(first.ids, other.ids):
            raise ExternalActivationError(
                f"external activation folders {first.folder} ({first.name!r}) and {other.folder} ({other.name!r}) hold "
                f"different sample ids, first at {first_difference(first.ids, other.ids)}; every network must be "
                "computed on the same samples in the same order"
            )  # fmt: skip
    return read


def check_probe_set(net: ExternalNetwork, probe_ids: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    """The rows of ``net`` holding ``probe_ids`` (in probe order); an error names the folder and the first missing id."""
    probe_ids = np.asarray(probe_ids, dtype=np.int64)
    pos = {int(v): k for k, v in enumerate(net.ids)}
    missing = [int(v) for v in probe_ids if int(v) not in pos]
    if missing:
        raise ExternalActivationError(
            f"external activation folder {net.folder} ({net.name!r}) lacks {len(missing)} of the {len(probe_ids)} sample "
            f"ids of {what}, first sample id {missing[0]}; compute its activations on those samples (ids in "
            "results/data/split.json)"
        )  # fmt: skip
    return np.asarray([pos[int(v)] for v in probe_ids], dtype=np.int64)
