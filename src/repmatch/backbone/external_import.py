"""Bringing external activations in: the probe ids of each stage, the parse-time check of every
external folder against ``split.json``, and the import job that writes an ordinary cache.

Apart from :mod:`repmatch.backbone.external` (the torch-free folder checks that the settings run)
because these need the dataset and the cache writer: a module the settings import must not pull
torch into the light table/figure jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .external import ExternalNetwork, PathLike, check_networks, check_probe_set, read_external

def probe_sets(record: Mapping[str, Any], subspace_n_probe: int | None, split_seed: int) -> dict[str, np.ndarray]:
    """The probe ids of each stage from a split record (``split.json``): ``similarity`` and ``subspace_match``."""
    from ..data import subspace_probe_index

    test = np.asarray(record["test_ids"], dtype=np.int64)
    index = subspace_probe_index(len(test), subspace_n_probe, split_seed)
    return {"similarity": np.asarray(record["probe_ids"], dtype=np.int64), "subspace_match": test if index is None else test[index]}


def import_stage(*, name: str, folder: PathLike, split_json: PathLike, out_dir: PathLike, log: logging.Logger,
                 subspace_n_probe: int | None, split_seed: int, probe_set: str, dtype: str) -> Path:  # fmt: skip
    """Write the activation cache of external network ``name`` for one stage's probe set (``similarity`` or
    ``subspace_match``): the probe rows in probe order, verified (checksums given in ids.json, finite
    values), as ``dtype``, with the usual manifest."""
    from ..split_check import check_split_file
    from .activations import CacheError, write_cache
    from .activations import sha256_file as sha256

    net = read_external(name, folder)
    ids = probe_sets(check_split_file(split_json), subspace_n_probe, split_seed)[probe_set]
    rows = check_probe_set(net, ids, f"the {probe_set} probe set")
    acts = {}
    for layer in net.layers:
        path = net.file(layer)
        if layer in net.checksums and sha256(path) != net.checksums[layer]:
            raise CacheError(f"{path} does not match its sha256 in {net.ids_file}: the file changed or is corrupt")
        arr = np.asarray(np.load(path, mmap_mode="r")[rows], dtype=np.float64 if dtype == "float64" else np.float32)
        if not np.isfinite(arr).all():
            raise CacheError(f"{path} holds NaN or Inf values in the probe rows")
        acts[layer] = arr
    meta = {"model": name, "external": str(net.folder), "probe_set": probe_set}
    out = write_cache(out_dir, acts, ids, meta)
    log.info("%s: imported %d layers for %d probe samples (%s) from %s", name, len(acts), len(ids), probe_set, net.folder)
    return out


def check_against_split(settings: Any, split_json: PathLike, stages: Sequence[str]) -> dict[str, ExternalNetwork]:
    """Check every external network against the probe sets of ``stages`` before any job runs.

    The probe ids come from ``split_json`` when the split is recorded, else from the configured
    data (loaded once; the split is a pure function of the data and its settings). Raises
    :class:`ExternalActivationError` naming the folder and the first missing sample id.
    """
    nets = check_networks(settings.external_activations.networks)
    if not nets:
        return nets
    if Path(split_json).exists():
        from ..split_check import check_split_file

        record = check_split_file(split_json)
    else:
        from ..data import load_splits

        record = load_splits(settings.data).record()
    sets = probe_sets(record, settings.subspace_match.n_probe, settings.data.split_seed)
    for net in nets.values():
        for stage in stages:
            check_probe_set(net, sets[stage], f"the {stage} probe set (data.*, subspace_match.n_probe; {split_json})")
    return nets
