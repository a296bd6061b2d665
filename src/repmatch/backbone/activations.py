"""The activation cache: each layer's probe-set activations written once, read many times.

Layout of ``results/activations/<model>/``::

    manifest.json   model, layers (ordered), per layer: file, shape, dtype, sha256;
                    sample_ids (the probe ids, in row order) and their sha256
    <layer>.npy     one plain .npy per layer, memory-mappable (``np.load(mmap_mode="r")``)

Why checksums and sample ids: every pairwise comparison silently assumes row k of model A's
activations and row k of model B's are the same input. A reordered, truncated or bit-flipped
cache would give plausible but wrong similarities, so the reader verifies all of it and fails
loudly instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_dir, read_json, write_json
from ..io import sha256_of_file as sha256_file
from ..networks.stitchable import StitchableNet

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class CacheError(RuntimeError):
    """An activation cache is missing, corrupt, or does not match what the caller expects."""


def ids_digest(ids: Sequence[int] | np.ndarray) -> str:
    return hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()


@torch.no_grad()
def extract_activations(
    model: StitchableNet,
    x: np.ndarray,
    layers: Iterable[str],
    batch_size: int = 250,
    device: torch.device | str = "cpu",
    dtype: str = "float32",
) -> dict[str, np.ndarray]:
    """Run ``x`` through ``model`` (eval mode) once and collect the outputs of ``layers``."""
    layers = list(layers)
    model.eval().to(device)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    for start in range(0, len(x), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])).to(device)
        for name, value in model.features(batch, layers).items():
            chunks[name].append(value.detach().to("cpu", torch.float64 if dtype == "float64" else torch.float32).numpy())
    acts = {name: np.concatenate(parts, axis=0) for name, parts in chunks.items()}
    for name, arr in acts.items():
        if not np.isfinite(arr).all():
            raise CacheError(f"layer {name!r} produced NaN/Inf activations; the checkpoint is broken (diverged training?)")
    return acts


def write_cache(
    out_dir: str | os.PathLike[str],
    acts: Mapping[str, np.ndarray],
    sample_ids: Sequence[int] | np.ndarray,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the cache atomically: a temp folder is filled, checksummed, then renamed into place."""
    ids = np.asarray(sample_ids, dtype=np.int64)
    out_dir = Path(out_dir)
    layers_meta = []
    with atomic_dir(out_dir) as tmp:
        for name, arr in acts.items():
            if arr.shape[0] != len(ids):
                raise CacheError(f"layer {name!r} has {arr.shape[0]} rows but there are {len(ids)} sample ids")
            fname = f"{name}.npy"
            np.save(tmp / fname, np.ascontiguousarray(arr))
            layers_meta.append(
                {"name": name, "file": fname, "shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": sha256_file(tmp / fname)}
            )
        manifest = {
            "format_version": FORMAT_VERSION,
            "meta": dict(meta or {}),
            "layers": layers_meta,
            "n_samples": len(ids),
            "sample_ids": ids.tolist(),
            "sample_ids_sha256": ids_digest(ids),
        }
        write_json(manifest, tmp / MANIFEST)
    return out_dir


class ActivationCache:
    """Read side of the cache. Verifies the manifest on open and each layer file on load.

    ``expected_ids``: the probe ids the caller relies on (e.g. from ``split.json`` or from the
    other model of a pair); a different set or order is an error.
    """

    def __init__(self, path: str | os.PathLike[str], expected_ids: Sequence[int] | np.ndarray | None = None, verify: bool = True):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.exists():
            raise CacheError(f"activation cache {self.path} has no {MANIFEST}: missing or unfinished; rerun the 'activations' rule")
        try:
            self.manifest = read_json(manifest_path)
        except ValueError as err:
            raise CacheError(str(err)) from err
        self.verify = verify
        self._layers = {entry["name"]: entry for entry in self.manifest["layers"]}
        self.sample_ids = np.asarray(self.manifest["sample_ids"], dtype=np.int64)
        if ids_digest(self.sample_ids) != self.manifest["sample_ids_sha256"]:
            raise CacheError(f"{manifest_path}: sample ids do not match their recorded checksum (edited manifest?)")
        if expected_ids is not None:
            check_same_samples(self.sample_ids, expected_ids, f"activation cache {self.path}", "the expected probe set")

    @property
    def layers(self) -> list[str]:
        return list(self._layers)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.manifest.get("meta", {}))

    def shape(self, layer: str) -> tuple[int, ...]:
        return tuple(self._entry(layer)["shape"])

    def _entry(self, layer: str) -> dict[str, Any]:
        if layer not in self._layers:
            raise CacheError(f"layer {layer!r} is not in activation cache {self.path}; it holds {self.layers}")
        return self._layers[layer]

    def load(self, layer: str, mmap: bool = True) -> np.ndarray:
        """The activations of ``layer``, shape (n_samples, ...), verified against the manifest."""
        entry = self._entry(layer)
        file = self.path / entry["file"]
        if not file.exists():
            raise CacheError(f"activation file {file} listed in the manifest is missing")
        if self.verify and sha256_file(file) != entry["sha256"]:
            raise CacheError(f"activation file {file} does not match its sha256 in the manifest: the cache is corrupt; rerun the 'activations' rule")
        try:
            arr = np.load(file, mmap_mode="r" if mmap else None)
        except ValueError as err:
            raise CacheError(f"activation file {file} is not a readable .npy file ({err})") from err
        if list(arr.shape) != entry["shape"] or str(arr.dtype) != entry["dtype"]:
            raise CacheError(
                f"activation file {file} has shape {list(arr.shape)} / {arr.dtype}, the manifest says {entry['shape']} / {entry['dtype']}"
            )
        if arr.shape[0] != len(self.sample_ids):
            raise CacheError(f"activation file {file} has {arr.shape[0]} rows for {len(self.sample_ids)} sample ids")
        if self.verify and not np.isfinite(arr).all():
            raise CacheError(f"activation file {file} contains NaN or Inf values")
        return arr

    def load_all(self, layers: Iterable[str] | None = None, mmap: bool = True) -> dict[str, np.ndarray]:
        return {name: self.load(name, mmap) for name in (layers or self.layers)}


def check_same_samples(ids_a: np.ndarray, ids_b: Sequence[int] | np.ndarray, what_a: str, what_b: str) -> None:
    """Rows must be the same inputs in the same order; say precisely how they differ if not."""
    ids_a, ids_b = np.asarray(ids_a, dtype=np.int64), np.asarray(ids_b, dtype=np.int64)
    if len(ids_a) == len(ids_b) and np.array_equal(ids_a, ids_b):
        return
    if len(ids_a) != len(ids_b):
        raise CacheError(f"{what_a} has {len(ids_a)} samples but {what_b} has {len(ids_b)}")
    if np.array_equal(np.sort(ids_a), np.sort(ids_b)):
        raise CacheError(f"{what_a} holds the same samples as {what_b} but in a different order")
    raise CacheError(f"{what_a} and {what_b} hold different samples")


def open_pair(path_a: str | os.PathLike[str], path_b: str | os.PathLike[str]) -> tuple[ActivationCache, ActivationCache]:
    """Open the caches of a model pair and check they describe the same probe inputs in the same order."""
    cache_a = ActivationCache(path_a)
    cache_b = ActivationCache(path_b, expected_ids=cache_a.sample_ids)
    return cache_a, cache_b
