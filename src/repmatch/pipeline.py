"""The backbone stages as plain functions (split -> train -> activations), called by the thin
Snakemake scripts and by tests. Each takes paths and config sections, and writes atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .activations import extract_activations, write_cache
from .data import Splits, check_split, load_splits
from .device import resolve_device
from .io import write_json
from .logs import job_logger
from .models import load_checkpoint, save_checkpoint, select_layers
from .naming import parse_model_id
from .split_check import check_split_file
from .training import train_new_model

PathLike = str | os.PathLike[str]


def make_split(data_cfg: Mapping[str, Any], out_json: PathLike) -> Splits:
    """Load the dataset, cut the seeded split and record it."""
    splits = load_splits(data_cfg)
    write_json(splits.record(), out_json)
    return splits


def load_recorded_split(data_cfg: Mapping[str, Any], split_json: PathLike) -> Splits:
    """Load the dataset and check it is exactly the split recorded earlier in the pipeline."""
    record = check_split_file(split_json)  # a corrupt file fails naming itself, before the data is loaded
    splits = load_splits(data_cfg)
    check_split(splits, record)
    return splits


def train_stage(
    model: str, data_cfg: Mapping[str, Any], train_cfg: Mapping[str, Any], device_spec: str,
    split_json: PathLike, checkpoint: PathLike, metrics_json: PathLike, log_file: PathLike | None = None,
) -> dict[str, Any]:
    """Train one (arch, seed) network; write its checkpoint and metrics."""
    log = job_logger("train", log_file)
    arch, seed = parse_model_id(model)
    splits = load_recorded_split(data_cfg, split_json)
    device = resolve_device(device_spec)
    log.info("training %s on %s (%d train / %d test samples)", model, device, len(splits.train), len(splits.test))
    net, metrics = train_new_model(arch, splits, train_cfg, seed, device)
    metrics.update({"model": model, "arch": arch, "layers": net.layer_names})
    meta = {"arch": arch, "seed": seed, "num_classes": splits.num_classes, "in_channels": splits.in_channels,
            "image_size": splits.image_size, "dataset": splits.name}
    metrics["checkpoint_sha256"] = save_checkpoint(net.cpu(), checkpoint, meta)
    write_json(metrics, metrics_json)
    log.info("%s: test accuracy %.4f after %d epochs (%.1f s)", model, metrics["test_accuracy"], metrics["epochs"], metrics["train_seconds"])
    return metrics


def activations_stage(
    model: str, data_cfg: Mapping[str, Any], layers_cfg: Any, act_cfg: Mapping[str, Any], device_spec: str,
    split_json: PathLike, checkpoint: PathLike, out_dir: PathLike, log_file: PathLike | None = None,
) -> Path:
    """Cache the probe-set activations of the configured layers of one trained network."""
    log = job_logger("activations", log_file)
    splits = load_recorded_split(data_cfg, split_json)
    device = resolve_device(device_spec)
    net = load_checkpoint(checkpoint, device)
    layers = select_layers(net, layers_cfg)
    acts = extract_activations(net, splits.probe.x, layers, int(act_cfg.get("batch_size", 250)), device, act_cfg.get("dtype", "float32"))
    meta = {"model": model, "checkpoint": str(checkpoint), "dataset": splits.name, "split_fingerprint": splits.fingerprint}
    path = write_cache(out_dir, acts, splits.probe.ids, meta)
    log.info("%s: cached %d layers for %d probe samples in %s", model, len(acts), len(splits.probe), path)
    return path
