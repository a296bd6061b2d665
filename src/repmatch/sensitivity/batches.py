"""The inputs of one split, streamed batch by batch onto the device (both sensitivity tests).

Why one helper: the within-network test (:mod:`.within_network`) and the cross-network test
(:mod:`.cross_network`) each make several passes over a split (moments on the training split,
scores on the test split, indices on the probe set) and must cut the batches the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def device_batches(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor | None, batch_size: int,
            device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """``(inputs, labels)`` in order, ``batch_size`` rows at a time, on ``device``; labels as int64,
    or ``None`` when ``y`` is ``None``."""
    for s in range(0, len(x), batch_size):
        xb = torch.as_tensor(np.ascontiguousarray(x[s : s + batch_size]) if isinstance(x, np.ndarray) else x[s : s + batch_size])
        yb = None if y is None else torch.as_tensor(np.asarray(y[s : s + batch_size])).long().to(device)
        yield xb.to(device), yb


def input_batches(x: np.ndarray | torch.Tensor, batch_size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """The inputs alone, as :func:`device_batches` cuts them."""
    return (xb for xb, _ in device_batches(x, None, batch_size, device))
