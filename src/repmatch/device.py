"""Device selection: use the GPU when there is one, unless the config says otherwise."""

from __future__ import annotations

import torch


def resolve_device(spec: str | None = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU. ``cuda`` without a GPU is an error, not a fallback."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested in config but CUDA is not available on this machine")
    return torch.device(spec)
