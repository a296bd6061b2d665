"""The backbone's stages (split -> train -> activations -> training summary), the only functions
the backbone's Snakemake scripts call. Each takes settings and paths, and writes atomically.
Heavy imports (torch, the data loaders) happen inside the stages that need them, so the training
summary runs in the light tables-and-figures environment. Every parameter is keyword-only: the
scripts name each setting section and path, so no call can swap two of the same type."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..io import write_json, write_table
from ..naming import parse_model_id
from ..settings import (
    ActivationSettings,
    DataSettings,
    ModelSettings,
    SubspaceSettings,
    TrainSettings,
)

if TYPE_CHECKING:
    from ..data import Splits

PathLike = str | os.PathLike[str]


def split_stage(*, data: DataSettings, out_json: PathLike, log: logging.Logger) -> Splits:
    """Load the dataset, cut the seeded split and record it."""
    from ..data import load_splits

    splits = load_splits(data)
    write_json(splits.record(), out_json)
    log.info("%s: %d train, %d test, %d probe samples", splits.name, len(splits.train), len(splits.test), len(splits.probe))
    return splits


def train_stage(
    *, model: str, data: DataSettings, train: TrainSettings, device_spec: str, split_json: PathLike, checkpoint: PathLike,
    metrics_json: PathLike, log: logging.Logger, state_path: PathLike | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train one (arch, seed) network; write its checkpoint and metrics.

    With ``state_path`` training saves its state there after every epoch and resumes from it
    (a retried cluster job goes on where the killed one stopped); it is deleted once the
    checkpoint and metrics are written."""
    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..networks.checkpoints import save_checkpoint
    from .training import train_new_model

    arch, seed = parse_model_id(model)
    splits = load_recorded_split(data, split_json)
    device = resolve_device(device_spec)
    log.info("training %s on %s (%d train / %d test samples)", model, device, len(splits.train), len(splits.test))
    net, metrics = train_new_model(arch, splits, train, seed, device, log=log, state_path=state_path)
    metrics.update({"model": model, "arch": arch, "layers": net.layer_names})
    meta = {"arch": arch, "seed": seed, "num_classes": splits.num_classes, "in_channels": splits.in_channels,
            "image_size": splits.image_size, "dataset": splits.name}  # fmt: skip
    metrics["checkpoint_sha256"] = save_checkpoint(net.cpu(), checkpoint, meta)
    write_json(metrics, metrics_json)
    if state_path is not None:
        Path(state_path).unlink(missing_ok=True)
    log.info("%s: test accuracy %.4f after %d epochs (%.1f s)", model, metrics["test_accuracy"], metrics["epochs"], metrics["train_seconds"])
    return metrics


def import_stage(
    *, model: str, data: DataSettings, model_settings: ModelSettings, device_spec: str, split_json: PathLike, source: PathLike,
    checkpoint: PathLike, metrics_json: PathLike, log: logging.Logger,
) -> dict[str, Any]:  # fmt: skip
    """Bring one network from the user's factory and weights file into the pipeline: measure its
    accuracy and write the same checkpoint + metrics a train job writes (the checkpoint records
    the factory, kwargs and layers; its sha256 goes into the metrics for later loads to verify)."""
    import time

    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..io import sha256_of_file
    from ..networks.checkpoints import save_torch
    from ..networks.factory import build, load_weights, network_meta, read_state_dict, wrap
    from .training import evaluate

    _, seed = parse_model_id(model)
    splits = load_recorded_split(data, split_json)
    device = resolve_device(device_spec)
    assert model_settings.factory is not None
    module = build(model_settings.factory, model_settings.kwargs)
    state = read_state_dict(source)
    load_weights(module, state, f"checkpoint {str(source)!r}")
    net = wrap(module, model_settings.layer_names, model_settings.input_channels).to(device).eval()
    start = time.perf_counter()
    test, train = evaluate(net, splits.test, device), evaluate(net, splits.train, device)
    metrics: dict[str, Any] = {
        "model": model, "arch": model_settings.prefix, "seed": seed, "epochs": 0, "train_seconds": 0.0,
        "eval_seconds": time.perf_counter() - start, "train_accuracy": train["accuracy"], "train_loss": train["loss"],
        "test_accuracy": test["accuracy"], "test_loss": test["loss"], "device": str(device), "layers": net.layer_names,
        "source": str(source), "source_sha256": sha256_of_file(source),
    }  # fmt: skip
    meta = {**network_meta(model_settings), "seed": seed, "num_classes": splits.num_classes,
            "in_channels": splits.in_channels, "image_size": splits.image_size, "dataset": splits.name}  # fmt: skip
    metrics["checkpoint_sha256"] = save_torch({"meta": meta, "state_dict": module.cpu().state_dict()}, checkpoint)
    write_json(metrics, metrics_json)
    log.info("%s (%s, %s): test accuracy %.4f", model, model_settings.factory, source, metrics["test_accuracy"])
    return metrics


def activations_stage(
    *, model: str, data: DataSettings, model_settings: ModelSettings, activations: ActivationSettings, device_spec: str,
    split_json: PathLike, checkpoint: PathLike, metrics_json: PathLike, out_dir: PathLike, log: logging.Logger,
) -> Path:  # fmt: skip
    """Cache the activations of the configured layers of one trained network on the probe set
    (``data.n_probe`` samples: the probe set the similarity measures compare on)."""
    return _cache_activations(model=model, data=data, model_settings=model_settings, activations=activations,
                              device_spec=device_spec, split_json=split_json, checkpoint=checkpoint,
                              metrics_json=metrics_json, out_dir=out_dir, log=log, subspace=None)  # fmt: skip


def subspace_activations_stage(
    *, model: str, data: DataSettings, model_settings: ModelSettings, activations: ActivationSettings,
    subspace: SubspaceSettings, device_spec: str, split_json: PathLike, checkpoint: PathLike, metrics_json: PathLike,
    out_dir: PathLike, log: logging.Logger,
) -> Path:  # fmt: skip
    """Cache the activations of the configured layers of one trained network on the subspace
    match's own probe set (``subspace.n_probe`` test samples)."""
    return _cache_activations(model=model, data=data, model_settings=model_settings, activations=activations,
                              device_spec=device_spec, split_json=split_json, checkpoint=checkpoint,
                              metrics_json=metrics_json, out_dir=out_dir, log=log, subspace=subspace)  # fmt: skip


def _cache_activations(
    *, model: str, data: DataSettings, model_settings: ModelSettings, activations: ActivationSettings, device_spec: str,
    split_json: PathLike, checkpoint: PathLike, metrics_json: PathLike, out_dir: PathLike, log: logging.Logger,
    subspace: SubspaceSettings | None,
) -> Path:  # fmt: skip
    """What both activation stages do; ``subspace`` picks the probe set (None: the similarity one)."""
    from ..data import load_recorded_split
    from ..device import resolve_device
    from ..networks.checkpoints import load_trained
    from ..networks.stitchable import select_layers
    from .activations import extract_activations, write_cache

    splits = load_recorded_split(data, split_json)
    probe = splits.probe if subspace is None else splits.subspace_probe(subspace.n_probe, data.split_seed)
    device = resolve_device(device_spec)
    net = load_trained(checkpoint, metrics_json, device)
    layers = select_layers(net, model_settings.layers)
    acts = extract_activations(net, probe.x, layers, activations.batch_size, device, activations.dtype)
    meta = {"model": model, "checkpoint": str(checkpoint), "dataset": splits.name, "split_fingerprint": splits.fingerprint,
            "probe_set": "similarity" if subspace is None else "subspace_match"}  # fmt: skip
    path = write_cache(out_dir, acts, probe.ids, meta)
    log.info("%s: cached %d layers for %d probe samples in %s", model, len(acts), len(probe), path)
    return path


def training_summary_stage(*, metrics_files: Sequence[PathLike], table: PathLike, figure_png: PathLike, log: logging.Logger) -> None:
    """One row per trained network, and the accuracy bar chart (PNG + PDF)."""
    from ..plotting import stem
    from .plots import plot_training_accuracy, training_table

    df = training_table(metrics_files)
    write_table(df, table)
    written = plot_training_accuracy(df, stem(figure_png))
    log.info("%d networks; wrote %s", len(df), ", ".join(map(str, written)))
