"""Checkpoint I/O: torch files saved atomically and byte-reproducibly, loaded after checksum verification.

Why apart from the networks: saving and loading is I/O at the edge (sha256 + zip CRCs, explained
errors naming the file); a checkpoint's ``meta`` says how to rebuild its network, either a built-in
architecture (:func:`repmatch.networks.zoo.build_model`) or a factory network from the user's code
(:func:`repmatch.networks.factory.from_meta`).
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Any

import torch

from ..io import ChecksumError, read_json, verify_torch_file, write_bytes_atomic
from .factory import from_meta
from .stitchable import StitchableNet
from .zoo import build_model


def save_checkpoint(model: StitchableNet, path: str | Path, meta: dict) -> str:
    """Save weights with what is needed to rebuild the network (atomic, from an in-memory
    buffer so the same weights give the same bytes); return the file's sha256."""
    return save_torch({"meta": meta, "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", expected_sha256: str | None = None) -> StitchableNet:
    """Rebuild a trained network in eval mode (BatchNorm statistics fixed).

    The file's zip CRCs are always checked, and its sha256 when ``expected_sha256`` (from the
    model's ``metrics.json``) is given: a corrupt checkpoint fails naming the file.
    """
    ckpt = load_torch(path, expected_sha256, map_location=device)
    meta = ckpt["meta"]
    if "factory" in meta:  # a network from the user's code (repmatch.networks.factory), imported by the import_network job
        return from_meta(meta, ckpt["state_dict"]).to(device).eval()
    model = build_model(meta["arch"], meta["num_classes"], meta["in_channels"], meta["image_size"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def checkpoint_meta(path: str | Path) -> dict:
    return torch.load(Path(path), map_location="cpu", weights_only=True)["meta"]


def load_trained(checkpoint: str | Path, metrics_json: str | Path, device: torch.device | str = "cpu") -> StitchableNet:
    """A network trained by the pipeline, verified against the sha256 its train job recorded."""
    return load_checkpoint(checkpoint, device, expected_sha256=read_json(metrics_json).get("checkpoint_sha256"))


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into memory.

    Why a buffer: ``torch.save`` to a file names the zip's records after the file, so saving
    to a random temp name put that name inside the checkpoint and the same weights gave a
    different file each run. From a buffer the records are always ``archive/...``, and the
    same object gives the same bytes.
    """
    buf = _io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_torch(obj: Any, path: str | os.PathLike[str]) -> str:
    """Save ``obj`` (e.g. ``{"meta": ..., "state_dict": ...}``) atomically; return the file's sha256.

    The same object gives a byte-identical file; record the returned digest (training puts
    it in ``metrics.json``) and pass it to :func:`load_torch` to verify the file later.
    """
    return write_bytes_atomic(torch_bytes(obj), path)


def load_torch(path: str | os.PathLike[str], expected_sha256: str | None = None, **load_kwargs: Any) -> Any:
    """``torch.load`` after :func:`verify_torch_file` (``weights_only=True`` unless overridden)."""
    data = verify_torch_file(path, expected_sha256)
    load_kwargs.setdefault("weights_only", True)
    try:
        return torch.load(_io.BytesIO(data), **load_kwargs)
    except Exception as err:  # torch raises several types for a corrupt file
        raise ChecksumError(f"{path} is unreadable or corrupt ({type(err).__name__}: {err}); delete it and rerun the job that makes it") from err
